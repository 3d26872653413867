"""The training loop: ``train(config, out) -> TrainResult``. The CLI only parses and calls it.

One epoch is one pass over a fresh permutation of the training split (a memory-mapped split
is streamed from disk, shuffled shard-wise: ``MemmapSplit.stored_batches``), drawn from a data
generator seeded with ``train.seed`` (which also drives stochastic transforms such as dynamic
binarisation). A step is one optimiser update on one global batch. Every ``train.log_every``
steps a ``"kind": "step"`` record, and after every epoch a ``"kind": "epoch"`` record (with
the validation ELBO) goes to ``metrics.jsonl``; all likelihood numbers are nats per example.

Checkpoints (``checkpoints/last`` every ``train.checkpoint_every`` steps, every
``train.checkpoint_minutes`` and every epoch, ``checkpoints/best`` by validation ELBO) hold
the model, the optimiser, the schedule, the GradScaler, every RNG state and the data order,
so ``train(resume=RUN)`` continues exactly where the run stopped: on CPU with a fixed seed,
bitwise. Under ``torchrun`` each rank trains on its shard of every global batch (see
``vaekit.distributed``) and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaekit import checkpoint, distributed, rundir
from vaekit.allocator import keep_freed_memory
from vaekit.averaging import PolyakAverage
from vaekit.config import Config, model_config_from_dict, to_dict
from vaekit.console import LEGEND, Clock, format_record, summary, written_since
from vaekit.data import Dataset, load_dataset
from vaekit.data.datasets import FixedSplit
from vaekit.distributions.likelihoods import LIKELIHOOD_OPTIONS, is_discrete
from vaekit.interrupt import InterruptFlag, TrainingInterrupted, resume_command
from vaekit.models import Model, build_model
from vaekit.objectives import NegativeELBO, build_objective
from vaekit.precision import restore_precision, setup_precision
from vaekit.progress import progress_bar
from vaekit.provenance import training_metadata
from vaekit.schedules import build_schedule, kl_weight
from vaekit.spelling import spell, spell_value

# Test hook: SIGKILL this process right after the given step (the resume test uses it to
# die mid-epoch at a reproducible point, like a crash or a pre-empted job).
KILL_AFTER_STEP_ENV = "VAEKIT_TEST_KILL_AFTER_STEP"
# Test hook: send this process SIGINT (Ctrl-C) right after the given step.
INTERRUPT_AFTER_STEP_ENV = "VAEKIT_TEST_SIGINT_AFTER_STEP"


class TrainingError(ValueError):
    """Training cannot go on (e.g. the NaN guard gave up); the message says why and what to do."""


@dataclass
class TrainResult:
    """What ``train`` returns: the model (eval mode), the per-epoch history, the per-interval
    step records, the run directory and why training stopped."""

    model: Model
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    stop_reason: str = "budget"  # or "early-stop", or "finished" (resumed with nothing left)
    wall_seconds: float = 0.0
    files: list[str] = field(default_factory=list)  # written in run_dir, relative paths


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


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; an explicit device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{spell_value('--device', 'train.device', 'cuda')}: no CUDA device is available "
            f"(try {spell_value('--device', 'train.device', 'auto')})"
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"{spell_value('--device', 'train.device', 'mps')}: MPS is not available "
            f"(try {spell_value('--device', 'train.device', 'auto')})"
        )
    return torch.device(name)


def resolve_model_config(config: Config, dataset: Dataset) -> Dataset:
    """Fill the model config's data-dependent fields and refuse dishonest likelihoods.

    Returns the dataset as the likelihood must see it: a discretised likelihood gets the
    data's levels without dequantisation noise (``Dataset.as_levels``), and its bin width
    comes from their number (``model.data_levels``)."""
    model = config.model
    model.data_shape = list(dataset.shape)
    model.fill_from_data(dataset.train.y)  # e.g. a conditional model's number of classes
    if model.likelihood == "auto":
        model.likelihood = dataset.default_likelihood
    if model.likelihood == "bernoulli" and dataset.support != "binary":
        raise ValueError(
            f"{spell_value('--likelihood', 'model.likelihood', 'bernoulli')} needs binary "
            f"data, but {dataset.name!r} has support "
            f"{dataset.support!r}: use a binarised variant or a Gaussian likelihood"
        )
    if is_discrete(model.likelihood):  # binary data is already its two levels
        dataset = dataset.as_levels(f"--likelihood {model.likelihood}")
        if "data_levels" in LIKELIHOOD_OPTIONS.get(model.likelihood, {}).values():
            model.data_levels = dataset.num_levels
    return dataset


def _shown(path: str | Path | None) -> str:
    """A path as the message shows it: as typed on the command line, quoted in Python."""
    return spell(str(path), repr(str(path)))


def prepare_run_dir(out: str | Path, overwrite: bool, lock: rundir.RunLock | None = None) -> Path:
    """Create an empty run directory; refuse to mix a new run into an old one, and replace
    only a directory vaekit created (see ``vaekit.rundir``)."""
    return rundir.prepare(out, overwrite, lock)


def run_config(run: str | Path) -> Config:
    """The full config a run was started with (read from its last checkpoint), for resuming."""
    descriptor = checkpoint.read_descriptor(checkpoint.find_checkpoint(run))
    return Config.from_dict(descriptor["config"])


@torch.no_grad()
def validation_metrics(
    model: Model, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]]
) -> dict[str, float]:
    """Means of the model's per-example metrics in nats (the ELBO and its terms for a model
    with a likelihood, log p(x|f(x)) for an AE) over the examples of ``batches``: pairs of
    model-ready inputs ``[b, *shape]`` and their labels ``[b]`` (or None)."""
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    for xb, yb in batches:
        count += xb.shape[0]
        values = model.per_example_metrics(xb, y=yb)
        for key, v in values.items():
            sums[key] = sums.get(key, 0.0) + float(v.sum())
    return {key: total / max(1, count) for key, total in sums.items()}


class ObjectiveModule(nn.Module):
    """``forward(x, y) = objective(model, x, y)``: the one call DDP and torch.compile wrap (DDP
    only synchronises gradients of computations that go through its ``forward``)."""

    def __init__(self, model: Model, objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        return self.objective(self.model, x, y)


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
    :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) on Ctrl-C, after a checkpoint.
    The run directory is locked against other writers while training runs.
    """
    if resume is not None and out is not None and Path(out) != Path(resume):
        raise ValueError(
            f"{spell('--out ', 'out=')}{_shown(out)} and {spell('--resume ', 'resume=')}"
            f"{_shown(resume)}: a resumed run stays in its directory"
        )
    if config is None:
        if resume is None:
            raise ValueError("train: give a config, or resume=RUN to continue a run")
        config = run_config(resume)
    lock = rundir.RunLock()  # held from the run directory's creation (or resume) to the end
    try:
        return Trainer(config, out, overwrite, dataset, log, resume, lock).run()
    finally:
        lock.release()


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the device (CPU, CUDA): one pass
    over the parameters instead of a dozen elementwise ops per tensor. It was a third of a
    training step's time on the issue-7 reference model (benchmarks/RESULTS.md)."""
    params = list(model.parameters())
    device = params[0].device.type
    fused = device in ("cpu", "cuda") and all(p.dtype.is_floating_point for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


class Trainer:
    """One training run. ``run()`` is the loop; the rest are its steps, in reading order."""

    def __init__(self, config, out, overwrite, dataset, log, resume, lock=None) -> None:
        tc = config.train
        self.config, self.log = config, log
        setup_start = time.perf_counter()
        self.lock = lock if lock is not None else rundir.RunLock()
        self.clock = Clock()
        if tc.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        self.ctx, self.device = distributed.setup(resolve_device(tc.device))
        if self.device.type == "cpu":
            keep_freed_memory()  # no page faults per step (vaekit/allocator.py)
        if not self.ctx.is_main:  # one voice: rank 0 logs, the others stay quiet
            self.log = lambda message: None
        torch.manual_seed(tc.seed)  # the same initial weights on every rank
        if dataset is None:
            d = config.data
            dataset = load_dataset(
                d.name, d.data_dir, d.val_fraction, d.split_seed, image_size=d.image_size
            )
        self.dataset = dataset = resolve_model_config(config, dataset)
        self.model = build_model(config.model).to(self.device)
        self.scaler = setup_precision(self.model, tc.precision, self.device)
        self.objective = build_objective(config.objective, self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.model, config.optim.lr, config.optim.weight_decay)
        decay = config.optim.ema_decay
        self.average = PolyakAverage(self.params, decay) if decay is not None else None
        n, b, world = len(dataset.train), tc.batch_size, self.ctx.world_size
        # A last partial batch smaller than the number of ranks would leave a rank empty.
        self.batches_per_epoch = n // b + (1 if n % b >= world else 0)
        if self.batches_per_epoch == 0:
            raise ValueError(f"train.batch_size {b}: the training split has only {n} examples")
        self.budget = tc.max_steps or tc.epochs * self.batches_per_epoch
        self.schedule = build_schedule(config.optim.lr, config.schedule, self.budget)
        if self.ctx.rank > 0:  # independent reparameterisation noise on every rank
            torch.manual_seed(tc.seed + (self.ctx.rank << 32))
        self.generator = torch.Generator().manual_seed(tc.seed)  # data order + transforms
        self.epoch_start_state = self.generator.get_state()
        self.val = FixedSplit(dataset, "val", seed=config.data.split_seed)  # streamed if on disk
        self.val_y = dataset.split("val").y  # labels travel with their batches (or None)
        if tc.patience is not None and len(self.val) == 0:
            raise ValueError("train.patience needs a validation split (data.val_fraction > 0)")
        self.state, self.history, self.steps = LoopState(), [], []
        self.interval_seconds = 0.0  # training time of the current log interval, past epochs
        self.run_dir = Path(resume) if resume is not None else None
        self.sigint, self.stop_requested, self.checkpoint_due = InterruptFlag(), False, False
        self.last_checkpoint_time, self.checkpoint_step = time.monotonic(), None
        if resume is not None:
            if self.ctx.is_main:
                self.lock.acquire(resume)
            self._restore(checkpoint.find_checkpoint(resume))
        elif out is not None and self.ctx.is_main:
            self.run_dir = prepare_run_dir(out, overwrite, self.lock)
            checkpoint.write_run_config(self.run_dir, self.model, dataset.info(), to_dict(config))
        elif out is not None:
            self.run_dir = Path(out)
        # A finished run resumed with the same budget: say so, write nothing (run()).
        self.finished = resume is not None and self._nothing_left()
        self.writes = self.run_dir is not None and self.ctx.is_main and not self.finished
        self.started = setup_start - self.state.train_seconds  # the clock of train_seconds
        step_module = ObjectiveModule(self.model, self.objective)
        if self.ctx.enabled:
            step_module = nn.parallel.DistributedDataParallel(
                step_module, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.step_module = torch.compile(step_module) if tc.compile else step_module
        self.tensorboard = self._open_tensorboard()
        self.bar = self._open_progress_bar()

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> TrainResult:
        tc, state, reason = self.config.train, self.state, "budget"
        if self.finished:
            return self._nothing_to_train()
        train_split = self.dataset.train  # in memory, or streamed from disk (never loaded whole)
        transform = self.dataset.transform
        if transform.log_data_scale(tuple(self.dataset.shape)) != 0.0:
            self.log(  # name the space of the figures below (evaluate reports the data's own)
                f"ELBO terms while training are of the model's inputs ({transform.space}); "
                "`vaekit evaluate` also reports them for the data as given"
            )
        (self.bar.write if self.bar is not None else self.log)(LEGEND)  # above the bar
        self.sigint.start()  # Ctrl-C: finish the step, checkpoint, stop (vaekit/interrupt.py)
        try:
            while state.step < self.budget and reason == "budget":
                if state.batch == 0:  # a new epoch: its order comes first
                    self.epoch_start_state = self.generator.get_state()
                    order = self.generator
                else:  # resumed mid-epoch: the same order, the generator where it was
                    order = torch.Generator().set_state(self.epoch_start_state)
                batches = train_split.epoch_batches(tc.batch_size, order, start=state.batch)
                self.model.train()
                self.timer = self.epoch_timer = time.perf_counter()
                # The range ends first when a last partial batch is left out (see __init__).
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
                    if os.environ.get(KILL_AFTER_STEP_ENV) == str(state.step):
                        os.kill(os.getpid(), signal.SIGKILL)
                    if os.environ.get(INTERRUPT_AFTER_STEP_ENV) == str(state.step):
                        os.kill(os.getpid(), signal.SIGINT)
                    if state.step >= self.budget:
                        break
                reason = self._end_epoch()  # checkpoints `last`
                if self.stop_requested:
                    raise self._interruption()
            self.sigint.stop()
            if self.bar is not None:  # the end-of-training lines go below a finished bar
                self.bar.close()
            if self.average is not None:  # the trained model is the averaged one
                self.average.apply_permanently()
            self.model.eval()
            restore_precision(self.model)
            if self.writes:
                from vaekit.report.plots import save_run_pictures

                seconds = time.perf_counter() - self.started
                checkpoint.save_model(
                    self.model,
                    self.run_dir,
                    data=self.dataset.info(),
                    config=to_dict(self.config),
                    metadata=training_metadata(self.device, seconds, self.ctx.world_size),
                )
                save_run_pictures(self.model, self.dataset, self.run_dir, seed=tc.seed)
                if tc.report:
                    self._write_report()
                try:  # pictures, HPARAMS, projector; like the report, never worth the model
                    if self.tensorboard is not None:
                        self._tensorboard_final()
                except Exception as exc:
                    self.log(f"warning: TensorBoard pictures and projector not written: {exc}")
        except BaseException:
            distributed.teardown(self.ctx, wait=False)  # other ranks may be elsewhere: no barrier
            raise
        else:
            distributed.teardown(self.ctx)
        finally:
            self.sigint.stop()
            if self.bar is not None:
                self.bar.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
        self.model.data_info = self.dataset.info()
        run_dir = self.run_dir if self.ctx.is_main else None
        files = written_since(run_dir, self.clock.started_at) if self.writes else []
        seconds = self.clock.seconds()
        for line in summary(self.history, reason, seconds, run_dir if self.writes else None, files):
            self.log(line)
        return TrainResult(self.model, self.history, self.steps, run_dir, reason, seconds, files)

    def _write_report(self) -> None:
        """RUN/report.html, after saying so: it evaluates first (K = 500 importance samples
        on up to 1000 test examples), which takes a while on large models."""
        from vaekit.report.html import write_report

        path = self.run_dir / "report.html"
        skip = spell("--no-report", "config.train.report = False")
        self.log(f"writing the report {path} (a quick evaluation first; {skip} skips it)")
        try:  # the report must never cost the trained model: it is saved before
            write_report(self.run_dir, seed=self.config.train.seed, log=self.log)
        except Exception as exc:
            self.log(f"warning: {path} not written: {exc}")

    def _nothing_left(self) -> bool:
        """Whether the restored run has already spent its budget (or early-stopped)."""
        state, patience = self.state, self.config.train.patience
        stopped_early = (
            patience is not None
            and state.batch == 0
            and state.epochs_without_improvement >= patience
        )
        return state.step >= self.budget or stopped_early

    def _nothing_to_train(self) -> TrainResult:
        """Resumed a finished run: report it, rewrite nothing, return the run's last model."""
        state = self.state
        self.log(
            f"nothing left to train: {self.run_dir} finished at step {state.step} "
            f"(epoch {state.epoch}; budget {self.budget} steps); raise "
            f"{spell('--epochs or --max-steps', 'config.train.epochs or max_steps')} to train on"
        )
        if self.average is not None:
            self.average.apply_permanently()
        self.model.eval()
        restore_precision(self.model)
        self.model.data_info = self.dataset.info()
        run_dir = self.run_dir if self.ctx.is_main else None
        distributed.teardown(self.ctx)
        return TrainResult(
            self.model, self.history, self.steps, run_dir, "finished", self.clock.seconds()
        )

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
        self.scaler.scale(loss * weight).backward()
        self.scaler.unscale_(self.optimizer)
        if cfg.optim.grad_clip is not None:
            grad_norm = float(nn.utils.clip_grad_norm_(self.params, cfg.optim.grad_clip))
        else:  # the norm only: clip_grad_norm_ would also rescale every gradient by 1.0
            grads = [p.grad for p in self.params if p.grad is not None]
            grad_norm = float(nn.utils.get_total_norm(grads)) if grads else 0.0
        # Global sums of the batch's metrics (nats per example times examples) + a bad flag.
        names = ["loss", *metrics]
        values = torch.stack([loss.detach(), *metrics.values()]).double().cpu() * x.shape[0]
        loss_bad = not math.isfinite(float(loss.detach()))
        bad = loss_bad or (not math.isfinite(grad_norm) and not self.scaler.is_enabled())
        flag = torch.tensor([float(bad)], dtype=torch.float64)
        # Ctrl-C on any rank and rank 0's checkpoint clock ride on the same all-reduce, so
        # every rank stops or checkpoints at the same step.
        due = self.ctx.is_main and time.monotonic() - self.last_checkpoint_time >= (
            cfg.train.checkpoint_minutes * 60.0
        )
        control = torch.tensor([float(self.sigint.requested), float(due)], dtype=torch.float64)
        sums = distributed.all_reduce_sum(
            torch.cat([values, control, flag]).to(self.device), self.ctx
        )
        sums = sums.cpu().tolist()
        self.stop_requested, self.checkpoint_due = sums[-3] > 0, sums[-2] > 0
        sums = sums[:-3] + sums[-1:]
        state.step += 1
        if sums[-1] > 0:  # the NaN/inf guard: no update from a non-finite loss or gradient
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            state.bad_steps += 1
            state.skipped_steps += 1
            if self.bar is not None:
                self.bar.update(1)
            record = {"kind": "skip", "step": state.step, "epoch": state.epoch + 1}
            self._write(record | {"reason": "non-finite loss or gradient norm", "lr": lr})
            if state.bad_steps >= cfg.train.max_bad_steps:
                raise TrainingError(self._nan_guard_message(lr))
            return
        self.scaler.step(self.optimizer)  # with fp16, skipped by the scaler on overflow
        self.scaler.update()
        if self.average is not None:
            self.average.update()
        state.bad_steps = 0
        totals = dict(zip(names, sums[:-1], strict=True)) | {"examples": float(n_global)}
        if math.isfinite(grad_norm):  # fp16: an overflow step (skipped by the scaler) has none
            totals |= {"grad_norm": grad_norm, "steps": 1.0}
        for acc in (state.interval, state.epoch_sums):
            for key, value in totals.items():
                acc[key] = acc.get(key, 0.0) + value
        if self.bar is not None:
            self.bar.update(1)
            shown = "elbo" if "elbo" in state.interval else "loss"
            value = state.interval[shown] / state.interval["examples"]
            self.bar.set_postfix({shown: f"{value:.2f} nats", "lr": f"{lr:.2e}"}, refresh=False)
        if state.step % cfg.train.log_every == 0:
            self._write_step_record(lr)

    def _write_step_record(self, lr: float) -> None:
        acc, now = self.state.interval, time.perf_counter()
        seconds = self.interval_seconds + now - self.timer  # training time since the last record
        record = {"kind": "step", "step": self.state.step, "epoch": self.state.epoch + 1}
        record |= _means(acc)
        record |= {"lr": lr, "examples_per_s": acc.get("examples", 0.0) / max(seconds, 1e-9)}
        if isinstance(self.objective, NegativeELBO):
            record["beta"] = self.objective.beta
        self.timer, self.interval_seconds, self.state.interval = now, 0.0, {}
        self.steps.append(record)
        self._write(record)
        if self.bar is None:
            self.log(format_record(record, self.budget))

    def _end_epoch(self) -> str:
        """Validate, write the epoch record, step the schedule, checkpoint; say whether to stop
        ("budget": go on, "early-stop": patience ran out)."""
        state, tc = self.state, self.config.train
        state.epoch += 1
        state.batch = 0
        now = time.perf_counter()
        seconds = now - self.epoch_timer  # training time, without validation
        self.interval_seconds += now - self.timer  # the step records' clock stops here too
        record = {"kind": "epoch", "epoch": state.epoch, "step": state.step}
        record |= {f"train_{k}": v for k, v in _means(state.epoch_sums).items()}
        val = self._validate()
        record |= {f"val_{k}": v for k, v in val.items()}
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        record["skipped_steps"] = state.skipped_steps
        record["examples_per_s"] = state.epoch_sums.get("examples", 0.0) / max(seconds, 1e-9)
        state.epoch_sums = {}
        val_elbo = val.get("elbo")
        self.schedule.epoch_end(val_elbo)
        improved = val_elbo is not None and (
            state.best_val_elbo is None or val_elbo > state.best_val_elbo
        )
        if improved:
            state.best_val_elbo, state.best_epoch = val_elbo, state.epoch
            state.epochs_without_improvement = 0
        elif val_elbo is not None:
            state.epochs_without_improvement += 1
        reason = "budget"
        if tc.patience is not None and state.epochs_without_improvement >= tc.patience:
            reason = "early-stop"
            record["early_stop"] = (
                f"no better validation ELBO for {tc.patience} epochs "
                f"(best {state.best_val_elbo:.3f} nats per example at epoch {state.best_epoch})"
            )
        self.history.append(record)
        self._write(record)
        if self.tensorboard is not None and state.epoch % tc.tensorboard_images_every == 0:
            self._tensorboard_pictures()
        (self.bar.write if self.bar is not None else self.log)(format_record(record, self.budget))
        if improved:
            self._checkpoint("best")
        self._checkpoint("last")  # refuses non-finite weights: the checkpoint stays good
        return reason

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        """Validation metrics (nats per example) over this rank's shard, summed over ranks.
        A fixed seed for the reparameterisation noise makes them a function of the weights
        alone (comparable across epochs) and leaves the training RNG untouched."""
        if len(self.val) == 0:
            return {}
        lo, hi = self.ctx.shard(len(self.val))
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.config.train.seed + self.ctx.rank)
            batches = self.val.batches(self.config.train.eval_batch_size, lo, hi)
            size = self.config.train.eval_batch_size
            labels = (  # the rows' labels, in the same batches
                (self.val_y[b : min(b + size, hi)] for b in range(lo, hi, size))
                if self.val_y is not None
                else itertools.repeat(None)
            )
            pairs = (
                (x.to(self.device), None if y is None else y.to(self.device))
                for x, y in zip(batches, labels, strict=False)
            )
            with self._averaged_weights():
                means = validation_metrics(self.model, pairs)
        self.model.train()
        names = sorted(means)
        sums = torch.tensor([means[k] * (hi - lo) for k in names] + [float(hi - lo)])
        sums = distributed.all_reduce_sum(sums.double().to(self.device), self.ctx).cpu().tolist()
        return {k: s / sums[-1] for k, s in zip(names, sums[:-1], strict=True)}

    # --- files --------------------------------------------------------------------------------

    def _write(self, record: dict[str, Any]) -> None:
        if not self.writes:
            return
        rundir.append_text(self.run_dir / "metrics.jsonl", json.dumps(record) + "\n")
        if self.tensorboard is not None:
            prefix = record["kind"]
            for key, value in record.items():
                if isinstance(value, float) and key not in ("epoch", "step"):
                    self.tensorboard.add_scalar(f"{prefix}/{key}", value, record["step"])

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
            checkpoint.save_training_state(
                self.run_dir / "checkpoints" / which,
                self.model,
                self.optimizer,
                tensors,
                {
                    "loop": asdict(state) | {"train_seconds": time.perf_counter() - self.started},
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
        return TrainingInterrupted(self.state.step, self.run_dir, self.checkpoint_step)

    def _averaged_weights(self):
        """Context in which the model holds the Polyak average (if training keeps one)."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    def _restore(self, path: Path) -> None:
        """Load everything a checkpoint holds; truncate metrics.jsonl to its length then."""
        descriptor, model_state, saved, tensors = checkpoint.load_training_state(path)
        # Data first: other data changes the model's data shape and likelihood too.
        for section in ("data", "model"):
            ours, theirs = to_dict(getattr(self.config, section)), descriptor["config"][section]
            if section == "model":  # through its config class: an older run gains new defaults
                theirs = to_dict(model_config_from_dict(theirs))
            if section == "data":  # the files may have moved: data_dir may change
                ours, theirs = ours | {"data_dir": None}, theirs | {"data_dir": None}
            if ours != theirs:
                changed = sorted(k for k in ours if ours.get(k) != theirs.get(k))
                raise ValueError(
                    f"{rundir.arg('resume', self.run_dir)}: the {section} section differs from "
                    f"the run's ({', '.join(f'{section}.{k}' for k in changed)}: "
                    f"{', '.join(repr(theirs.get(k)) for k in changed)} in the run, now "
                    f"{', '.join(repr(ours.get(k)) for k in changed)}); only training "
                    "settings may change when resuming"
                )
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
                checkpoint.unflatten_optimizer_state(optim, saved["optimizer"])
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
        if self.state.batch > self.batches_per_epoch:
            raise checkpoint.CheckpointError(
                f"{path / checkpoint.TRAIN_STATE_FILE}: loop.batch {self.state.batch} is beyond "
                f"the {self.batches_per_epoch} batches of an epoch"
            )
        if self.state.step > self.budget:  # checked before anything in the run is changed
            tc = self.config.train
            asked = f"train.epochs = {tc.epochs}"
            if tc.max_steps:
                asked = f"train.max_steps = {tc.max_steps}"
            raise ValueError(
                f"{asked} is less than the run has done ({self.state.epoch} epochs, "
                f"{self.state.step} steps); give a larger budget to train on, or leave it as it is"
            )
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
        metrics = self.run_dir / "metrics.jsonl"
        text = metrics.read_bytes()[: self.state.metrics_bytes] if metrics.exists() else b""
        if self.ctx.is_main and metrics.exists() and len(text) != metrics.stat().st_size:
            with open(metrics, "r+b") as handle:  # drop records written after the checkpoint
                handle.truncate(self.state.metrics_bytes)
        for line in text.decode().splitlines():
            record = json.loads(line)
            {"epoch": self.history, "step": self.steps}.get(record["kind"], []).append(record)

    def _open_tensorboard(self):
        if not (self.writes and self.config.train.tensorboard):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional dependency: pip install 'vaekit[tensorboard]'
            return None
        # purge_step drops events a killed run wrote after the checkpoint we resume from.
        return SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.state.step)

    def _tensorboard_pictures(self) -> None:
        from vaekit.tensorboard_logging import log_pictures

        if not hasattr(self, "tensorboard_x"):  # the same inputs every time, with their labels
            self.tensorboard_x = self.dataset.fixed("test", seed=self.config.train.seed)[:16]
            labels = self.dataset.test.y
            self.tensorboard_y = labels[:16] if labels is not None else None
        x, y = self.tensorboard_x, self.tensorboard_y
        with self._averaged_weights():
            log_pictures(
                self.tensorboard, self.model, x, self.state.step, self.config.train.seed, y_test=y
            )
        self.tensorboard_pictures_step = self.state.step

    def _tensorboard_final(self) -> None:
        from vaekit.tensorboard_logging import log_final

        if getattr(self, "tensorboard_pictures_step", None) != self.state.step:
            self._tensorboard_pictures()
        log_final(
            self.tensorboard,
            self.model,
            self.dataset,
            to_dict(self.config),
            self.history,
            self.run_dir,
            self.state.step,
            self.config.train.seed,
        )

    def _open_progress_bar(self):
        if not self.ctx.is_main or self.finished:
            return None
        # tqdm.auto: a terminal bar, or the notebook's in Jupyter (vaekit/progress.py).
        return progress_bar(
            self.budget, self.config.train.progress, initial=self.state.step, unit="step"
        )


def _means(acc: dict[str, float]) -> dict[str, float]:
    """Per-example means of summed metrics; grad_norm is a mean over steps."""
    n, steps = acc.get("examples", 0.0), acc.get("steps", 0.0)
    out = {k: v / n for k, v in acc.items() if k not in ("examples", "steps", "grad_norm") and n}
    if steps:
        out["grad_norm"] = acc["grad_norm"] / steps
    return out
