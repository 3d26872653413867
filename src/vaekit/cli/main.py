"""``vaekit``'s entry point: parse, run one command, and turn every error the user can cause
into one line ``vaekit: error: ...`` on stderr and exit status 2 (``VAEKIT_DEBUG=1`` shows the
traceback instead)."""

from __future__ import annotations

import os
import sys

from vaekit.cli.commands import COMMANDS
from vaekit.cli.parser import build_parser
from vaekit.config import ConfigError
from vaekit.runtime import apply_thread_policy
from vaekit.spelling import command_line

# Exit status after the reader of our output went away (`vaekit evaluate RUN | head -1`):
# 128 + SIGPIPE, what a shell reports for any program a closed pipe stops. A plain pipeline
# ignores it, as it does for `cat`; under `set -o pipefail` it says, truthfully, that not all
# output was read (0 would claim it was).
EXIT_BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> int:
    apply_thread_policy()  # before torch starts its thread pool (see vaekit/runtime.py)
    # Library messages name flags (--overwrite), not Python keywords (overwrite=True).
    with command_line():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
    except BrokenPipeError:
        # Quietly: point stdout at /dev/null so the interpreter's final flush cannot fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: training checkpointed, says how to resume
        if os.environ.get("VAEKIT_DEBUG"):
            raise
        print(str(exc) or "vaekit: interrupted", file=sys.stderr)
        return getattr(exc, "exit_status", 130)  # 128 + the signal, as a shell reports it
    except (ConfigError, ValueError, OSError) as exc:
        if os.environ.get("VAEKIT_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"vaekit: error: {message}", file=sys.stderr)
        return 2
    return 0
