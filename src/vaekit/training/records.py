"""What a run tells while it trains: ``metrics.jsonl`` records (and their floats in
TensorBoard), console lines and the progress bar.

Records (all likelihood figures in nats per example; ``elbo``, ``log_px_z``, ``iwae`` and a
likelihood bound's ``loss`` of the data as given, as ``vaekit evaluate`` reports them):
``"kind": "step"`` every ``train.log_every`` steps (means over the interval), ``"kind":
"epoch"`` after every epoch (``train_*`` means over the epoch, ``val_*`` over the validation
split) and ``"kind": "skip"`` for a step whose update was skipped (a non-finite loss or
gradient, or a gradient norm above train.grad_skip_threshold); ``examples_per_s`` counts
training time only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaekit import rundir
from vaekit.config import Config
from vaekit.data import Dataset
from vaekit.data.table_schema import schema_lines
from vaekit.models import Model
from vaekit.outputs import read_regular
from vaekit.support.progress import progress_bar
from vaekit.support.spelling import spell
from vaekit.training.console import INTERVALS, LEGEND, format_record
from vaekit.training.state import LoopState


def means(acc: dict[str, float]) -> dict[str, float]:
    """Per-example means of summed metrics; grad_norm is a mean over the steps that measured
    it (the logging steps, or every step when clipping)."""
    n, steps = acc.get("examples", 0.0), acc.get("grad_norm_steps", 0.0)
    skip = ("examples", "grad_norm_steps", "grad_norm")
    out = {k: v / n for k, v in acc.items() if k not in skip and n}
    if steps:
        out["grad_norm"] = acc["grad_norm"] / steps
    return out


# Log-likelihood figures (nats per example) that change with the space of the data: the
# transform's change of variables c moves each by -c. KL and the objective's loss do not.
DENSITY_METRICS = ("elbo", "log_px_z", "iwae")


def data_scale(model: Model, dataset: Dataset) -> float:
    """c of the transform (nats per example): figures of the data as given are the
    model-space ones minus c. 0 for a model without a likelihood, as evaluate does."""
    if not model.has_likelihood:
        return 0.0
    return dataset.transform.log_data_scale(tuple(dataset.shape))


def opening_lines(config: Config, dataset: Dataset, data_scale: float) -> list[str]:
    """The lines before the first step: the schema of a mixed-type table and the space of
    the figures (``data_scale``: c of the transform, nats per example); the budget's line and
    the legend follow them."""
    lines = []
    if config.model.columns:  # a mixed-type table: the schema the run models
        lines.append("columns (saved in config.json as model.columns):")
        lines += schema_lines(config.model.columns)
    if data_scale != 0.0:  # name the space of the figures below: the one evaluate reports
        transform = dataset.transform
        lines.append(
            f"elbo, log_px_z and loss below are of {transform.data_space()}, as `vaekit "
            f"evaluate` reports them: of the model's inputs ({transform.space}) the ELBO "
            f"is {data_scale:.3f} nats per example higher and the loss as much lower"
        )
    return lines


@dataclass
class RecordBook:
    """The records of one run: ``history`` (epoch records) and ``steps`` (step records), as
    written to ``metrics`` (RUN/metrics.jsonl; None where this process writes nothing) and to
    ``tensorboard``; console lines go above the progress ``bar`` when there is one.

    Figures are turned from the model's space to the data as given by ``data_scale`` (c of
    the transform, nats per example); ``bound_loss``: the loss is a likelihood bound's (the
    negative ELBO or IWAE bound), which moves with them."""

    log: Callable[[str], None]
    budget: int  # optimiser steps, shown in the console lines
    data_scale: float
    bound_loss: bool
    metrics: Path | None = None
    tensorboard: Any = None  # a torch.utils.tensorboard SummaryWriter, or None
    bar: Any = None  # a tqdm progress bar, or None
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def in_data_space(self, values: dict[str, float]) -> dict[str, float]:
        """``values`` with the log-likelihood figures of the data as given, the space
        ``vaekit evaluate`` and the report use, and the loss of a likelihood bound (the
        negative ELBO or IWAE bound, free bits and KL weight included) with them, so that
        loss = -elbo still holds for the plain ELBO; the rest as they are."""
        c = self.data_scale
        shifted = {k: -c for k in DENSITY_METRICS}
        if self.bound_loss:
            shifted["loss"] = c
        return {k: v + shifted.get(k, 0.0) for k, v in values.items()}

    def say(self, line: str) -> None:
        """A console line, above the progress bar if there is one."""
        (self.bar.write if self.bar is not None else self.log)(line)

    def announce(self, lines: list[str]) -> None:
        """The opening ``lines`` and the legend, printed before the progress bar opens."""
        for line in [*lines, LEGEND, INTERVALS]:
            self.say(line)

    def open_bar(self, progress: str, initial: int) -> None:
        """The progress bar over the budget's steps, from step ``initial`` (rank 0 only; tqdm.auto:
        a terminal bar, or the notebook's in Jupyter: vaekit/support/progress.py)."""
        self.bar = progress_bar(self.budget, progress, initial=initial, unit="step")

    def close_bar(self) -> None:
        """Close the bar; lines go to the log again."""
        if self.bar is not None:
            self.bar.close()
        self.bar = None

    def close(self) -> None:
        self.close_bar()
        if self.tensorboard is not None:
            self.tensorboard.close()

    def bytes_written(self) -> int:
        """The length of metrics.jsonl now (a checkpoint stores it: ``restore``)."""
        return self.metrics.stat().st_size if self.metrics and self.metrics.exists() else 0

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` to metrics.jsonl and its floats to TensorBoard (rank 0 only)."""
        if self.metrics is None:
            return
        rundir.append_text(self.metrics, json.dumps(record) + "\n")
        if self.tensorboard is not None:
            prefix = record["kind"]
            for key, value in record.items():
                if isinstance(value, float) and key not in ("epoch", "step"):
                    self.tensorboard.add_scalar(f"{prefix}/{key}", value, record["step"])

    def skip(self, state: LoopState, lr: float, spike: tuple[float, float] | None) -> None:
        """The record of a step whose update was skipped: for a non-finite loss or gradient
        (``spike`` None), or for a gradient norm above the threshold (``spike``: the two)."""
        reason = "non-finite loss or gradient norm"
        if spike is not None:
            flag = spell("--grad-skip-threshold", "train.grad_skip_threshold")
            reason = f"gradient norm {spike[0]:.4g} above {flag} {spike[1]:g}"
        record = {"kind": "skip", "step": state.step, "epoch": state.epoch + 1}
        self.write(record | {"reason": reason, "lr": lr})

    def advance(self) -> None:
        """Advance the bar by one step (a step that adds nothing to the running means)."""
        if self.bar is not None:
            self.bar.update(1)

    def show_progress(self, interval: dict[str, float], lr: float) -> None:
        """Advance the bar by one step; show the ``interval``'s mean ELBO (or loss) and the lr."""
        if self.bar is None:
            return
        self.bar.update(1)
        shown = "elbo" if "elbo" in interval else "loss"
        value = interval[shown] / interval["examples"] - (
            self.data_scale if shown == "elbo" else 0.0
        )
        self.bar.set_postfix({shown: f"{value:.2f} nats", "lr": f"{lr:.2e}"}, refresh=False)

    def step_record(self, state: LoopState, lr: float, seconds: float, beta: float | None) -> None:
        """Write the step record of ``state.interval`` (``seconds`` of training; the KL weight
        ``beta`` of a warmed-up ELBO, or None) and empty the interval's sums."""
        acc = state.interval
        record = {"kind": "step", "step": state.step, "epoch": state.epoch + 1}
        record |= self.in_data_space(means(acc))
        record |= {"lr": lr, "examples_per_s": acc.get("examples", 0.0) / max(seconds, 1e-9)}
        if beta is not None:
            record["beta"] = beta
        state.interval = {}
        self.steps.append(record)
        self.write(record)
        if self.bar is None:
            self.log(format_record(record, self.budget))

    def epoch_record(
        self, state: LoopState, seconds: float, val: dict[str, float], lr: float
    ) -> dict[str, Any]:
        """The epoch record of ``state.epoch`` (``seconds`` of training, validation metrics
        ``val``); empties the epoch's sums. Not yet written: the caller may add to it."""
        record = {"kind": "epoch", "epoch": state.epoch, "step": state.step}
        record |= {f"train_{k}": v for k, v in self.in_data_space(means(state.epoch_sums)).items()}
        record |= {f"val_{k}": v for k, v in self.in_data_space(val).items()}
        record["lr"] = lr
        record["skipped_steps"] = state.skipped_steps
        # Data examples (images, rows), never examples x importance or Monte-Carlo samples: an
        # IWAE step at K = 5 over a batch of 128 counts 128.
        record["examples"] = int(state.epoch_sums.get("examples", 0.0))
        record["examples_per_s"] = record["examples"] / max(seconds, 1e-9)
        state.epoch_sums = {}
        return record

    def end_epoch(self, record: dict[str, Any]) -> None:
        """Keep, write and show the epoch ``record``."""
        self.history.append(record)
        self.write(record)
        self.say(format_record(record, self.budget))

    def restore(self, path: Path, length: int, truncate: bool) -> None:
        """Read the history and step records back from metrics.jsonl at ``path``, up to its
        ``length`` when the checkpoint was written; with ``truncate`` (rank 0), drop what a
        killed run wrote after that checkpoint from the file."""
        text = read_regular(path)[:length] if path.exists() else b""
        if truncate and path.exists() and len(text) != path.stat().st_size:
            with open(path, "r+b") as handle:
                handle.truncate(length)
        for line in text.decode().splitlines():
            record = json.loads(line)
            {"epoch": self.history, "step": self.steps}.get(record["kind"], []).append(record)
