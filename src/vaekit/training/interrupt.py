"""Ctrl-C or SIGTERM during training: a clean stop with a checkpoint, instead of a traceback.

While training runs, the first SIGINT (Ctrl-C) or SIGTERM (what SLURM, Kubernetes and
``timeout`` send before they kill a job) only sets a flag; the loop finishes the step it is
in, writes ``checkpoints/last`` and raises :class:`TrainingInterrupted`, whose message says
how to continue; the command line then exits with 128 + the signal's number (130, 143), as a
shell reports a program the signal stopped. A second signal raises ``KeyboardInterrupt`` at
once (the user insists; the checkpoint files are written atomically, so none is left
half-written). Signal handlers can only be installed from the main thread; elsewhere both
signals behave as Python's default.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from vaekit.support import spelling


def resume_command(run: str | Path, lr: float | None = None) -> str:
    """How to continue ``run``, in the voice of the caller (command line or Python)."""
    if spelling.on_command_line():
        return f"vaekit train --resume {run}" + (f" --lr {lr:g}" if lr is not None else "")
    call = f"vaekit.train(resume={str(run)!r})"
    return call if lr is None else f"{call} with a config whose optim.lr = {lr:g}"


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C or SIGTERM after writing a checkpoint (if it has a run
    directory).

    ``step``: the optimiser steps done; ``run_dir``: where to resume from (None without one);
    ``checkpoint_step``: the step the last checkpoint holds (None if there is none);
    ``signum``: the signal that asked for the stop; ``exit_status``: 128 + ``signum``.
    """

    def __init__(
        self,
        step: int,
        run_dir: Path | None,
        checkpoint_step: int | None,
        signum: int = signal.SIGINT,
    ) -> None:
        self.step, self.run_dir, self.checkpoint_step = step, run_dir, checkpoint_step
        self.signum, self.exit_status = int(signum), 128 + int(signum)
        what = "interrupted" if signum == signal.SIGINT else "terminated (SIGTERM)"
        if run_dir is None:
            message = f"{what} at step {step} (no run directory: nothing was saved)"
        elif checkpoint_step is None:
            message = f"{what} at step {step}; no checkpoint was written, nothing to resume"
        else:
            message = f"{what} at step {step}; continue with: {resume_command(run_dir)}"
            if checkpoint_step != step:  # a run of non-finite steps is never checkpointed
                message += f" (the checkpoint holds step {checkpoint_step})"
        super().__init__(message)


# The signals that stop training cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptFlag:
    """Between ``start()`` and ``stop()``, the first SIGINT or SIGTERM sets ``requested``
    and ``signum`` (which one)."""

    def __init__(self) -> None:
        self.requested = False
        self.signum: int = signal.SIGINT
        self._previous: dict[int, object] = {}

    def start(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)

    def stop(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second signal: stop now
            self.stop()
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum
