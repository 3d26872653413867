"""What the loop counts and where it is: ``LoopState`` (the counters trainer.json stores), the
step budget, and the data order (the data generator and its state at the epoch's start)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vaekit import checkpoint
from vaekit.config import Config, TrainConfig
from vaekit.support.spelling import spell
from vaekit.training import state_files

# The default budget's epochs, before train.min_steps raises them for small data.
DEFAULT_EPOCHS = 10


@dataclass
class LoopState:
    """The loop's counters and running sums: everything trainer.json stores besides the
    schedule and scaler. Sums are over examples (metrics) or steps (grad norm)."""

    step: int = 0  # optimiser steps attempted (skipped ones included)
    epoch: int = 0  # completed epochs
    batch: int = 0  # batches done in the current epoch
    best_val_elbo: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    bad_steps: int = 0  # consecutive non-finite steps
    skipped_steps: int = 0  # steps whose update was skipped: non-finite, or over the threshold
    interval: dict[str, float] = field(default_factory=dict)
    epoch_sums: dict[str, float] = field(default_factory=dict)
    metrics_bytes: int = 0  # length of metrics.jsonl when the checkpoint was written
    train_seconds: float = 0.0  # wall-clock time of training so far, resumed sessions included
    # The last end of epoch (validation, records, checkpoints) in seconds: the wall-clock
    # budget keeps this much back so that the run's final validation fits inside it.
    epoch_end_seconds: float = 0.0
    # train.compile's decision, as logged ("compiled: yes (...)", "eager: ..."); None while
    # "auto" is still measuring. A resumed run keeps it (training/compiling.py).
    compile: str | None = None

    def add(self, totals: dict[str, float]) -> None:
        """Add a step's sums to the interval's and the epoch's."""
        for acc in (self.interval, self.epoch_sums):
            for key, value in totals.items():
                acc[key] = acc.get(key, 0.0) + value

    def note_validation(self, val_elbo: float | None) -> bool:
        """Count an epoch's validation ELBO (nats per example) for early stopping; return
        whether it is the best so far."""
        improved = val_elbo is not None and (
            self.best_val_elbo is None or val_elbo > self.best_val_elbo
        )
        if improved:
            self.best_val_elbo, self.best_epoch = val_elbo, self.epoch
            self.epochs_without_improvement = 0
        elif val_elbo is not None:
            self.epochs_without_improvement += 1
        return improved


@dataclass(frozen=True)
class StepBudget:
    """How many optimiser steps to train: ``steps`` in all, ``per_epoch`` an epoch (one pass
    over the training split, a last partial batch left out); ``default_epochs`` when the
    default budget was sized to the data (None when train.epochs or train.max_steps set it)."""

    steps: int
    per_epoch: int
    default_epochs: int | None = None

    @classmethod
    def for_config(cls, tc: TrainConfig, per_epoch: int) -> StepBudget:
        """train.max_steps, else train.epochs epochs, else the default: DEFAULT_EPOCHS epochs,
        raised to make train.min_steps steps, since the steps a model needs do not shrink
        with the data."""
        if tc.max_steps:
            return cls(tc.max_steps, per_epoch)
        if tc.epochs is not None:
            return cls(tc.epochs * per_epoch, per_epoch)
        epochs = max(DEFAULT_EPOCHS, math.ceil(tc.min_steps / per_epoch))
        return cls(epochs * per_epoch, per_epoch, epochs)

    def announcement(self, min_steps: int) -> str | None:
        """The line saying how the default budget was sized (None for a budget that was set)."""
        if self.default_epochs is None:
            return None
        set_it = spell("--epochs or --max-steps", "train.epochs or train.max_steps")
        return (
            f"budget: {self.default_epochs} epochs of {self.per_epoch} steps = {self.steps:,} "
            f"optimiser steps (the default: {DEFAULT_EPOCHS} epochs, raised to make at least "
            f"{min_steps:,} steps, {spell('--min-steps', 'train.min_steps')}; {set_it} sets it)"
        )

    def spent(self, state: LoopState, patience: int | None) -> bool:
        """Whether a restored run at ``state`` has spent this budget, or early-stopped (after
        ``patience`` epochs without a better validation ELBO, at an epoch's end)."""
        stopped_early = (
            patience is not None
            and state.batch == 0
            and state.epochs_without_improvement >= patience
        )
        return state.step >= self.steps or stopped_early

    def check(self, state: LoopState, tc: TrainConfig, path: Path) -> None:
        """Refuse a restored loop ``state`` (from checkpoint ``path``) beyond an epoch or
        beyond this budget, before anything in the run is changed."""
        if state.batch > self.per_epoch:
            raise checkpoint.CheckpointError(
                f"{path / state_files.TRAIN_STATE_FILE}: loop.batch {state.batch} is beyond "
                f"the {self.per_epoch} batches of an epoch"
            )
        if state.step > self.steps:
            asked = f"train.epochs = {tc.epochs}"
            if tc.epochs is None:
                asked = f"the default budget ({self.steps} steps)"
            if tc.max_steps:
                asked = f"train.max_steps = {tc.max_steps}"
            raise ValueError(
                f"{asked} is less than the run has done ({state.epoch} epochs, "
                f"{state.step} steps); give a larger budget to train on, or leave it as it is"
            )


@dataclass
class DataOrder:
    """The data generator (seeded with train.seed: the epochs' orders and the stochastic
    transforms draw from it) and its state when the current epoch started, so that a run
    resumed mid-epoch goes on in the same order."""

    generator: torch.Generator
    epoch_start: torch.Tensor

    @classmethod
    def seeded(cls, seed: int) -> DataOrder:
        generator = torch.Generator().manual_seed(seed)
        return cls(generator, generator.get_state())

    def for_epoch(self, batch: int) -> torch.Generator:
        """The generator that orders the epoch whose ``batch`` comes next: at batch 0, the
        data generator itself (the new epoch's order comes first); mid-epoch (resumed), a copy
        at the epoch's start, so that the order is the same and the data generator stays
        where it was."""
        if batch == 0:
            self.epoch_start = self.generator.get_state()
            return self.generator
        return torch.Generator().set_state(self.epoch_start)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"data.generator": self.generator.get_state(), "data.epoch_start": self.epoch_start}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(tensors["data.generator"])
        self.epoch_start = tensors["data.epoch_start"]


def run_config(run: str | Path) -> Config:
    """The full config a run was started with (read from its last checkpoint), for resuming."""
    descriptor = checkpoint.read_descriptor(state_files.find_checkpoint(run))
    return Config.from_dict(descriptor["config"])
