"""Learning-rate schedules and the KL warm-up, as small objects with JSON-ready state.

A schedule answers ``lr(step)`` for the optimiser step about to be taken (``step`` counts
from 0) and may react to the validation ELBO at the end of an epoch (``epoch_end``). Its
state is a dict of plain numbers, so a checkpoint stores it as JSON, never as a pickle.
"""

from __future__ import annotations

import math
from typing import Any

from vaekit.config import ScheduleConfig


class Schedule:
    """Constant learning rate: ``lr(step) = base_lr``."""

    def __init__(self, base_lr: float, config: ScheduleConfig, total_steps: int) -> None:
        self.base_lr = base_lr
        self.config = config
        self.total_steps = total_steps

    def lr(self, step: int) -> float:
        return self.base_lr

    def epoch_end(self, val_elbo: float | None) -> None:
        """React to the epoch's validation ELBO (nats per example, higher is better)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class CosineSchedule(Schedule):
    """Linear warm-up then a half cosine (Loshchilov & Hutter 2017, without restarts).

    For ``step < W``: ``lr = base_lr * (step + 1) / W`` (so the first step is not at 0);
    after: ``lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * t)) / 2`` with
    ``t = (step - W) / max(1, T - 1 - W)`` in [0, 1], ``T`` the total number of steps, so the
    last step runs at ``min_lr``.
    """

    def lr(self, step: int) -> float:
        warmup, min_lr = self.config.warmup_steps, self.config.min_lr
        if step < warmup:
            return self.base_lr * (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, self.total_steps - 1 - warmup))
        return min_lr + (self.base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


class PlateauSchedule(Schedule):
    """Reduce on plateau: ``lr *= factor`` after ``patience`` epochs without a new best
    validation ELBO (never below ``min_lr``); the counter restarts after each reduction."""

    def __init__(self, base_lr: float, config: ScheduleConfig, total_steps: int) -> None:
        super().__init__(base_lr, config, total_steps)
        self.current = base_lr
        self.best: float | None = None
        self.bad_epochs = 0

    def lr(self, step: int) -> float:
        return self.current

    def epoch_end(self, val_elbo: float | None) -> None:
        if val_elbo is None:
            return
        if self.best is None or val_elbo > self.best:
            self.best, self.bad_epochs = val_elbo, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.config.patience:
            self.current = max(self.config.min_lr, self.current * self.config.factor)
            self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "base_lr": self.base_lr,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.current = float(state["current"])
        if state.get("base_lr"):  # resumed with another optim.lr: keep the reductions so far
            self.current *= self.base_lr / float(state["base_lr"])
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])


SCHEDULES: dict[str, type[Schedule]] = {
    "constant": Schedule,
    "cosine": CosineSchedule,
    "plateau": PlateauSchedule,
}


def build_schedule(base_lr: float, config: ScheduleConfig, total_steps: int) -> Schedule:
    """The schedule named in ``config`` for a run of ``total_steps`` optimiser steps."""
    return SCHEDULES[config.name](base_lr, config, total_steps)


def kl_weight(step: int, target: float, warmup_steps: int) -> float:
    """KL warm-up (Bowman et al. 2016; Sonderby et al. 2016): the KL weight for ``step``.

    beta rises linearly from 0 at step 0 to ``target`` at step ``warmup_steps`` and stays
    there; ``warmup_steps = 0`` means no warm-up (``target`` from the start).
    """
    if warmup_steps <= 0:
        return target
    return target * min(1.0, step / warmup_steps)
