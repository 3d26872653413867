"""What a run saves while it trains, and how it is taken up again: ``checkpoints/{last,best}``
(the model, the optimiser, the schedule, the scaler, the average, every RNG state and the
data order: a resumed run continues bitwise), snapshots of the model, and the check that a
resumed run is the same run. The files' format is ``state_files``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from vaekit import checkpoint, rundir
from vaekit.config import Config, model_config_from_dict, to_dict
from vaekit.distributions.tabular import upgrade_stored_scalars
from vaekit.models import Model
from vaekit.support.spelling import arg
from vaekit.training import distributed, state_files
from vaekit.training.averaging import PolyakAverage
from vaekit.training.interrupt import resume_command
from vaekit.training.result import TrainingError
from vaekit.training.schedules import Schedule
from vaekit.training.state import DataOrder, LoopState


@dataclass
class CheckpointKeeper:
    """The checkpoints and snapshots of one run, and what they hold.

    Every rank calls ``save`` (the RNG states are gathered from all); rank 0 writes
    (``writes``: a run directory on rank 0, and a run with steps left to train).
    ``last_step`` is the step ``checkpoints/last`` holds (None before the first)."""

    run_dir: Path | None
    config: Config
    ctx: distributed.DistContext
    device: torch.device
    model: Model
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: Schedule
    average: PolyakAverage | None
    order: DataOrder
    data_info: dict[str, Any]  # the dataset's description, saved with the model
    log: Callable[[str], None]
    writes: bool = False
    last_step: int | None = None

    def averaged_weights(self) -> contextlib.AbstractContextManager:
        """Context in which the model holds the Polyak average (if training keeps one)."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    def save(self, which: str, state: LoopState, train_seconds: float) -> None:
        """Write ``checkpoints/{which}`` of ``state`` after ``train_seconds`` of training.

        Never with non-finite weights: a checkpoint always holds weights from before a
        divergence (the trainer also skips it during a run of non-finite steps)."""
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise TrainingError(
                f"non-finite weights at step {state.step}. {self.last_good(state.step)}"
            )
        tensors = self.order.state_tensors()
        for r, s in enumerate(
            distributed.gather_tensor(torch.get_rng_state(), self.ctx, self.device)
        ):
            tensors[f"rng.cpu.rank{r}"] = s
        if self.device.type == "cuda":
            cuda_state = torch.cuda.get_rng_state(self.device)
            for r, s in enumerate(distributed.gather_tensor(cuda_state, self.ctx, self.device)):
                tensors[f"rng.cuda.rank{r}"] = s
        if which == "last" and self.run_dir is not None:  # rank 0 writes it for every rank
            self.last_step = state.step
        if not self.writes:
            return
        extra = {}
        if self.average is not None:  # the model file holds the average; the raw weights:
            for name, p in self.model.named_parameters():
                if p.requires_grad:
                    tensors[f"weights.{name}"] = p.detach().clone()  # not a view: swapped next
            extra["ema_updates"] = self.average.updates
        with self.averaged_weights():
            state_files.save_training_state(
                self.run_dir / "checkpoints" / which,
                self.model,
                self.optimizer,
                tensors,
                {
                    "loop": asdict(state) | {"train_seconds": train_seconds},
                    "schedule": self.schedule.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "world_size": self.ctx.world_size,
                    **extra,
                },
                data=self.data_info,
                config=to_dict(self.config),
            )

    def snapshot(self, step: int, train_seconds: float) -> None:
        """A copy of the model (the Polyak average if kept) in
        ``RUN/snapshots/step-NNNNNNNN/``: a model directory that ``vaekit evaluate`` and
        ``vaekit.load`` read, with its step and training seconds in config.json's metadata.
        Learning curves against wall-clock time evaluate them after training, where the
        run's own clock is not disturbed."""
        folder = self.run_dir / "snapshots"
        final, tmp = folder / f"step-{step:08d}", folder / f".step-{step:08d}.tmp"
        rundir.remove_leftover(tmp)  # a leftover of a crash during a write
        with self.averaged_weights():
            checkpoint.save_model(
                self.model,
                tmp,
                data=self.data_info,
                config=to_dict(self.config),
                metadata={"step": step, "train_seconds": round(train_seconds, 3)},
            )
        rundir.remove_leftover(final)  # a resumed run passes this step again
        os.replace(tmp, final)  # whole or absent: never a snapshot without its config.json

    def last_good(self, before: int, lr: float | None = None) -> str:
        """Where the last good weights (from before step ``before``) are: a true sentence,
        with how to resume from them (at learning rate ``lr``, if given)."""
        if self.run_dir is None:
            return "There is no run directory, so nothing was saved."
        if self.last_step is None:
            return (
                f"No checkpoint was written before step {before}: start again with a lower "
                "learning rate."
            )
        return (
            f"{self.run_dir / 'checkpoints' / 'last'} holds the weights of step "
            f"{self.last_step}, from before step {before}; continue with: "
            f"{resume_command(self.run_dir, lr)}."
        )

    def nan_guard_message(self, state: LoopState, lr: float) -> str:
        """Why the NaN guard stopped training at ``state`` (learning rate ``lr``), and where
        the last good weights are."""
        first = state.step - state.bad_steps + 1
        return (
            f"{state.bad_steps} consecutive steps had a non-finite loss or gradient (steps "
            f"{first} to {state.step}); stopped without applying them. "
            f"{self.last_good(first, lr / 10)} Or set optim.grad_clip, or check the data for "
            "NaN/inf values."
        )

    def restore(self, path: Path) -> LoopState:
        """Load everything checkpoint ``path`` holds into the model, optimiser, schedule,
        scaler, average, RNGs and data order; return its loop state."""
        descriptor, model_state, saved, tensors = state_files.load_training_state(path)
        self.check_same_run(descriptor["config"])
        checkpoint.check_weights_fit(path, self.model)  # a one-line error, not a traceback
        self.model.load_state_dict(model_state)  # the average, if the run kept one
        raw = {k[len("weights.") :]: v for k, v in tensors.items() if k.startswith("weights.")}
        raw = upgrade_stored_scalars(raw)
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
        state = LoopState(**saved["loop"])
        self.last_step = state.step
        self.order.load(tensors)
        rank = self.ctx.rank
        if saved["world_size"] == self.ctx.world_size:
            torch.set_rng_state(tensors[f"rng.cpu.rank{rank}"])
            if self.device.type == "cuda" and f"rng.cuda.rank{rank}" in tensors:
                torch.cuda.set_rng_state(tensors[f"rng.cuda.rank{rank}"], self.device)
        else:  # another number of ranks: data order is kept, model noise is reseeded
            self.log(f"resuming {saved['world_size']} ranks' run on {self.ctx.world_size}")
            torch.manual_seed(self.config.train.seed + (rank << 32) + state.step)
        return state

    def check_same_run(self, theirs_config: dict) -> None:
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
