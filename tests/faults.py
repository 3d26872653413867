"""Fault injection for the tests: a training process that dies (SIGKILL: a crash, a
pre-empted job) or is interrupted (SIGINT: Ctrl-C) right after a given optimiser step, at a
reproducible point. Test code only: it wraps ``Trainer.step`` from outside the loop.

In the test's own process, :func:`signal_after_step`; in a child process, set
``KILL_AFTER_STEP_ENV`` or ``INTERRUPT_AFTER_STEP_ENV`` and run this file in place of
``python -m vaekit`` (``python tests/faults.py train ...``), or call :func:`arm_from_env`
first in a script of the test's own.
"""

from __future__ import annotations

import os
import signal
import sys

from vaekit.training.loop import Trainer

KILL_AFTER_STEP_ENV = "VAEKIT_TEST_KILL_AFTER_STEP"
INTERRUPT_AFTER_STEP_ENV = "VAEKIT_TEST_SIGINT_AFTER_STEP"


def signal_after_step(step: int, signum: int, monkeypatch=None) -> None:
    """Send this process ``signum`` right after optimiser step ``step`` (1-based) ends. With
    pytest's ``monkeypatch`` the wrapper goes when the test ends; without it, for good (a
    child process)."""
    original = Trainer.step

    def step_then_signal(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self.state.step == step:
            os.kill(os.getpid(), signum)

    if monkeypatch is not None:
        monkeypatch.setattr(Trainer, "step", step_then_signal)
    else:
        Trainer.step = step_then_signal


def arm_from_env() -> None:
    """Arm the signals the environment asks for (nothing when neither variable is set)."""
    for name, signum in (
        (KILL_AFTER_STEP_ENV, signal.SIGKILL),
        (INTERRUPT_AFTER_STEP_ENV, signal.SIGINT),
    ):
        if os.environ.get(name):
            signal_after_step(int(os.environ[name]), signum)


if __name__ == "__main__":  # python tests/faults.py train ...: vaekit, armed from the environment
    from vaekit.cli import main

    arm_from_env()
    sys.exit(main(sys.argv[1:]))
