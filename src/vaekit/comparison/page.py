"""The ``vaekit compare RUN_A RUN_B ...`` page: one self-contained HTML file (PNG figures
inlined as base64, no script, no network) with the paired-difference table, the runs'
training curves overlaid and their prior samples side by side."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import torch

from vaekit.comparison.paired import COMPARED
from vaekit.metrics import metric
from vaekit.report.curves import read_metrics
from vaekit.report.page import Page
from vaekit.report.plots import image_grid, is_image, legend, png_bytes, pyplot
from vaekit.rundir import atomic_write_bytes

NUM_SAMPLES = 36


def curves_figure(names: list[str], paths: list[Path]) -> tuple[bytes | None, list[str]]:
    """Validation ELBO and KL per epoch (solid) and training ELBO per epoch (dashed) of every
    run on shared axes; also the names of runs without ``metrics.jsonl``."""
    elbo, kl = metric("elbo"), metric("kl")
    panels = [
        ("elbo", f"{elbo.label}, model space ({elbo.unit})"),
        ("kl", f"{kl.label} ({kl.unit})"),
    ]
    records, missing = {}, []
    for name, path in zip(names, paths, strict=True):
        metrics = path / "metrics.jsonl"
        if metrics.exists():
            records[name] = read_metrics(metrics)[0]
        else:
            missing.append(name)
    if not any(records.values()):
        return None, missing
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, ylabel) in zip(axes, panels, strict=True):
        for i, (name, epochs) in enumerate(records.items()):
            colour = colours[i % len(colours)]
            for split, style in (("val", "-"), ("train", "--")):
                pairs = [(r["epoch"], r[f"{split}_{key}"]) for r in epochs if f"{split}_{key}" in r]
                if pairs:
                    xs, ys = zip(*pairs, strict=True)
                    alpha = 1.0 if split == "val" else 0.5
                    ax.plot(xs, ys, style, color=colour, alpha=alpha, label=f"{name} ({split})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(alpha=0.3)
        legend(ax, fontsize=7)
    axes[0].set_title("ELBO: validation (solid), training (dashed)", fontsize=10)
    axes[1].set_title("KL term: validation (solid), training (dashed)", fontsize=10)
    fig.tight_layout()
    return png_bytes(fig), missing


@torch.no_grad()
def samples_figure(names: list[str], models: list[Any], seed: int = 0) -> bytes | None:
    """Each run's E[x|z] for ``NUM_SAMPLES`` draws z ~ p(z) from the same seed (the same
    draws where the latent dimensions agree), side by side; a conditional model draws
    ``NUM_SAMPLES // C`` per class, one row per class. None for non-image data."""
    if not is_image(tuple(models[0].data_shape)):
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 4.0), squeeze=False)
    for ax, name, model in zip(axes[0], names, models, strict=True):
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        if model.takes_labels:
            per_class = max(1, NUM_SAMPLES // model.num_classes)
            y = torch.arange(model.num_classes, device=device).repeat_interleave(per_class)
            grid = image_grid(model.sample(y.numel(), generator=generator, y=y), ncols=per_class)
        else:
            grid = image_grid(model.sample(NUM_SAMPLES, generator=generator))
        ax.imshow(
            grid[..., 0] if grid.shape[2] == 1 else grid,
            cmap="gray",
            vmin=0,
            vmax=1,
            interpolation="nearest",
        )
        ax.set_title(f"{name} (m = {model.latent_dim})", fontsize=10)
        ax.axis("off")
    what = (
        "prior samples per class (one row per class y = 0, 1, ...): E[x|z,y], z ~ p(z|y)"
        if models[0].takes_labels
        else f"{NUM_SAMPLES} prior samples each: E[x|z], z ~ p(z)"
    )
    fig.suptitle(f"{what}, seed {seed}", fontsize=10)
    fig.tight_layout()
    return png_bytes(fig)


def _value(value: float, stderr: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if stderr is None or math.isnan(stderr):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ± {stderr:.{digits}f}"


def render_comparison_page(result: dict[str, Any], figures: list[tuple[str, bytes, str]]) -> str:
    """The page as one HTML string, from ``RunComparison.to_dict()`` and (id, PNG, caption)
    figures. Every number on it comes from ``result``."""
    esc = html.escape
    runs, diffs = result["runs"], result["differences"]
    metrics = [m for m in COMPARED if any(m in r["values"] for r in runs)]
    # Labels, units and digits from the table; active units are a count of coordinates.
    digits = {m: 0 if m == "active_units" else metric(m).digits for m in metrics}
    rows = []
    for m in metrics:
        label, unit = metric(m).label, metric(m).unit
        cells = [_value(r["values"].get(m), r["stderrs"].get(m), digits[m]) for r in runs]
        for r in runs[1:]:
            d = next((d for d in diffs if d["b"] == r["name"] and d["metric"] == m), None)
            if d is None:
                cells.append("n/a")
            elif d["z"] is None:  # a zero standard error: every resample agrees
                cells.append(
                    f"{d['difference']:+.{digits[m]}f} (the same in every {d['method']} resample)"
                )
            else:
                cells.append(
                    f"{d['difference']:+.{digits[m]}f} ± "
                    f"{d['stderr']:.{max(2, digits[m])}f} "
                    f"(z = {d['z']:+.1f}, {d['method']})"
                )
        rows.append([label, unit, *cells])
    negative = any(r["values"].get("nll", 0.0) < 0 for r in runs)
    density_note = (
        "<p>A negative -log p(x) is no error: the data are continuous (dequantised), p is a "
        "density and can exceed 1; bits per dimension of the discrete data are comparable "
        "across datasets.</p>"
        if negative
        else ""
    )
    sentences = "".join(f"<li>{esc(d['sentence'])}</li>" for d in diffs)
    definitions = "".join(
        f"<li><b>{esc(metric(k).label)}</b>: {esc(v)}</li>"
        for k, v in result["definitions"].items()
        if k in metrics
    )
    title = f"vaekit compare: {' vs '.join(r['name'] for r in runs)} ({result['data']})"
    conditioned = (
        f"; conditioned on {result['conditioned_on']}" if result.get("conditioned_on") else ""
    )
    page = Page(title)
    page.paragraph(
        f"All runs on the same {result['num_examples']} {result['split']} examples, "
        f"K = {result['num_samples']} importance samples per example, seed {result['seed']} "
        "(the same noise per batch: common random numbers where the latent dimensions agree). "
        f"Differences are each run minus the baseline {runs[0]['name']}, ± one standard "
        "error: paired over examples (std of the per-example differences / sqrt(N)), or for "
        "active units, a count over coordinates, the standard deviation of a paired bootstrap "
        "over examples. |z| = |difference| / standard error above 2 is unlikely to be chance. "
        "They describe this test set and these draws, not another training seed."
    )
    page.paragraph(
        f"-log p(x) and the ELBO are of {result.get('space') or ''}, as vaekit evaluate "
        "reports them (the preprocessing's change-of-variables term added to the model-space "
        f"figure){conditioned}.",
        id="space",
    )
    page.raw(f"<ul id='sentences'>{sentences}</ul>")
    page.heading("Table")
    page.paragraph("Per-run columns: mean over examples ± its own standard error.")
    header = ["quantity", "unit", *(r["name"] for r in runs)]
    header += [f"{r['name']} − {runs[0]['name']}" for r in runs[1:]]
    value_columns = tuple(range(2, len(header)))
    page.table(header, rows, id="comparison", value_columns=value_columns, wide=False)
    page.heading("Definitions")
    page.raw(f"<ul>{definitions}</ul>{density_note}")
    page.heading("Pictures")
    page.gallery([(png, caption, fid, fid, True) for fid, png, caption in figures])
    return page.render()


def write_comparison_page(result, models: list[Any], paths: list[Path], out_dir: Path, seed=0):
    """Draw the figures and write ``out_dir/report.html``; returns its path."""
    data = result.to_dict()
    names = [r["name"] for r in data["runs"]]
    figures = []
    curves, missing = curves_figure(names, paths)
    if curves is not None:
        note = f" No metrics.jsonl for {', '.join(missing)}." if missing else ""
        figures.append(
            (
                "curves",
                curves,
                "Training curves per epoch, all runs on shared axes, as training logs them: "
                "the ELBO of the data the model sees (model space, without the table's "
                "change-of-variables term)." + note,
            )
        )
    samples = samples_figure(names, models, seed)
    if samples is not None:
        figures.append(("samples", samples, "Prior samples of each run, the same seed."))
    path = Path(out_dir) / "report.html"
    atomic_write_bytes(path, render_comparison_page(data, figures).encode("utf-8"))
    return path
