"""The training loop: ``Trainer.run`` goes over epochs of steps until the budget is spent,
patience runs out or Ctrl-C; ``Trainer.step`` is one optimiser update on one global batch.

The Trainer holds its parts as components, each declaring what it holds: the loop's counters
(``state.LoopState``), the budget and data order (``state``), the clocks (``clock``), the
checkpoints and snapshots (``checkpoints``), the records and console (``records``),
TensorBoard's pictures (``tensorboard``) and the weights it ends with (``final``). They are
declared and built, in the order the seeds depend on, by ``TrainerParts`` (``parts.py``)."""

from __future__ import annotations

import math

import torch

from vaekit.config import to_dict
from vaekit.objectives import NegativeELBO
from vaekit.training import distributed, final
from vaekit.training.console import written_since
from vaekit.training.interrupt import TrainingInterrupted
from vaekit.training.parts import TrainerParts
from vaekit.training.records import opening_lines
from vaekit.training.result import TrainingError, TrainResult
from vaekit.training.schedules import CosineSchedule, kl_weight
from vaekit.training.step import check_gradients, reduce_step


class Trainer(TrainerParts):
    """One training run. ``run()`` is the loop; ``step()`` one update; the rest are their
    parts, in reading order (the set-up is ``TrainerParts.__init__``)."""

    def run(self) -> TrainResult:
        """Train to the end of the budget (or early stop); write the outputs; say so."""
        if self.finished:
            return self._nothing_to_train()
        tc = self.config.train
        opening = opening_lines(self.config, self.dataset, self.records.data_scale)
        said = self.budget.announcement(tc.min_steps)
        self.records.announce(opening + ([said] if said else []))  # before the bar opens
        if self.ctx.is_main:
            self.records.open_bar(tc.progress, self.state.step)
        self._compile_news()
        self.interrupt.start()  # Ctrl-C, SIGTERM: finish the step, checkpoint, stop
        try:
            reason = self._train_epochs()
            self.interrupt.stop()
            self.records.close_bar()  # the end-of-training lines go below a finished bar
            self.kept.finish(self.model, self.average, self.state, self.run_dir)
            if self.writes:
                self._write_outputs()
        except BaseException:
            distributed.teardown(self.ctx, wait=False)  # other ranks may be elsewhere: no barrier
            raise
        else:
            distributed.teardown(self.ctx)
        finally:
            self.interrupt.stop()
            self.records.close()
        return self._result(reason)

    def _train_epochs(self) -> str:
        """Epochs of steps until the budget is spent ("budget") or patience runs out
        ("early-stop"); raises ``TrainingInterrupted`` after a checkpoint on Ctrl-C or
        SIGTERM (except at the budget's end, where the run just finishes)."""
        tc, state, reason = self.config.train, self.state, "budget"
        budget, per_epoch = self.budget.steps, self.budget.per_epoch
        # In memory, or streamed from disk (never loaded whole; each rank reads its rows).
        train_split = self.dataset.train.for_rank(self.ctx.rank, self.ctx.world_size)
        while state.step < budget and reason == "budget":
            order = self.order.for_epoch(state.batch)
            batches = train_split.epoch_batches(tc.batch_size, order, start=state.batch)
            self.model.train()
            self.clock.start_epoch(state.step)
            # The range ends first when a last partial batch is left out (batches_per_epoch).
            steps = range(state.batch, per_epoch)
            for b, (stored, y) in zip(steps, batches, strict=False):
                # The same global batch and transform draw on every rank; keep our rows.
                x = self.dataset.transform(stored, self.order.generator)
                lo, hi = self.ctx.shard(x.shape[0])
                y = y[lo:hi].to(self.device) if y is not None else None
                self.compiler.start_step()
                self.step(x[lo:hi].to(self.device), y, x.shape[0])
                if not self.compiler.announced:
                    self._compile_news()
                state.batch = b + 1
                mid_epoch = state.batch < per_epoch
                stop = self.stop_requested and mid_epoch and state.step < budget
                if mid_epoch and (
                    state.step % tc.checkpoint_every == 0 or self.checkpoint_due or stop
                ):
                    self._checkpoint("last")
                if stop:
                    raise self._interruption()
                if state.step >= budget or self.out_of_time:
                    break
            batches.close()  # a streamed epoch's read-ahead stops before validation reads
            reason = self._end_epoch()  # checkpoints `last`
            if self.out_of_time and reason == "budget":
                reason = "time"  # the wall-clock budget ended before the step budget
            if self.stop_requested and reason == "budget" and state.step < budget:
                raise self._interruption()
        return reason

    def step(self, x: torch.Tensor, y: torch.Tensor | None, n_global: int) -> None:
        """One update on this rank's rows ``x`` (labels ``y`` or None) of a global batch of
        ``n_global`` examples; ``state.step`` counts it whether or not the update is applied.

        Skipped (no update, a ``"kind": "skip"`` record, counted in ``skipped_steps``): a step
        with a non-finite loss or gradient (the NaN/inf guard: its metrics are dropped too),
        or with a gradient norm above train.grad_skip_threshold (its metrics still count)."""
        state, cfg = self.state, self.config
        threshold = cfg.train.grad_skip_threshold
        if isinstance(self.objective, NegativeELBO):  # KL warm-up
            self.objective.beta = kl_weight(
                state.step, cfg.objective.beta, cfg.objective.kl_warmup_steps
            )
        lr = self.schedule.lr(state.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # DDP averages gradients over ranks: weight each rank's mean by its share of the batch.
        weight = self.ctx.world_size * x.shape[0] / n_global

        def forward_backward(module: torch.nn.Module):
            loss, metrics = module(x, y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss * weight if weight != 1.0 else loss).backward()
            return loss, metrics

        loss, metrics = self.compiler.run(forward_backward)
        self.scaler.unscale_(self.optimizer)
        # grad_norm is measured where a record is written (a logging step, an epoch's last
        # step, the budget's last step) and on every step under a skip threshold; the NaN
        # guard checks the other steps more cheaply.
        measure = (
            threshold is not None
            or (state.step + 1) % cfg.train.log_every == 0
            or state.batch + 1 == self.budget.per_epoch
            or state.step + 1 == self.budget.steps
        )
        finite, grad_norm = check_gradients(self.params, cfg.optim.grad_clip, measure)
        # The batch's metrics as Python floats (one copy out of the tensors), then sums
        # (nats per example times examples) over ranks.
        names = ["loss", *metrics]
        batch_means = torch.stack([loss.detach(), *metrics.values()]).tolist()
        bad = not math.isfinite(batch_means[0]) or (not finite and not self.scaler.is_enabled())
        spike = threshold is not None and finite and grad_norm > threshold
        values = [value * x.shape[0] for value in batch_means]
        clock_flags = self.clock.flags(self.ctx.is_main, state.epoch_end_seconds)
        flags = [self.interrupt.requested, bad, spike, *clock_flags]
        sums, flags = reduce_step(values, flags, self.ctx, self.device)
        self.stop_requested, bad, spike, self.checkpoint_due, self.out_of_time = flags
        state.step += 1
        # No update from a non-finite loss or gradient (the NaN/inf guard), nor from a
        # gradient spike (VDVAE's skip, Child 2021).
        if bad or spike:
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            state.skipped_steps += 1
            self.records.skip(state, lr, None if bad else (grad_norm, threshold))
        else:
            self.scaler.step(self.optimizer)  # with fp16, skipped by the scaler on overflow
            self.scaler.update()
            if self.average is not None:
                self.average.update()
        if bad:  # the NaN guard: its metrics are dropped; too many in a row stop training
            state.bad_steps += 1
            self.records.advance()
            if state.bad_steps >= cfg.train.max_bad_steps:
                raise TrainingError(self.checkpoints.nan_guard_message(state, lr))
            return
        state.bad_steps = 0
        totals = dict(zip(names, sums, strict=True)) | {"examples": float(n_global)}
        if grad_norm is not None and math.isfinite(grad_norm):  # fp16 overflow steps: none
            totals |= {"grad_norm": grad_norm, "grad_norm_steps": 1.0}
        state.add(totals)
        self.records.show_progress(state.interval, lr)
        if state.step % cfg.train.log_every == 0:
            beta = self.objective.beta if isinstance(self.objective, NegativeELBO) else None
            self.records.step_record(state, lr, self.clock.interval_done(), beta)
        self._snapshot_if_due()

    def _compile_news(self) -> None:
        """Time the step just taken while train.compile = "auto" measures; once decided, the
        decision's line in the log, in metrics.jsonl and in the run's state."""
        steps_left = self.budget.steps - self.state.step
        self.compiler.end_step(steps_left, self.clock.seconds_left())
        line = self.compiler.news()
        if line is not None:
            self.state.compile = line
            self.records.say(line)
            compiled = {"compiled": self.compiler.compiled, "reason": line}
            self.records.write({"kind": "compile", "step": self.state.step} | compiled)

    def _snapshot_if_due(self) -> None:
        """Every ``train.snapshot_minutes`` of training, a copy of the model in
        ``RUN/snapshots/`` (``CheckpointKeeper.snapshot``)."""
        if self.writes:
            seconds = self.clock.snapshot_due(self.state.train_seconds)
            if seconds is not None:
                self.checkpoints.snapshot(self.state.step, seconds)

    def _end_epoch(self) -> str:
        """Validate, write the epoch record, step the schedule, checkpoint; say whether to stop
        ("budget": go on, "early-stop": patience ran out)."""
        state, tc = self.state, self.config.train
        state.epoch += 1
        state.batch = 0
        seconds, ended = self.clock.end_epoch()  # training time, without validation
        val = self.validation(self.model, self.checkpoints.averaged_weights)
        lr = self.optimizer.param_groups[0]["lr"]
        record = self.records.epoch_record(state, seconds, val, lr)
        val_elbo = val.get("elbo")
        self.schedule.epoch_end(val_elbo)
        improved = state.note_validation(val_elbo)
        reason = "budget"
        if tc.patience is not None and state.epochs_without_improvement >= tc.patience:
            reason = "early-stop"
            record["early_stop"] = (
                f"no better validation ELBO for {tc.patience} epochs "
                f"(best {state.best_val_elbo - self.records.data_scale:.3f} nats per example "
                f"at epoch {state.best_epoch})"
            )
        self.records.end_epoch(record)
        if self.tensorboard is not None and state.epoch % tc.tensorboard_images_every == 0:
            self.tensorboard.pictures(state.step)
        if improved:
            self._checkpoint("best")
            self.kept.remember(self.model, self.checkpoints.averaged_weights)
        state.epoch_end_seconds = self.clock.since(ended)  # `last` below saves it
        self._checkpoint("last")  # refuses non-finite weights: the checkpoint stays good
        if isinstance(self.schedule, CosineSchedule):
            epoch_seconds = seconds + self.clock.since(ended)
            warning = self.clock.schedule_warning(state.step, self.budget.steps, epoch_seconds)
            if warning:
                self.records.say(warning)
        return reason

    def _checkpoint(self, which: str) -> None:
        """Write ``checkpoints/{which}`` (every rank joins: the RNG states are gathered);
        never during a run of non-finite steps (the same on every rank: the bad flag is
        all-reduced), so a checkpoint holds weights from before a divergence."""
        if self.state.bad_steps > 0:
            return
        self.clock.checkpointed()
        if self.writes:
            self.state.metrics_bytes = self.records.bytes_written()
        self.checkpoints.save(which, self.state, self.clock.train_seconds())

    def _write_outputs(self) -> None:
        """The trained model, its pictures, the report and TensorBoard's last pictures."""
        tc, step, where = self.config.train, self.state.step, (self.device, self.ctx.world_size)
        seconds = self.clock.train_seconds()
        self.kept.save(self.model, self.run_dir, self.dataset, self.config, seconds, *where)
        if tc.report:
            final.write_report(self.run_dir, self.config, self.clock.seconds_left(), self.log)
        try:  # pictures, HPARAMS, projector; like the report, never worth the model
            if self.tensorboard is not None:
                self.tensorboard.final(to_dict(self.config), self.records.history, step)
        except Exception as exc:
            self.log(f"warning: TensorBoard pictures and projector not written: {exc}")

    def _result(self, reason: str) -> TrainResult:
        """Log the summary (stop reason, time, files written) and return the result."""
        self.model.data_info = self.dataset.info()
        run_dir = self.run_dir if self.ctx.is_main else None
        files = written_since(run_dir, self.clock.started_at) if self.writes else []
        seconds = self.clock.wall_seconds()
        extra = [self.kept.summary_line(self.state, self.writes)] if self.state.epoch else []
        extra += final.skipped_lines(self.state, self.config.train.grad_skip_threshold)
        shown, history = run_dir if self.writes else None, self.records.history
        for line in final.closing_lines(history, reason, seconds, shown, files, extra):
            self.log(line)
        return TrainResult(self.model, history, self.records.steps, run_dir, reason, seconds, files)

    def _interruption(self) -> TrainingInterrupted:
        return TrainingInterrupted(
            self.state.step, self.run_dir, self.checkpoints.last_step, self.interrupt.signum
        )

    def _nothing_to_train(self) -> TrainResult:
        """Resumed a finished run: report it, rewrite nothing, return the run's last model."""
        tc = self.config.train
        max_minutes = tc.max_minutes if self._time_spent() else None
        self.log(final.nothing_left_line(self.run_dir, self.state, self.budget.steps, max_minutes))
        self.kept.finish(self.model, self.average, self.state, self.run_dir)
        self.model.data_info = self.dataset.info()
        run_dir = self.run_dir if self.ctx.is_main else None
        distributed.teardown(self.ctx)
        records, seconds = self.records, self.clock.wall_seconds()
        return TrainResult(self.model, records.history, records.steps, run_dir, "finished", seconds)
