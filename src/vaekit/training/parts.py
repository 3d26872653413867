"""The parts of one training run and their set-up: ``TrainerParts`` declares what a
``Trainer`` holds and builds it, in the order the seeds depend on (the initial weights, then
each rank's noise, then the data order), taking a resumed run up from its checkpoint.

The loop over them (``Trainer.run`` and ``Trainer.step``) is in ``loop.py``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vaekit import rundir
from vaekit.config import Config, to_dict
from vaekit.data import Dataset
from vaekit.models import Model, build_model
from vaekit.objectives import IWAEObjective, NegativeELBO, build_objective
from vaekit.training import distributed, final, state_files
from vaekit.training.averaging import PolyakAverage
from vaekit.training.checkpoints import CheckpointKeeper
from vaekit.training.clock import RunClock, closing_seconds
from vaekit.training.compiling import StepCompiler, eager_reason
from vaekit.training.data_setup import batches_per_epoch, training_data
from vaekit.training.device import setup_device
from vaekit.training.interrupt import InterruptFlag
from vaekit.training.precision import setup_precision
from vaekit.training.records import RecordBook, data_scale
from vaekit.training.run_dir import open_run_dir
from vaekit.training.schedules import Schedule, build_schedule
from vaekit.training.state import DataOrder, LoopState, StepBudget
from vaekit.training.step import build_step_module, check_training_fits, make_optimizer
from vaekit.training.validation import Validation

if TYPE_CHECKING:
    from vaekit.training.tensorboard import TensorBoardLog


class TrainerParts:
    """What one training run holds, built in the order the seeds depend on; ``Trainer`` (in
    ``loop.py``) runs the loop over them."""

    config: Config
    log: Callable[[str], None]  # rank 0's voice; the other ranks stay quiet
    lock: rundir.RunLock  # held on the run directory from its creation (or resume) to the end
    clock: RunClock
    ctx: distributed.DistContext
    device: torch.device
    dataset: Dataset  # as the model sees it
    model: Model
    scaler: torch.amp.GradScaler  # disabled unless fp16
    objective: torch.nn.Module
    params: list[torch.nn.Parameter]  # the trainable ones
    optimizer: torch.optim.Optimizer
    average: PolyakAverage | None  # optim.ema_decay
    budget: StepBudget
    schedule: Schedule  # the learning rate of each step
    order: DataOrder
    validation: Validation
    state: LoopState
    interrupt: InterruptFlag
    # The step's all-reduced control flags: Ctrl-C or SIGTERM on any rank, a time-based
    # checkpoint due, the wall-clock budget spent.
    stop_requested: bool
    checkpoint_due: bool
    out_of_time: bool
    run_dir: Path | None  # the run's directory (every rank knows it; rank 0 writes)
    checkpoints: CheckpointKeeper
    records: RecordBook
    finished: bool  # a finished run resumed with the same budget: nothing to train
    writes: bool  # this process writes the run directory
    compiler: StepCompiler  # objective(model, x, y) under DDP, eager or compiled
    kept: final.KeptWeights
    tensorboard: TensorBoardLog | None

    def __init__(self, config, out, overwrite, dataset, log, resume, lock=None) -> None:
        tc = config.train
        self.config, self.log = config, log
        self.clock = RunClock.for_config(tc)  # training seconds count from here
        self.lock = lock if lock is not None else rundir.RunLock()
        self.ctx, self.device = setup_device(tc)
        if not self.ctx.is_main:
            self.log = lambda message: None
        torch.manual_seed(tc.seed)  # the same initial weights on every rank
        self.dataset = dataset = training_data(config, dataset, self.log)
        # Weights, gradients, Adam's two moments (and the average): refused before allocating.
        check_training_fits(config.model, self.device, 4 + (config.optim.ema_decay is not None))
        self.model = build_model(config.model).to(self.device)
        self.scaler = setup_precision(self.model, tc.precision, self.device)
        self.objective = build_objective(config.objective, self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.model, config.optim.lr, config.optim.weight_decay)
        decay = config.optim.ema_decay
        self.average = PolyakAverage(self.params, decay) if decay is not None else None
        per_epoch = batches_per_epoch(len(dataset.train), tc.batch_size, self.ctx.world_size)
        self.budget = StepBudget.for_config(tc, per_epoch)
        self.schedule = build_schedule(config.optim.lr, config.schedule, self.budget.steps)
        if self.ctx.rank > 0:  # independent reparameterisation noise on every rank
            torch.manual_seed(tc.seed + (self.ctx.rank << 32))
        self.order = DataOrder.seeded(tc.seed)  # data order + transforms
        self.validation = Validation(dataset, config, self.ctx, self.device)
        self.state, self.interrupt = LoopState(), InterruptFlag()
        self.stop_requested = self.checkpoint_due = self.out_of_time = False
        self.run_dir = open_run_dir(out, overwrite, resume, self.ctx, self.lock)
        if self.run_dir is not None and resume is None and self.ctx.is_main:
            info, cfg = dataset.info(), to_dict(config)
            state_files.write_run_config(self.run_dir, self.model, info, cfg)
        self.checkpoints = CheckpointKeeper(
            self.run_dir,
            config,
            self.ctx,
            self.device,
            self.model,
            self.optimizer,
            self.scaler,
            self.schedule,
            self.average,
            self.order,
            dataset.info(),
            self.log,
        )
        self.records = RecordBook(
            self.log,
            self.budget.steps,
            data_scale(self.model, dataset),
            isinstance(self.objective, NegativeELBO | IWAEObjective),
        )
        if resume is not None:
            self._resume(state_files.find_checkpoint(resume))
        writes_report = self.run_dir is not None and self.ctx.is_main
        self.clock.closing_seconds = closing_seconds(tc, writes_report)
        # A finished run resumed with the same budget: say so, write nothing (run()).
        self.finished = resume is not None and (
            self.budget.spent(self.state, tc.patience) or self._time_spent()
        )
        self.writes = self.run_dir is not None and self.ctx.is_main and not self.finished
        self.clock.resume_at(self.state.train_seconds)
        step_module = build_step_module(self.model, self.objective, self.ctx, self.device)
        why_not = eager_reason(tc, self.ctx, self.device)
        shapes = 2 if len(dataset.train) % tc.batch_size else 1  # a last partial batch
        args = why_not, self.state.compile, shapes
        self.compiler = StepCompiler(tc.compile, step_module, *args)
        self.kept, self.tensorboard = final.KeptWeights(tc.keep), None
        if self.writes:
            self.checkpoints.writes = True
            self.records.metrics = self.run_dir / "metrics.jsonl"
            self.tensorboard = self._open_tensorboard() if tc.tensorboard else None
            if self.tensorboard is not None:  # the records write its scalars
                self.records.tensorboard = self.tensorboard.writer

    def _resume(self, path: Path) -> None:
        """Take the run up from checkpoint ``path``: everything it holds, the budget checked
        against it, and metrics.jsonl cut back to its length then (dropping what a killed run
        wrote after it)."""
        state = self.checkpoints.restore(path)
        self.budget.check(state, self.config.train, path)
        self.state = state
        metrics = self.run_dir / "metrics.jsonl"
        self.records.restore(metrics, state.metrics_bytes, truncate=self.ctx.is_main)

    def _open_tensorboard(self) -> TensorBoardLog | None:
        """RUN/tensorboard, continued from this step; None where tensorboard is missing."""
        from vaekit.training.tensorboard import TensorBoardLog

        if not TensorBoardLog.available():
            return None
        args = self.model, self.checkpoints.averaged_weights, self.dataset, self.config.train.seed
        return TensorBoardLog(self.run_dir, self.state.step, *args)

    def _time_spent(self) -> bool:
        """Whether the restored run has spent its wall-clock budget (train.max_minutes)."""
        state = self.state
        return self.clock.out_of_time(state.train_seconds, state.epoch_end_seconds)
