"""Bad input, category "non-finite and out-of-range values": every flag of every command
parses its value with a type that checks range, finiteness and size (cli/flags.py), so nan,
inf, a negative budget or a seed beyond 64 bits is one line naming the flag, exit 2, before
any work. The walk over every command's flags covers a flag the day it is declared."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from vaekit.cli import main
from vaekit.cli.parser import build_parser, subcommands
from vaekit.config import Config, apply_overrides
from vaekit.settings import ConfigError

TEXT_TYPES = (None, str, Path)  # values that are text or paths: nothing to range-check


def _every_value_flag():
    """(command, action) for every flag and positional that takes a value."""
    parser = build_parser()
    for name, command in [("vaekit", parser), *subcommands(parser)]:
        for action in command._actions:
            if action.nargs == 0 or isinstance(action, argparse._SubParsersAction):
                continue  # switches, help, version
            yield name, action


def test_every_flag_that_takes_a_value_has_a_checking_type():
    unchecked = [
        (name, action.option_strings or action.dest)
        for name, action in _every_value_flag()
        if action.choices is None
        and action.type not in TEXT_TYPES
        and not getattr(action.type, "validated", False)
    ]
    assert unchecked == [], "declare these with a type from vaekit.cli.flags: " + repr(unchecked)


def test_every_number_flag_refuses_nan_inf_and_words():
    number_flags = [
        (name, action)
        for name, action in _every_value_flag()
        if getattr(action.type, "__name__", "") in ("int", "float")
    ]
    assert len(number_flags) > 40  # the walk found the flags (every command has some)
    for _command, action in number_flags:
        for text in ("nan", "inf", "-inf", "abc", ""):
            with pytest.raises(argparse.ArgumentTypeError):
                action.type(text)
        if action.type.__name__ == "int":
            with pytest.raises(argparse.ArgumentTypeError, match=r"at most 2\*\*63-1"):
                action.type(str(2**63))
            assert action.type(str(2**63 - 1)) == 2**63 - 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["traverse", "{run}", "-o", "{tmp}/t.png", "--span", "nan"], "--span: must be a finite"),
        (["traverse", "{run}", "-o", "{tmp}/t.png", "--span", "0"], "--span: must be greater"),
        (["evaluate", "{run}", "--memory-mb", "-1"], "--memory-mb: must be greater than 0"),
        (["evaluate", "{run}", "--memory-mb", "inf"], "--memory-mb: must be a finite number"),
        (["evaluate", "{run}", "--memory-mb", "nan"], "--memory-mb: must be a finite number"),
        (
            ["explore", "{run}", "--seed", "99999999999999999999999"],
            "--seed: must be at most 2**63-1",
        ),
        (
            [
                "score",
                "{run}",
                "--data",
                "{tmp}/d.npy",
                "-o",
                "{tmp}/s.csv",
                "--seed",
                "1" + "0" * 22,
            ],
            "--seed: must be at most 2**63-1",
        ),
        (["sample", "{run}", "-o", "{tmp}/s.png", "--seed", "-1"], "--seed: must be at least 0"),
        (["sample", "{run}", "-o", "{tmp}/s.png", "-n", "0"], "argument -n: must be at least 1"),
        (["lesson", "em", "--lr", "inf"], "--lr: must be a finite number"),
        (["train", "--out", "{tmp}/r", "--lr", "nan"], "--lr: must be a finite number"),
        (
            ["train", "--out", "{tmp}/r", "--latent-dim", str(2**64)],
            "--latent-dim: must be at most",
        ),
        (["explore", "{run}", "--axes", "0,99999999999999999999"], "--axes: must be at most"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_flag(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(tmp_path / "run")) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in err and "NaN" not in err and "Overflow" not in err
    assert not any(tmp_path.iterdir())  # refused before any file was touched


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=nan", "optim.lr must be a finite number"),
        ("optim.lr=inf", "optim.lr must be a finite number"),
        ("train.max_minutes=inf", "train.max_minutes must be a finite number"),
        ("model.latent_dim=99999999999999999999999", "model.latent_dim must be at most 2**63-1"),
        ("train.seed=-99999999999999999999999", "train.seed must be at least -2**63"),
    ],
)
def test_config_values_share_the_vocabulary(override, message):
    with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace(".", r"\.")):
        apply_overrides(Config(), [override])
