"""Training curves from a run's ``metrics.jsonl``.

Each line is one JSON object. Per-epoch records carry ``epoch`` and keys such as
``train_elbo``, ``val_elbo``, ``train_log_px_z``, ``train_kl``, ``val_*`` (nats per example);
a newer trainer may add ``"kind": "epoch"`` / ``"kind": "step"`` records and a learning rate
(``lr``). Unknown keys and kinds are ignored; a malformed line is an error naming the file.

Training figures are means over an interval, not the model at one moment: a step record's over
the steps since the previous step record, an epoch's ``train_*`` over the epoch. Each is drawn
at the middle of its interval (:func:`interval_midpoints`, epoch e's train mean at e - 1/2),
so a falling curve does not look like it lags behind, or regresses against, the validation
figures, which are measured at the epoch's end and drawn there.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vaekit.outputs import read_regular
from vaekit.report.plots import legend, pyplot, save_figure

# panel title, y-axis label, metric name (looked up with train_/val_ prefixes)
PANELS = [
    ("ELBO", "ELBO (nats per example)", "elbo"),
    ("reconstruction term", "E_q[log p(x|z)] (nats per example)", "log_px_z"),
    ("KL term", "KL(q(z|x) || p(z)) (nats per example)", "kl"),
]
LR_KEYS = ("lr", "learning_rate")


def read_metrics(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(epoch_records, step_records)`` from a metrics.jsonl file."""
    epochs, steps = [], []
    # Only a regular file is read (a FIFO in its place would block); bytes that are not
    # UTF-8 make their line fail as JSON, which names the line.
    text = read_regular(path).decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {number} is not JSON ({exc.msg})") from None
        except RecursionError:
            raise ValueError(f"{path}: line {number} is not JSON (nested too deeply)") from None
        if not isinstance(record, dict):
            continue
        for key in ("epoch", "step"):  # the x axis (a y value that is not a number is skipped)
            value = record.get(key)
            if value is not None and not (_plottable(value) and math.isfinite(value)):
                raise ValueError(f"{path}: line {number}: {key} must be a number, got {value!r}")
        kind = record.get("kind")
        if kind == "step" and "step" in record:
            steps.append(record)
        elif kind in (None, "epoch") and "epoch" in record:
            epochs.append(record)
    return epochs, steps


def _series(records: list[dict[str, Any]], x_key: str, key: str) -> tuple[list, list]:
    pairs = [(r[x_key], r[key]) for r in records if _plottable(r.get(key))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def interval_midpoints(steps: list[dict[str, Any]]) -> list[float]:
    """Where each step record's interval means are drawn, in steps: the middle of the
    interval (previous record's step, this record's step], (previous + step) / 2; the first
    interval starts at step 0. Records are in the order training wrote them."""
    points, previous = [], 0.0
    for record in steps:
        points.append((previous + record["step"]) / 2)
        previous = record["step"]
    return points


def step_curve(
    epochs: list[dict[str, Any]], steps: list[dict[str, Any]], key: str
) -> tuple[list[float], list[float]]:
    """The step records' ``key`` against epochs, each at its interval's middle."""
    per_epoch = _steps_per_epoch(epochs, steps)
    pairs = zip(interval_midpoints(steps), steps, strict=True)
    points = [(x / per_epoch, r[key]) for x, r in pairs if _plottable(r.get(key))]
    return [p[0] for p in points], [p[1] for p in points]


def epoch_curve(
    epochs: list[dict[str, Any]], split: str, name: str
) -> tuple[list[float], list[float]]:
    """The epoch records' ``{split}_{name}`` against epochs: a training mean over epoch e at
    e - 1/2 (its middle), a validation figure at e (the epoch's end, where it is measured)."""
    xs, ys = _series(epochs, "epoch", f"{split}_{name}")
    return ([x - 0.5 for x in xs] if split == "train" else xs), ys


def _plottable(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _lr_key(records: list[dict[str, Any]]) -> str | None:
    return next((k for k in LR_KEYS if any(k in r for r in records)), None)


def constant_learning_rate(metrics_path: str | Path) -> float | None:
    """The learning rate if every record of ``metrics_path`` holds the same one, else None
    (it changed, or was not recorded). A constant rate gets no panel: a flat line says less
    than the number in the caption."""
    epochs, steps = read_metrics(metrics_path)
    key = _lr_key(epochs + steps)
    if key is None:
        return None
    values = {r[key] for r in epochs + steps if isinstance(r.get(key), int | float)}
    return float(values.pop()) if len(values) == 1 else None


def save_training_curves(metrics_path: str | Path, path: str | Path) -> Path:
    """Plot ELBO, its two terms and the learning rate (where it changed) against the epoch."""
    epochs, steps = read_metrics(metrics_path)
    if not epochs and not steps:
        raise ValueError(f"{metrics_path}: no epoch or step records to plot")
    lr_key = _lr_key(epochs + steps)
    constant_lr = constant_learning_rate(metrics_path)
    if constant_lr is not None:
        lr_key = None
    panels = [
        p for p in PANELS if any(f"{s}_{p[2]}" in r for r in epochs for s in ("train", "val"))
    ]
    if not panels and steps:
        panels = [p for p in PANELS if any(k in r for r in steps for k in (p[2], f"train_{p[2]}"))]
    count = len(panels) + (lr_key is not None)
    plt = pyplot()
    fig, axes = plt.subplots(1, max(count, 1), figsize=(4.2 * max(count, 1), 3.6), squeeze=False)
    axes = list(axes[0])
    for ax, (title, ylabel, name) in zip(axes, panels, strict=False):
        step_key = next((k for k in (name, f"train_{name}") if any(k in r for r in steps)), None)
        if step_key is not None:
            ax.plot(
                *step_curve(epochs, steps, step_key),
                color="tab:blue",
                alpha=0.45,
                lw=0.8,
                label="train (interval means, at their middle)",
            )
        for split, style in (("train", "-o"), ("val", "-s")):
            xs, ys = epoch_curve(epochs, split, name)
            label = "train (epoch means, at mid-epoch)" if split == "train" else "val (epoch end)"
            if xs:
                ax.plot(xs, ys, style, ms=3, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(alpha=0.3)
        legend(ax, fontsize=8)
    if lr_key is not None:
        ax = axes[len(panels)]
        records, x_key = (steps, "step") if any(lr_key in r for r in steps) else (epochs, "epoch")
        xs, ys = _series(records, x_key, lr_key)
        if x_key == "step":
            per_epoch = _steps_per_epoch(epochs, steps)
            xs = [x / per_epoch for x in xs]
        ax.plot(xs, ys, "-", color="tab:green")
        ax.set_title("learning rate", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate (per step)", fontsize=9)
        ax.grid(alpha=0.3)
    title = f"training curves ({Path(metrics_path).name})"
    if constant_lr is not None:
        title += f"\nlearning rate constant at {constant_lr:.3g}"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def _steps_per_epoch(epochs: list[dict[str, Any]], steps: list[dict[str, Any]]) -> float:
    """Steps per epoch from the records (so step curves share the epoch axis); 1 if unknown."""
    last_epoch = max((r["epoch"] for r in epochs), default=0)
    last_step = max((r["step"] for r in steps), default=0)
    if last_epoch and last_step:
        return last_step / last_epoch
    return 1.0
