"""What training prints: one line format for step and epoch records, and the closing summary.

Step and epoch lines share one layout and the same names as ``metrics.jsonl`` (``loss``,
``elbo``, ``log_px_z``, ``kl``, ``grad_norm``, ``lr``); the legend printed once at the start
states the units and the ELBO's sign, so the lines themselves stay short::

    step      4/22  epoch  1      train: loss 212.771 elbo -212.771 log_px_z -212.723 ...
    step     11/22  epoch  1 end  train: loss ... | val: elbo ... log_px_z ... kl ... | lr ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaekit.support.progress import format_seconds

LEGEND = (
    "legend: elbo = log_px_z - kl = E_q[log p(x|z)] - KL(q(z|x) || p(z)), a lower bound on "
    "log p(x), so higher is better; loss = what the objective minimises (-elbo for the "
    "plain ELBO); elbo, log_px_z, kl and loss in nats per example; "
    "grad_norm = the gradient's L2 norm before clipping"
)
INTERVALS = (
    "train figures are means: a step line's over the steps since the previous line, an epoch "
    "line's over the epoch (curves.png draws each at its interval's middle); val figures are "
    "measured at the epoch's end"
)
# The order in which a record's metrics are printed; anything else is left to metrics.jsonl.
METRICS = ("loss", "elbo", "log_px_z", "kl", "iwae", "slide_loss", "grad_norm")


def _metrics(record: dict[str, Any], prefix: str = "") -> str:
    parts = []
    for name in METRICS:
        value = record.get(prefix + name)
        if isinstance(value, float):
            parts.append(f"{name} {value:.3f}" if name != "grad_norm" else f"{name} {value:.3g}")
    return " ".join(parts)


def format_record(record: dict[str, Any], budget: int | None = None) -> str:
    """One console line for a ``"step"`` or ``"epoch"`` record of metrics.jsonl."""
    step = f"step {record['step']:>6}" + (f"/{budget}" if budget else "")
    if record["kind"] == "epoch":
        groups = [f"epoch {record['epoch']:>2} end", f"train: {_metrics(record, 'train_')}"]
        val = _metrics(record, "val_")
        groups.append(f"| val: {val}" if val else "| val: none (no validation split)")
    else:
        groups = [f"epoch {record['epoch']:>2}    ", f"train: {_metrics(record)}"]
    tail = f"| lr {record['lr']:.2e}"
    if "beta" in record and record["beta"] != 1.0:
        tail += f" beta {record['beta']:.3g}"
    if record.get("skipped_steps"):
        tail += f" skipped {record['skipped_steps']}"
    tail += f" | {record['examples_per_s']:.0f} examples/s"
    line = "  ".join([step, *groups, tail])
    if "early_stop" in record:
        line += f"\nearly stop: {record['early_stop']}"
    return line


def written_since(run_dir: Path, since: float) -> list[str]:
    """Paths under ``run_dir`` (relative, sorted) modified at or after ``since`` (seconds since
    the epoch); a folder whose files were all written is shown once, as ``folder/ (N files)``."""
    rows = []
    for path in sorted(run_dir.iterdir()):
        if path.is_file():
            if path.stat().st_mtime >= since:
                rows.append(path.name)
            continue
        files = [p for p in sorted(path.rglob("*")) if p.is_file()]
        new = [p for p in files if p.stat().st_mtime >= since]
        if not new:
            continue
        folders = sorted({p.parent for p in new})
        if len(new) == len(files) and path.name != "checkpoints":
            rows.append(f"{path.name}/ ({_files(len(new))})")
        else:  # checkpoints/last and checkpoints/best apart: which ones this run wrote
            for folder in folders:
                count = sum(1 for p in new if p.parent == folder)
                rows.append(f"{folder.relative_to(run_dir)}/ ({_files(count)})")
    return rows


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def summary(
    history: list[dict[str, Any]],
    stop_reason: str,
    wall_seconds: float,
    run_dir: Path | None,
    files: list[str],
) -> list[str]:
    """The closing lines of a training run: why it stopped, the final validation ELBO, the
    wall time and every file it wrote."""
    last = history[-1] if history else {}
    lines = [f"training done ({_REASONS.get(stop_reason, stop_reason)})"]
    if "val_elbo" in last:
        best = max(history, key=lambda r: r.get("val_elbo", float("-inf")))
        lines.append(
            f"  final validation ELBO {last['val_elbo']:.3f} nats per example "
            f"(epoch {last['epoch']}; best {best['val_elbo']:.3f} at epoch {best['epoch']})"
        )
    elif "val_log_px_z" in last:
        lines.append(
            f"  final validation log p(x|f(x)) {last['val_log_px_z']:.3f} nats per example "
            f"(epoch {last['epoch']}; an autoencoder has no ELBO)"
        )
    else:
        lines.append("  no validation split: no validation ELBO")
    lines.append(f"  wall time {format_seconds(wall_seconds)}")
    if run_dir is not None:
        lines.append(f"  files written in {run_dir}:")
        lines += [f"    {name}" for name in files]
    return lines


def still_improving(history: list[dict[str, Any]], flags: str = "--epochs") -> str | None:
    """A warning when a run ended far from converged: over its last quarter of epochs (at
    least one) the validation ELBO still rose by more than a tenth of its whole rise since
    the first epoch. A converged curve has flattened out by then; one still rising this fast
    means more steps would likely give a better model. None: no warning (or fewer than three
    validated epochs, too few for a trend). ``flags``: how the budget is raised."""
    values = [r["val_elbo"] for r in history if isinstance(r.get("val_elbo"), float)]
    if len(values) < 3:
        return None
    recent = max(1, len(values) // 4)
    total, gain = values[-1] - values[0], values[-1] - values[-1 - recent]
    if not (total > 0 and gain > 0.1 * total):
        return None
    epochs = "epoch" if recent == 1 else f"{recent} epochs"
    return (
        f"warning: training ended far from converged: the validation ELBO still rose by "
        f"{gain:.3f} nats per example over the last {epochs}, {gain / total:.0%} of its rise "
        f"since the first epoch; a longer run ({flags}) would likely give a better model"
    )


_REASONS = {
    "budget": "the step budget is spent",
    "time": "the wall-clock budget (train.max_minutes) is spent",
    "early-stop": "early stop",
}
