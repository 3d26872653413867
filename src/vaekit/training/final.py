"""The end of a training run: the weights it keeps (the last epoch's, or the best validation
ELBO's with train.keep = "best"), the files written after training (the model, its pictures,
the report) and the closing summary."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaekit import checkpoint
from vaekit.config import Config, to_dict
from vaekit.data import Dataset
from vaekit.models import Model
from vaekit.support.provenance import training_metadata
from vaekit.support.spelling import spell
from vaekit.training import state_files
from vaekit.training.averaging import PolyakAverage
from vaekit.training.console import still_improving, summary
from vaekit.training.precision import restore_precision
from vaekit.training.state import LoopState


@dataclass
class KeptWeights:
    """Which weights training ends with: ``keep`` is train.keep; ``best`` a copy of the best
    validation ELBO's weights so far (with "best", taken in this process; None before, or
    when resumed after the best epoch: checkpoints/best holds them); ``epoch`` the epoch of
    the weights the final model holds (set by ``finish``)."""

    keep: str
    best: dict[str, torch.Tensor] | None = None
    epoch: int | None = None

    def remember(self, model: Model, averaged: Callable[[], AbstractContextManager]) -> None:
        """With train.keep = "best": copy the weights (inside ``averaged()``: the Polyak
        average if kept) of the epoch that just had the best validation ELBO so far."""
        if self.keep == "best":
            with averaged():
                state = model.state_dict()
                self.best = {k: v.detach().clone() for k, v in state.items()}

    def finish(
        self, model: Model, average: PolyakAverage | None, state: LoopState, run_dir: Path | None
    ) -> None:
        """Make ``model`` the one ``train`` returns: the Polyak average if kept, or the best
        epoch's weights with train.keep = "best"; eval mode, fp32."""
        if average is not None:
            average.apply_permanently()
        self.epoch = state.epoch
        best = state.best_epoch
        if self.keep == "best" and best is not None and best != state.epoch:
            weights = self.best
            if weights is None:  # resumed after the best epoch: checkpoints/best holds it
                weights = state_files.load_training_state(run_dir / "checkpoints" / "best")[1]
            model.load_state_dict(weights)
            self.epoch = best
        model.eval()
        restore_precision(model)

    def summary_line(self, state: LoopState, writes: bool) -> str:
        """Which weights the model holds (model.safetensors, the returned model), and how to
        keep the other choice."""
        best, last = state.best_epoch, state.epoch
        flag = spell("--keep best", "train.keep = 'best'")
        where = "model.safetensors holds" if writes else "the model holds"
        if self.keep == "best" and best is not None:
            return (
                f"  {where} the weights of epoch {self.epoch}, the best validation ELBO "
                f"({flag}; the last epoch was {last})"
            )
        line = f"  {where} the weights of the last epoch ({last})"
        if best is not None and best != last:
            line += f"; the best validation ELBO was at epoch {best}: {flag} keeps that one"
        return line

    def save(
        self,
        model: Model,
        run_dir: Path,
        dataset: Dataset,
        config: Config,
        train_seconds: float,
        device: torch.device,
        world_size: int,
    ) -> None:
        """The trained model in ``run_dir`` and its pictures. config.json's metadata says
        where and how long it trained, and which weights these are (train.keep and the
        epoch they are from)."""
        from vaekit.report.plots import save_run_pictures

        metadata = training_metadata(device, train_seconds, world_size)
        metadata |= {"keep": self.keep, "epoch": self.epoch}
        checkpoint.save_model(
            model, run_dir, data=dataset.info(), config=to_dict(config), metadata=metadata
        )
        save_run_pictures(model, dataset, run_dir, seed=config.train.seed)


def write_report(
    run_dir: Path,
    config: Config,
    seconds_left: float | None,
    log: Callable[[str], None],
) -> None:
    """RUN/report.html, after saying so: it evaluates first (K = 100 importance samples on
    up to 1000 test examples). Under train.max_minutes it gets ``seconds_left`` of the budget
    (training kept some back: ``clock.closing_seconds``) and fits its evaluation in it; with
    nothing left it is not written, and says how to write it."""
    from vaekit.report.html import write_report as write_html

    path = run_dir / "report.html"
    skip = spell("--no-report", "config.train.report = False")
    if seconds_left is not None and seconds_left <= 0:
        limit = config.train.max_minutes
        log(
            f"{path} not written: the time budget "
            f"({spell('--max-minutes', 'train.max_minutes')} {limit:g}) is spent; "
            f"`vaekit report {run_dir}` writes it"
        )
        return
    log(f"writing the report {path} (a quick evaluation first; {skip} skips it)")
    try:  # the report must never cost the trained model: it is saved before
        write_html(run_dir, seed=config.train.seed, log=log, max_seconds=seconds_left)
    except Exception as exc:
        log(f"warning: {path} not written: {exc}")


def nothing_left_line(
    run_dir: Path, state: LoopState, budget: int, max_minutes: float | None
) -> str:
    """What resuming a finished run says: it ended at ``state``, with its step ``budget``
    spent, or its time budget (``max_minutes``, None when that is not what ended it)."""
    if max_minutes is not None:
        spent = f"{max_minutes:g} minutes"
        flags = spell("--max-minutes", "config.train.max_minutes")
    else:
        spent = f"{budget} steps"
        flags = spell("--epochs or --max-steps", "config.train.epochs or max_steps")
    return (
        f"nothing left to train: {run_dir} finished at step {state.step} "
        f"(epoch {state.epoch}; budget {spent}); raise {flags} to train on"
    )


def skipped_lines(state: LoopState, threshold: float | None) -> list[str]:
    """How many steps had their update skipped, and why (none when none was and no
    threshold was set)."""
    if not state.skipped_steps and threshold is None:
        return []
    why = "a non-finite loss or gradient"
    if threshold is not None:
        flag = spell("--grad-skip-threshold", "train.grad_skip_threshold")
        why = f"a gradient norm above {threshold:g} ({flag}) or {why}"
    return [f"  {state.skipped_steps:,} of {state.step:,} steps skipped ({why})"]


def closing_lines(
    history: list[dict[str, Any]],
    reason: str,
    seconds: float,
    run_dir: Path | None,
    files: list[str],
    extra: list[str],
) -> list[str]:
    """The closing summary (console.summary) with the ``extra`` lines after its ELBO line and
    a warning when the run ended far from converged."""
    lines = summary(history, reason, seconds, run_dir, files)
    lines[2:2] = extra
    flags = spell("--epochs or --max-steps", "train.epochs or train.max_steps")
    warning = still_improving(history, flags) if reason in ("budget", "time") else None
    return lines + ([warning] if warning else [])
