"""``vaekit``'s entry point: parse, run one command, and turn every error the user can cause
into one line ``vaekit: error: ...`` on stderr and exit status 2. Any other exception is a
failure vaekit did not foresee: it too is one line (what failed, on which path, the exception's
first line) with exit status 1. ``--debug`` (or ``VAEKIT_DEBUG=1``) shows the traceback
instead; a traceback is never printed unasked."""

from __future__ import annotations

import argparse
import os
import sys

from vaekit.cli.parser import build_parser
from vaekit.settings import ConfigError
from vaekit.support.runtime import apply_thread_policy
from vaekit.support.spelling import command_line

# Exit status after the reader of our output went away (`vaekit evaluate RUN | head -1`):
# 128 + SIGPIPE, what a shell reports for any program a closed pipe stops. A plain pipeline
# ignores it, as it does for `cat`; under `set -o pipefail` it says, truthfully, that not all
# output was read (0 would claim it was).
EXIT_BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> int:
    apply_thread_policy()  # before torch starts its thread pool (see vaekit/support/runtime.py)
    # Library messages name flags (--overwrite), not Python keywords (overwrite=True).
    with command_line():
        return _main(argv)


# Command lines that name no command: answered by the parser alone, without importing the
# commands' libraries (torch, the model registry), so they take a fraction of a second.
_NO_COMMAND = ([], ["--version"], ["-h"], ["--help"])


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    light = [a for a in argv if a != "--debug"] in _NO_COMMAND
    parser = build_parser(light=light)
    args = parser.parse_args(argv)
    new_name = _lesson_new_name(args)
    if new_name is not None:  # a lesson by its old name: parsed again under the new one
        old = "vaekit em" if args.command == "em" else "vaekit compare without run directories"
        print(f"vaekit: note: {old} is now vaekit {' '.join(new_name)}", file=sys.stderr)
        at = argv.index(args.command)
        args = parser.parse_args([*argv[:at], *new_name, *argv[at + 1 :]])
    from vaekit.cli.commands import COMMANDS

    debug = args.debug or bool(os.environ.get("VAEKIT_DEBUG"))
    stdout = sys.stdout = _ReaderMayLeave(sys.stdout)
    try:
        COMMANDS[args.command](args)
        stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        if stdout.reader_left:
            return EXIT_BROKEN_PIPE
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: training checkpointed, says how to resume
        if debug:
            raise
        print(str(exc) or "vaekit: interrupted", file=sys.stderr)
        return getattr(exc, "exit_status", 130)  # 128 + the signal, as a shell reports it
    except (ConfigError, ValueError, OSError) as exc:
        if debug:
            raise
        print(f"vaekit: error: {_first_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # not foreseen: one line, never a traceback unasked
        if debug:
            raise
        print(unexpected_error(args, exc), file=sys.stderr)
        return 1
    finally:
        sys.stdout = stdout.stream
    return 0


class _ReaderMayLeave:
    """``sys.stdout`` while a command runs. When the reader of the output leaves (a closed
    pipe: ``vaekit report RUN | head -3``), what is printed after goes to /dev/null and the
    command goes on: the files it writes come out whole, whichever print met the closed pipe
    (the first one with PYTHONUNBUFFERED=1, else a later flush). ``reader_left`` says it
    happened; main then exits quietly with EXIT_BROKEN_PIPE."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.reader_left = False

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        # The descriptor itself, so that the interpreter's last flush cannot fail either.
        self.reader_left = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.stream.fileno())
        os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def _lesson_new_name(args: argparse.Namespace) -> list[str] | None:
    """The command words of a lesson given by its old name: `vaekit em`, and `vaekit compare`
    with no run directories but --out or one of the lesson's training flags; else None."""
    if args.command == "em":
        return ["lesson", "em"]
    if args.command == "compare" and not args.compare_runs:
        lesson = any(name in vars(args) for name in args.lesson_flags)
        if lesson or args.out is not None:
            return ["lesson", "ae-vs-vae"]
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# The parsed arguments that name what a command reads, in the order a message names them.
_PATH_ARGS = ("run", "input", "data", "resume", "config")


def unexpected_error(args: argparse.Namespace, exc: Exception) -> str:
    """``vaekit: error: sample failed on /runs/x: RuntimeError: ...; rerun with --debug for
    the traceback``: the command, the files it was given, the exception's type and the first
    line of its text (at most 300 characters; a bare MemoryError says what it was)."""
    paths = dict.fromkeys(str(getattr(args, n)) for n in _PATH_ARGS if getattr(args, n, None))
    where = f" on {', '.join(paths)}" if paths else ""
    if str(exc).strip():
        text = _first_line(exc)
        text = text if len(text) <= 300 else text[:297] + "..."
    else:
        text = "out of memory" if isinstance(exc, MemoryError) else ""
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    command = " ".join(filter(None, (args.command, getattr(args, "lesson", None))))
    return f"vaekit: error: {command} failed{where}: {detail}; rerun with --debug for the traceback"
