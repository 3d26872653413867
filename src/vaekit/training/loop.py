"""The training loop: ``Trainer.run`` goes over epochs of steps until the budget is spent,
patience runs out or Ctrl-C; ``Trainer._step`` is one optimiser update on one global batch.
Checkpoints and resuming are in ``state.py``, records and outputs in ``records.py``."""

from __future__ import annotations

import math
import time

import torch

from vaekit import rundir
from vaekit.models import build_model
from vaekit.objectives import NegativeELBO, build_objective
from vaekit.support.spelling import spell
from vaekit.training import distributed, state_files
from vaekit.training.averaging import PolyakAverage
from vaekit.training.console import Clock, format_record
from vaekit.training.data_setup import batches_per_epoch, training_data
from vaekit.training.device import setup_device
from vaekit.training.interrupt import InterruptFlag, signal_after_step
from vaekit.training.precision import restore_precision, setup_precision
from vaekit.training.records import Records
from vaekit.training.result import TrainingError, TrainResult
from vaekit.training.schedules import CosineSchedule, build_schedule, kl_weight
from vaekit.training.state import Checkpoints, LoopState
from vaekit.training.step import (
    build_step_module,
    check_gradients,
    check_training_fits,
    make_optimizer,
    reduce_step,
)
from vaekit.training.validation import Validation

# The default budget's epochs, before train.min_steps raises them for small data.
DEFAULT_EPOCHS = 10


class Trainer(Checkpoints, Records):
    """One training run. ``run()`` is the loop; the rest are its steps, in reading order."""

    def __init__(self, config, out, overwrite, dataset, log, resume, lock=None) -> None:
        tc = config.train
        self.config, self.log = config, log
        setup_start = time.perf_counter()
        self.lock = lock if lock is not None else rundir.RunLock()
        self.clock = Clock()
        self.ctx, self.device = setup_device(tc)
        if not self.ctx.is_main:  # one voice: rank 0 logs, the others stay quiet
            self.log = lambda message: None
        torch.manual_seed(tc.seed)  # the same initial weights on every rank
        self.dataset = dataset = training_data(config, dataset)
        # Weights, gradients, Adam's two moments (and the average): refused before allocating.
        check_training_fits(config.model, self.device, 4 + (config.optim.ema_decay is not None))
        self.model = build_model(config.model).to(self.device)
        self.scaler = setup_precision(self.model, tc.precision, self.device)
        self.objective = build_objective(config.objective, self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.model, config.optim.lr, config.optim.weight_decay)
        decay = config.optim.ema_decay
        self.average = PolyakAverage(self.params, decay) if decay is not None else None
        self.batches_per_epoch = batches_per_epoch(
            len(dataset.train), tc.batch_size, self.ctx.world_size
        )
        self.budget = self._step_budget()
        self.schedule = build_schedule(config.optim.lr, config.schedule, self.budget)
        if self.ctx.rank > 0:  # independent reparameterisation noise on every rank
            torch.manual_seed(tc.seed + (self.ctx.rank << 32))
        self.generator = torch.Generator().manual_seed(tc.seed)  # data order + transforms
        self.epoch_start_state = self.generator.get_state()
        self.validation = Validation(dataset, config, self.ctx, self.device)
        self.state, self.history, self.steps = LoopState(), [], []
        self.interval_seconds = 0.0  # training time of the current log interval, past epochs
        self.interrupt, self.stop_requested, self.checkpoint_due = InterruptFlag(), False, False
        self.out_of_time, self.next_snapshot = False, None  # the wall-clock budget; snapshots
        # Epochs this process has ended, and whether the time budget was found too short for
        # the cosine schedule (said once).
        self.process_epochs, self.schedule_outlasts_time = 0, False
        self.last_checkpoint_time, self.checkpoint_step = time.monotonic(), None
        self._open_run(out, overwrite, resume)  # a new run directory, or the resumed run's
        # A finished run resumed with the same budget: say so, write nothing (run()).
        self.finished = resume is not None and self._nothing_left()
        self.writes = self.run_dir is not None and self.ctx.is_main and not self.finished
        self.started = setup_start - self.state.train_seconds  # the clock of train_seconds
        self.step_module = build_step_module(
            self.model, self.objective, self.ctx, self.device, tc.compile
        )
        self.tensorboard = self._open_tensorboard()
        self.bar = None  # opened in run(), after the lines that come before it

    def _step_budget(self) -> int:
        """Optimiser steps to train: train.max_steps, else train.epochs epochs, else the
        default: DEFAULT_EPOCHS epochs, raised to make train.min_steps steps (said in
        ``_announce``), since the steps a model needs do not shrink with the data."""
        tc, per_epoch = self.config.train, self.batches_per_epoch
        if tc.max_steps:
            return tc.max_steps
        if tc.epochs is not None:
            return tc.epochs * per_epoch
        self.default_epochs = max(DEFAULT_EPOCHS, math.ceil(tc.min_steps / per_epoch))
        return self.default_epochs * per_epoch

    def run(self) -> TrainResult:
        """Train to the end of the budget (or early stop); write the outputs; say so."""
        if self.finished:
            return self._nothing_to_train()
        self._announce()  # before the bar opens: lines printed later would land on its line
        self.bar = self._open_progress_bar()
        self.interrupt.start()  # Ctrl-C, SIGTERM: finish the step, checkpoint, stop
        try:
            reason = self._train_epochs()
            self.interrupt.stop()
            if self.bar is not None:  # the end-of-training lines go below a finished bar
                self.bar.close()
            self._final_model()
            if self.writes:
                self._write_outputs()
        except BaseException:
            distributed.teardown(self.ctx, wait=False)  # other ranks may be elsewhere: no barrier
            raise
        else:
            distributed.teardown(self.ctx)
        finally:
            self.interrupt.stop()
            if self.bar is not None:
                self.bar.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
        return self._result(reason)

    def _train_epochs(self) -> str:
        """Epochs of steps until the budget is spent ("budget") or patience runs out
        ("early-stop"); raises ``TrainingInterrupted`` after a checkpoint on Ctrl-C or
        SIGTERM (except at the budget's end, where the run just finishes)."""
        tc, state, reason = self.config.train, self.state, "budget"
        # In memory, or streamed from disk (never loaded whole; each rank reads its rows).
        train_split = self.dataset.train.for_rank(self.ctx.rank, self.ctx.world_size)
        while state.step < self.budget and reason == "budget":
            if state.batch == 0:  # a new epoch: its order comes first
                self.epoch_start_state = self.generator.get_state()
                order = self.generator
            else:  # resumed mid-epoch: the same order, the generator where it was
                order = torch.Generator().set_state(self.epoch_start_state)
            batches = train_split.epoch_batches(tc.batch_size, order, start=state.batch)
            self.model.train()
            self.timer = self.epoch_timer = time.perf_counter()
            self.epoch_start_step = state.step
            # The range ends first when a last partial batch is left out (batches_per_epoch).
            steps = range(state.batch, self.batches_per_epoch)
            for b, (stored, y) in zip(steps, batches, strict=False):
                # The same global batch and transform draw on every rank; keep our rows.
                x = self.dataset.transform(stored, self.generator)
                lo, hi = self.ctx.shard(x.shape[0])
                y = y[lo:hi].to(self.device) if y is not None else None
                self._step(x[lo:hi].to(self.device), y, x.shape[0])
                state.batch = b + 1
                mid_epoch = state.batch < self.batches_per_epoch
                stop = self.stop_requested and mid_epoch and state.step < self.budget
                if mid_epoch and (
                    state.step % tc.checkpoint_every == 0 or self.checkpoint_due or stop
                ):
                    self._checkpoint("last")
                if stop:
                    raise self._interruption()
                signal_after_step(state.step)
                if state.step >= self.budget or self.out_of_time:
                    break
            reason = self._end_epoch()  # checkpoints `last`
            if self.out_of_time and reason == "budget":
                reason = "time"  # the wall-clock budget ended before the step budget
            if self.stop_requested and reason == "budget" and state.step < self.budget:
                raise self._interruption()
        return reason

    def _step(self, x: torch.Tensor, y: torch.Tensor | None, n_global: int) -> None:
        """One update on this rank's rows ``x`` (labels ``y`` or None) of a global batch of
        ``n_global`` examples."""
        state, cfg = self.state, self.config
        if isinstance(self.objective, NegativeELBO):  # KL warm-up
            self.objective.beta = kl_weight(
                state.step, cfg.objective.beta, cfg.objective.kl_warmup_steps
            )
        lr = self.schedule.lr(state.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, metrics = self.step_module(x, y)
        # DDP averages gradients over ranks: weight each rank's mean by its share of the batch.
        weight = self.ctx.world_size * x.shape[0] / n_global
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * weight if weight != 1.0 else loss).backward()
        self.scaler.unscale_(self.optimizer)
        # grad_norm is measured where a record is written: a logging step, an epoch's last
        # step, the budget's last step (the guard checks every step more cheaply).
        measure = (
            (state.step + 1) % cfg.train.log_every == 0
            or state.batch + 1 == self.batches_per_epoch
            or state.step + 1 == self.budget
        )
        finite, grad_norm = check_gradients(self.params, cfg.optim.grad_clip, measure)
        # The batch's metrics as Python floats (one copy out of the tensors), then sums
        # (nats per example times examples) over ranks.
        names = ["loss", *metrics]
        batch_means = torch.stack([loss.detach(), *metrics.values()]).tolist()
        bad = not math.isfinite(batch_means[0]) or (not finite and not self.scaler.is_enabled())
        values = [value * x.shape[0] for value in batch_means]
        flags = [self.interrupt.requested, bad, *self._clock_flags()]
        sums, flags = reduce_step(values, flags, self.ctx, self.device)
        self.stop_requested, bad, self.checkpoint_due, self.out_of_time = flags
        state.step += 1
        if bad:  # the NaN/inf guard: no update from a non-finite loss or gradient
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            state.bad_steps += 1
            state.skipped_steps += 1
            self._write_skip(lr)
            if state.bad_steps >= cfg.train.max_bad_steps:
                raise TrainingError(self._nan_guard_message(lr))
            return
        self.scaler.step(self.optimizer)  # with fp16, skipped by the scaler on overflow
        self.scaler.update()
        if self.average is not None:
            self.average.update()
        state.bad_steps = 0
        totals = dict(zip(names, sums, strict=True)) | {"examples": float(n_global)}
        if grad_norm is not None and math.isfinite(grad_norm):  # fp16 overflow steps: none
            totals |= {"grad_norm": grad_norm, "grad_norm_steps": 1.0}
        for acc in (state.interval, state.epoch_sums):
            for key, value in totals.items():
                acc[key] = acc.get(key, 0.0) + value
        self._show_progress(lr)
        if state.step % cfg.train.log_every == 0:
            self._write_step_record(lr)
        self._snapshot_if_due()

    def _end_epoch(self) -> str:
        """Validate, write the epoch record, step the schedule, checkpoint; say whether to stop
        ("budget": go on, "early-stop": patience ran out)."""
        state, tc = self.state, self.config.train
        state.epoch += 1
        state.batch = 0
        now = time.perf_counter()
        seconds = now - self.epoch_timer  # training time, without validation
        self.interval_seconds += now - self.timer  # the step records' clock stops here too
        val = self.validation(self.model, self._averaged_weights)
        record = self._epoch_record(seconds, val)
        val_elbo = val.get("elbo")
        self.schedule.epoch_end(val_elbo)
        improved = state.note_validation(val_elbo)
        reason = "budget"
        if tc.patience is not None and state.epochs_without_improvement >= tc.patience:
            reason = "early-stop"
            record["early_stop"] = (
                f"no better validation ELBO for {tc.patience} epochs "
                f"(best {state.best_val_elbo - self._data_scale():.3f} nats per example at "
                f"epoch {state.best_epoch})"
            )
        self.history.append(record)
        self._write(record)
        if self.tensorboard is not None and state.epoch % tc.tensorboard_images_every == 0:
            self._tensorboard_pictures()
        self._say(format_record(record, self.budget))
        if improved:
            self._checkpoint("best")
            self._remember_best()
        state.epoch_end_seconds = time.perf_counter() - now  # `last` below saves it
        self._checkpoint("last")  # refuses non-finite weights: the checkpoint stays good
        self.process_epochs += 1
        self._check_schedule_fits_time(seconds + time.perf_counter() - now)
        return reason

    def _check_schedule_fits_time(self, epoch_seconds: float) -> None:
        """Warn once when train.max_minutes will stop the run before a cosine schedule, laid
        out over the step budget, reaches its floor: the model would be the one mid-schedule,
        at a learning rate well above ``schedule.min_lr``. Projected from the epoch just
        ended (``epoch_seconds``, validation and checkpoints included), from the second epoch
        of this process on, so that start-up and compilation do not count as the pace."""
        limit, state = self.config.train.max_minutes, self.state
        if (
            limit is None
            or self.schedule_outlasts_time
            or not isinstance(self.schedule, CosineSchedule)
            or self.process_epochs < 2
            or state.step >= self.budget
        ):
            return
        steps_per_second = (state.step - self.epoch_start_step) / max(epoch_seconds, 1e-9)
        needed = self._train_seconds() + (self.budget - state.step) / steps_per_second
        if needed <= limit * 60.0:
            return
        self.schedule_outlasts_time = True
        fits = state.step + int((limit * 60.0 - self._train_seconds()) * steps_per_second)
        self._say(
            f"warning: at {steps_per_second * 60:,.0f} steps a minute (validation included), "
            f"the step budget of {self.budget:,} needs about {needed / 60:.0f} minutes; "
            f"{spell('--max-minutes', 'train.max_minutes')} {limit:g} stops the run near step "
            f"{max(fits, state.step):,}, before the cosine schedule ends: size "
            f"{spell('--max-steps', 'train.max_steps')} to the time for a schedule that ends"
        )

    def _remember_best(self) -> None:
        """With train.keep = "best": a copy of the weights (the Polyak average if kept) of the
        best validation ELBO so far, the model training ends with."""
        if self.config.train.keep == "best":
            with self._averaged_weights():
                state = self.model.state_dict()
                self.best_weights = {k: v.detach().clone() for k, v in state.items()}

    def _final_model(self) -> None:
        """The model ``train`` returns: the Polyak average if kept, or the best epoch's
        weights with train.keep = "best"; eval mode, fp32. Sets ``kept_epoch``."""
        if self.average is not None:
            self.average.apply_permanently()
        self.kept_epoch = self.state.epoch
        best = self.state.best_epoch
        if self.config.train.keep == "best" and best is not None and best != self.state.epoch:
            weights = getattr(self, "best_weights", None)
            if weights is None:  # resumed after the best epoch: checkpoints/best holds it
                path = self.run_dir / "checkpoints" / "best"
                weights = state_files.load_training_state(path)[1]
            self.model.load_state_dict(weights)
            self.kept_epoch = best
        self.model.eval()
        restore_precision(self.model)
