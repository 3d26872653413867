"""The loop's state and its checkpoints: ``LoopState``, writing ``checkpoints/{last,best}``,
restoring a run from one, and the checks that a resumed run is the same run."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from vaekit import checkpoint
from vaekit.config import Config, model_config_from_dict, to_dict
from vaekit.outputs import read_regular
from vaekit.support.spelling import arg, spell
from vaekit.training import distributed, state_files
from vaekit.training.interrupt import TrainingInterrupted, resume_command
from vaekit.training.result import TrainingError, TrainResult
from vaekit.training.run_dir import prepare_run_dir


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
    skipped_steps: int = 0
    interval: dict[str, float] = field(default_factory=dict)
    epoch_sums: dict[str, float] = field(default_factory=dict)
    metrics_bytes: int = 0  # length of metrics.jsonl when the checkpoint was written
    train_seconds: float = 0.0  # wall-clock time of training so far, resumed sessions included
    # The last end of epoch (validation, records, checkpoints) in seconds: the wall-clock
    # budget keeps this much back so that the run's final validation fits inside it.
    epoch_end_seconds: float = 0.0

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


def run_config(run: str | Path) -> Config:
    """The full config a run was started with (read from its last checkpoint), for resuming."""
    descriptor = checkpoint.read_descriptor(state_files.find_checkpoint(run))
    return Config.from_dict(descriptor["config"])


class Checkpoints:
    """The Trainer's checkpoint methods (a mixin of ``training.loop.Trainer``): they read and
    write its model, optimiser, schedule, scaler, average, RNGs, ``state`` and records."""

    def _open_run(self, out: str | Path | None, overwrite: bool, resume: str | Path | None) -> None:
        """Set ``run_dir``: restore the run in ``resume`` (locked), or create ``out`` (locked,
        with its config.json) on rank 0; no run directory if neither is given."""
        self.run_dir = Path(resume) if resume is not None else None
        if resume is not None:
            if self.ctx.is_main:
                self.lock.acquire(resume)
            self._restore(state_files.find_checkpoint(resume))
        elif out is not None and self.ctx.is_main:
            self.run_dir = prepare_run_dir(out, overwrite, self.lock)
            config, info = to_dict(self.config), self.dataset.info()
            state_files.write_run_config(self.run_dir, self.model, info, config)
        elif out is not None:
            self.run_dir = Path(out)

    def _averaged_weights(self):
        """Context in which the model holds the Polyak average (if training keeps one)."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    def _clock_flags(self) -> list[bool]:
        """Rank 0's clocks after a step: ``[a time-based checkpoint is due, the wall-clock
        budget (train.max_minutes, validation included) is spent, the closing validation
        counted]``. The other ranks say False; the step's all-reduce tells them."""
        tc = self.config.train
        if not self.ctx.is_main:
            return [False, False]
        due = time.monotonic() - self.last_checkpoint_time >= tc.checkpoint_minutes * 60.0
        return [due, self._out_of_time(self._train_seconds())]

    def _out_of_time(self, seconds: float) -> bool:
        """Whether a run that has trained ``seconds`` must stop for train.max_minutes: when
        what is left would not hold another end of epoch as long as the last one. Stopping
        only once the budget is spent would end every timed run one validation pass late."""
        limit = self.config.train.max_minutes
        if limit is None:
            return False
        return limit * 60.0 - seconds <= self.state.epoch_end_seconds + self._closing_seconds()

    def _closing_seconds(self) -> float:
        """Seconds of train.max_minutes kept back for the end-of-training report (whose
        evaluation is cut to fit them): a tenth of the budget, at most a minute."""
        tc = self.config.train
        if not (tc.report and self.run_dir is not None and self.ctx.is_main):
            return 0.0
        return min(0.1 * tc.max_minutes * 60.0, 60.0)

    def _train_seconds(self) -> float:
        """Seconds of training in this run so far, across resumes (validation included)."""
        return time.perf_counter() - self.started

    def _snapshot_if_due(self) -> None:
        """Every ``train.snapshot_minutes`` of training, a copy of the model (the Polyak
        average if kept) in ``RUN/snapshots/step-NNNNNNNN/``: a model directory that
        ``vaekit evaluate`` and ``vaekit.load`` read, with its step and training seconds in
        config.json's metadata. Learning curves against wall-clock time evaluate them after
        training, where the run's own clock is not disturbed."""
        minutes = self.config.train.snapshot_minutes
        if minutes is None or not self.writes:
            return
        interval, elapsed = minutes * 60.0, self._train_seconds()
        if self.next_snapshot is None:  # the first mark after where this (resumed) run is
            self.next_snapshot = (math.floor(self.state.train_seconds / interval) + 1) * interval
        if elapsed < self.next_snapshot:
            return
        self.next_snapshot = (math.floor(elapsed / interval) + 1) * interval
        step, folder = self.state.step, self.run_dir / "snapshots"
        final, tmp = folder / f"step-{step:08d}", folder / f".step-{step:08d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a crash during a write
        with self._averaged_weights():
            checkpoint.save_model(
                self.model,
                tmp,
                data=self.dataset.info(),
                config=to_dict(self.config),
                metadata={"step": step, "train_seconds": round(elapsed, 3)},
            )
        shutil.rmtree(final, ignore_errors=True)  # a resumed run passes this step again
        os.replace(tmp, final)  # whole or absent: never a snapshot without its config.json

    def _checkpoint(self, which: str) -> None:
        """Write ``checkpoints/{which}`` (every rank joins: the RNG states are gathered).

        Never during a run of non-finite steps, and never with non-finite weights: a
        checkpoint always holds weights from before a divergence (the NaN guard names it).
        """
        state = self.state
        if state.bad_steps > 0:  # the same on every rank: the bad flag is all-reduced
            return
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise TrainingError(
                f"non-finite weights at step {state.step}. {self._last_good(state.step)}"
            )
        self.last_checkpoint_time = time.monotonic()
        tensors = {"data.generator": self.generator.get_state()}
        tensors["data.epoch_start"] = self.epoch_start_state
        for r, s in enumerate(
            distributed.gather_tensor(torch.get_rng_state(), self.ctx, self.device)
        ):
            tensors[f"rng.cpu.rank{r}"] = s
        if self.device.type == "cuda":
            cuda_state = torch.cuda.get_rng_state(self.device)
            for r, s in enumerate(distributed.gather_tensor(cuda_state, self.ctx, self.device)):
                tensors[f"rng.cuda.rank{r}"] = s
        if which == "last" and self.run_dir is not None:  # rank 0 writes it for every rank
            self.checkpoint_step = state.step
        if not self.writes:
            return
        metrics = self.run_dir / "metrics.jsonl"
        state.metrics_bytes = metrics.stat().st_size if metrics.exists() else 0
        extra = {}
        if self.average is not None:  # the model file holds the average; the raw weights:
            for name, p in self.model.named_parameters():
                if p.requires_grad:
                    tensors[f"weights.{name}"] = p.detach().clone()  # not a view: swapped next
            extra["ema_updates"] = self.average.updates
        with self._averaged_weights():
            state_files.save_training_state(
                self.run_dir / "checkpoints" / which,
                self.model,
                self.optimizer,
                tensors,
                {
                    "loop": asdict(state) | {"train_seconds": self._train_seconds()},
                    "schedule": self.schedule.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "world_size": self.ctx.world_size,
                    **extra,
                },
                data=self.dataset.info(),
                config=to_dict(self.config),
            )

    def _last_good(self, before: int, lr: float | None = None) -> str:
        """Where the last good weights (from before step ``before``) are: a true sentence,
        with how to resume from them."""
        if self.run_dir is None:
            return "There is no run directory, so nothing was saved."
        if self.checkpoint_step is None:
            return (
                f"No checkpoint was written before step {before}: start again with a lower "
                "learning rate."
            )
        return (
            f"{self.run_dir / 'checkpoints' / 'last'} holds the weights of step "
            f"{self.checkpoint_step}, from before step {before}; continue with: "
            f"{resume_command(self.run_dir, lr)}."
        )

    def _nan_guard_message(self, lr: float) -> str:
        state = self.state
        first = state.step - state.bad_steps + 1
        return (
            f"{state.bad_steps} consecutive steps had a non-finite loss or gradient (steps "
            f"{first} to {state.step}); stopped without applying them. "
            f"{self._last_good(first, lr / 10)} Or set optim.grad_clip, or check the data for "
            "NaN/inf values."
        )

    def _interruption(self) -> TrainingInterrupted:
        return TrainingInterrupted(
            self.state.step, self.run_dir, self.checkpoint_step, self.interrupt.signum
        )

    def _restore(self, path: Path) -> None:
        """Load everything a checkpoint holds; truncate metrics.jsonl to its length then."""
        descriptor, model_state, saved, tensors = state_files.load_training_state(path)
        self._check_same_run(descriptor["config"])
        checkpoint.check_weights_fit(path, self.model)  # a one-line error, not a traceback
        self.model.load_state_dict(model_state)  # the average, if the run kept one
        raw = {k[len("weights.") :]: v for k, v in tensors.items() if k.startswith("weights.")}
        if self.average is not None:  # continue the average (or start it from these weights)
            self.average.reset_to_weights()
            self.average.updates = int(saved.get("ema_updates", 0))
        if raw:  # training goes on from the raw weights
            unexpected = self.model.load_state_dict(raw, strict=False).unexpected_keys
            if unexpected:
                raise checkpoint.CheckpointError(f"{path}: unknown weights {unexpected[:3]}")
        optim = {
            k.removeprefix("optimizer."): v
            for k, v in tensors.items()
            if k.startswith("optimizer.")
        }
        try:
            self.optimizer.load_state_dict(
                state_files.unflatten_optimizer_state(optim, saved["optimizer"])
            )
        except (KeyError, ValueError) as exc:
            raise checkpoint.CheckpointError(
                f"{path}: optimizer state does not fit: {exc}"
            ) from None
        self.schedule.load_state_dict(saved["schedule"])
        if saved["scaler"]:
            self.scaler.load_state_dict(saved["scaler"])
        self.state = LoopState(**saved["loop"])
        self.checkpoint_step = self.state.step
        self._check_budget(path)
        self.generator.set_state(tensors["data.generator"])
        self.epoch_start_state = tensors["data.epoch_start"]
        rank = self.ctx.rank
        if saved["world_size"] == self.ctx.world_size:
            torch.set_rng_state(tensors[f"rng.cpu.rank{rank}"])
            if self.device.type == "cuda" and f"rng.cuda.rank{rank}" in tensors:
                torch.cuda.set_rng_state(tensors[f"rng.cuda.rank{rank}"], self.device)
        else:  # another number of ranks: data order is kept, model noise is reseeded
            self.log(f"resuming {saved['world_size']} ranks' run on {self.ctx.world_size}")
            torch.manual_seed(self.config.train.seed + (rank << 32) + self.state.step)
        self._restore_records()

    def _check_same_run(self, theirs_config: dict) -> None:
        """Refuse to resume with another model or other data (the run's config is
        ``theirs_config``); only training settings may change."""
        # Data first: other data changes the model's data shape and likelihood too.
        for section in ("data", "model"):
            ours, theirs = to_dict(getattr(self.config, section)), theirs_config[section]
            if section == "model":  # through its config class: an older run gains new defaults
                theirs = to_dict(model_config_from_dict(theirs))
            if section == "data":  # the files may have moved: data_dir may change
                ours, theirs = ours | {"data_dir": None}, theirs | {"data_dir": None}
            if ours != theirs:
                changed = sorted(k for k in ours if ours.get(k) != theirs.get(k))
                raise ValueError(
                    f"{arg('resume', self.run_dir)}: the {section} section differs from "
                    f"the run's ({', '.join(f'{section}.{k}' for k in changed)}: "
                    f"{', '.join(repr(theirs.get(k)) for k in changed)} in the run, now "
                    f"{', '.join(repr(ours.get(k)) for k in changed)}); only training "
                    "settings may change when resuming"
                )

    def _check_budget(self, path: Path) -> None:
        """Refuse a restored loop state beyond an epoch or beyond the (new) budget, before
        anything in the run is changed."""
        if self.state.batch > self.batches_per_epoch:
            raise checkpoint.CheckpointError(
                f"{path / state_files.TRAIN_STATE_FILE}: loop.batch {self.state.batch} is beyond "
                f"the {self.batches_per_epoch} batches of an epoch"
            )
        if self.state.step > self.budget:
            tc = self.config.train
            asked = f"train.epochs = {tc.epochs}"
            if tc.epochs is None:
                asked = f"the default budget ({self.budget} steps)"
            if tc.max_steps:
                asked = f"train.max_steps = {tc.max_steps}"
            raise ValueError(
                f"{asked} is less than the run has done ({self.state.epoch} epochs, "
                f"{self.state.step} steps); give a larger budget to train on, or leave it as it is"
            )

    def _restore_records(self) -> None:
        """Truncate metrics.jsonl to its length at the checkpoint (dropping what a killed run
        wrote after it) and read the history and step records back from it."""
        metrics = self.run_dir / "metrics.jsonl"
        text = read_regular(metrics)[: self.state.metrics_bytes] if metrics.exists() else b""
        if self.ctx.is_main and metrics.exists() and len(text) != metrics.stat().st_size:
            with open(metrics, "r+b") as handle:  # drop records written after the checkpoint
                handle.truncate(self.state.metrics_bytes)
        for line in text.decode().splitlines():
            record = json.loads(line)
            {"epoch": self.history, "step": self.steps}.get(record["kind"], []).append(record)

    def _nothing_left(self) -> bool:
        """Whether the restored run has already spent its budget (or early-stopped)."""
        state, patience = self.state, self.config.train.patience
        stopped_early = (
            patience is not None
            and state.batch == 0
            and state.epochs_without_improvement >= patience
        )
        return state.step >= self.budget or stopped_early or self._time_spent()

    def _time_spent(self) -> bool:
        """Whether the restored run has spent its wall-clock budget (train.max_minutes)."""
        return self._out_of_time(self.state.train_seconds)

    def _nothing_to_train(self) -> TrainResult:
        """Resumed a finished run: report it, rewrite nothing, return the run's last model."""
        state = self.state
        if self._time_spent():
            budget = f"{self.config.train.max_minutes:g} minutes"
            flags = spell("--max-minutes", "config.train.max_minutes")
        else:
            budget = f"{self.budget} steps"
            flags = spell("--epochs or --max-steps", "config.train.epochs or max_steps")
        self.log(
            f"nothing left to train: {self.run_dir} finished at step {state.step} "
            f"(epoch {state.epoch}; budget {budget}); raise {flags} to train on"
        )
        self._final_model()
        self.model.data_info = self.dataset.info()
        run_dir = self.run_dir if self.ctx.is_main else None
        distributed.teardown(self.ctx)
        return TrainResult(
            self.model, self.history, self.steps, run_dir, "finished", self.clock.seconds()
        )
