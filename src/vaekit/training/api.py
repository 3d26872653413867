"""``train(config, out) -> TrainResult``: the library's (and the CLI's) one way to train."""

from __future__ import annotations

from pathlib import Path

from vaekit import rundir
from vaekit.config import Config
from vaekit.data import Dataset
from vaekit.training.loop import Trainer
from vaekit.training.result import TrainResult
from vaekit.training.run_dir import check_out_and_resume
from vaekit.training.state import run_config


def train(
    config: Config | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    dataset: Dataset | None = None,
    log=print,
    resume: str | Path | None = None,
) -> TrainResult:
    """Train the model described by ``config``; write a run directory to ``out`` if given.

    ``resume=RUN`` continues the run in RUN from ``RUN/checkpoints/last`` (``config``
    defaults to the run's own; a given one may change the budget, logging, device, but not
    the model or data). Returns the trained model (eval mode) and its history (nats per
    example). Raises :class:`TrainingError` when the NaN guard gives up and
    :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) on Ctrl-C or SIGTERM, after a
    checkpoint.
    The run directory is locked against other writers while training runs.
    """
    check_out_and_resume(out, resume)
    if config is None:
        if resume is None:
            raise ValueError("train: give a config, or resume=RUN to continue a run")
        config = run_config(resume)
    lock = rundir.RunLock()  # held from the run directory's creation (or resume) to the end
    try:
        return Trainer(config, out, overwrite, dataset, log, resume, lock).run()
    finally:
        lock.release()
