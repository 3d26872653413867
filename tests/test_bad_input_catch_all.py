"""Bad input, category "catch-all": an exception vaekit did not foresee, in any command, is
one line on stderr (the command, the paths it was given, the exception) and exit status 1;
``--debug``, before or after the command, shows the traceback instead. Ctrl-C and a closed
pipe keep their own handling."""

from __future__ import annotations

import argparse

import pytest

from vaekit.cli import main
from vaekit.cli.commands import COMMANDS
from vaekit.cli.lesson_commands import LESSONS
from vaekit.cli.parser import build_parser, subcommands


def _arguments(command: str, tmp_path) -> list[str]:
    """The smallest command line the parser accepts for ``command`` (paths under tmp)."""
    parser = dict(subcommands(build_parser()))[command]
    argv = command.split()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if not action.option_strings:
            if action.nargs not in ("*", "?"):
                argv.append(str(tmp_path / action.dest))
        elif action.required:
            argv += [action.option_strings[0], str(tmp_path / action.dest)]
    if parser.get_default("data_alias"):  # the data: --data or a positional
        argv += ["--data", str(tmp_path / "data")]
    return argv


@pytest.mark.parametrize(
    "command", sorted(set(COMMANDS) - {"lesson"}) + [f"lesson {name}" for name in LESSONS]
)
def test_an_unexpected_error_in_any_command_is_one_line(command, tmp_path, capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("tensor a (3) must match tensor b (4)\nsecond line of detail")

    name = command.split()[0]  # `lesson em` runs COMMANDS["lesson"]
    monkeypatch.setitem(COMMANDS, name, broken)
    assert main(_arguments(command, tmp_path)) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"vaekit: error: {command} failed")
    assert "RuntimeError: tensor a (3) must match tensor b (4)" in lines[0]
    assert lines[0].endswith("rerun with --debug for the traceback")
    assert "Traceback" not in captured.err and "second line" not in captured.err


def test_the_message_names_the_files_the_command_was_given(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(COMMANDS, "decode", lambda args: {}["missing key"])
    run, codes = tmp_path / "run", tmp_path / "z.npy"
    assert main(["decode", str(run), str(codes), "-o", str(tmp_path / "o.npy")]) == 1
    err = capsys.readouterr().err
    assert f"decode failed on {run}, {codes}: KeyError: 'missing key'" in err


def test_a_memory_error_says_what_it_was(tmp_path, capsys, monkeypatch):
    def exhausted(args):
        raise MemoryError

    monkeypatch.setitem(COMMANDS, "sample", exhausted)
    assert main(_arguments("sample", tmp_path)) == 1
    assert "MemoryError: out of memory" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(where, tmp_path, monkeypatch):
    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setitem(COMMANDS, "sample", broken)
    argv = _arguments("sample", tmp_path)
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(RuntimeError, match="boom"):
        main(argv)


def test_ctrl_c_and_user_errors_keep_their_own_handling(tmp_path, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt("vaekit: interrupted; resume with vaekit train --resume R")

    monkeypatch.setitem(COMMANDS, "sample", interrupted)
    assert main(_arguments("sample", tmp_path)) == 130
    assert "resume with" in capsys.readouterr().err

    def refused(args):
        raise ValueError("-o x.png: bad output")

    monkeypatch.setitem(COMMANDS, "sample", refused)
    assert main(_arguments("sample", tmp_path)) == 2
    assert capsys.readouterr().err.strip() == "vaekit: error: -o x.png: bad output"


def test_an_unforeseen_error_of_a_real_command_has_no_traceback(tmp_path, capsys, monkeypatch):
    """Not a stand-in: a library function deep in a real command fails unexpectedly."""
    import vaekit.checkpoint

    def broken_load(*args, **kwargs):
        raise IndexError("index 7 is out of bounds for dimension 0 with size 3")

    monkeypatch.setattr(vaekit.checkpoint, "load", broken_load)
    out = tmp_path / "s.png"
    assert main(["sample", str(tmp_path / "run"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "IndexError: index 7 is out of bounds" in err and "Traceback" not in err
    assert not out.exists()
