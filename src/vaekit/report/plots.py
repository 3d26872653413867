"""PNG pictures of a model: prior samples and reconstructions.

matplotlib is imported here only (with the non-interactive Agg backend).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from vaekit.data import Dataset
from vaekit.rundir import atomic_write_bytes
from vaekit.support.spelling import spell


def legend(ax, **options) -> None:
    """``ax.legend(**options)`` at the best free place, asked for by name: matplotlib times
    its search for that place when drawing and warns when it took over a second, but only
    for a legend whose place was left to the default, so on a loaded machine the same
    picture would warn or not by chance."""
    ax.legend(loc="best", **options)


def is_image(shape: tuple[int, ...]) -> bool:
    """True for ``[C, H, W]`` with 1 or 3 channels, or ``[H, W]``."""
    return (len(shape) == 3 and shape[0] in (1, 3)) or len(shape) == 2


def image_grid(
    images: torch.Tensor, ncols: int | None = None, pad: int = 1, group: int = 0
) -> np.ndarray:
    """Tile ``[N, C, H, W]`` (or ``[N, H, W]``) values in [0, 1] into one ``[rows*H, cols*W, C]``
    array; values outside [0, 1] (a Gaussian decoder's mean) are clipped for display.

    ``group`` > 0 widens the gap after every ``group`` columns (to ``3 * pad``), so that e.g.
    an input and its reconstruction read as a pair."""
    images = images.detach().float().cpu()
    if images.dim() == 3:
        images = images.unsqueeze(1)
    n, c, h, w = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    extra = 2 * pad if group > 0 else 0  # the wider gap's additional pixels
    groups = (ncols - 1) // group if group > 0 else 0
    width = ncols * (w + pad) + pad + groups * extra
    grid = np.ones((nrows * (h + pad) + pad, width, c), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        top = pad + r * (h + pad)
        left = pad + col * (w + pad) + (col // group if group > 0 else 0) * extra
        grid[top : top + h, left : left + w] = images[i].permute(1, 2, 0).clamp(0, 1).numpy()
    return grid


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (imported on first use: the
    commands that draw nothing never pay for it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig, dpi: int = 100) -> bytes:
    """Figure ``fig`` rendered as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        pyplot().close(fig)
    return buffer.getvalue()


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write figure ``fig`` to ``path`` as a PNG, atomically (a failed write leaves the old
    file whole and names ``path``); the figure is closed."""
    atomic_write_bytes(path, png_bytes(fig, dpi))
    return Path(path)


# Display sizes of image grids, in screen pixels: each image is blown up by a whole number of
# pixels per data pixel (nearest neighbour, so an 8x8 digit stays eight crisp squares wide)
# until it is about LEGIBLE_CELL wide, while the whole grid stays within MAX_GRID_WIDTH (it
# then fits the report's column at 100% zoom, where no browser rescales it).
LEGIBLE_CELL = 48
MAX_GRID_WIDTH = 960
MIN_FIGURE_WIDTH = 480  # the titles' width


def pixel_scale(grid_width: int, cell: int) -> int:
    """Whole screen pixels per data pixel for a grid ``grid_width`` data pixels wide whose
    images are ``cell`` pixels wide: enough for ~``LEGIBLE_CELL`` px per image, at most
    ``MAX_GRID_WIDTH`` px in all, at least 1."""
    legible = -(-LEGIBLE_CELL // max(cell, 1))  # ceil
    return max(1, min(legible, MAX_GRID_WIDTH // max(grid_width, 1)))


def save_grid(
    grid: np.ndarray,
    path: str | Path,
    title: str,
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    cell: int | None = None,
) -> Path:
    """Save an ``image_grid`` array as a PNG with a title and optional per-row / per-column
    tick labels (for grids whose rows or columns mean something, e.g. latent traversals).

    The grid is enlarged by :func:`pixel_scale` whole pixels per data pixel (``cell`` is one
    image's width in data pixels; default: the whole grid's) and drawn 1:1
    into the PNG, so no resampling blurs or unevenly stretches the pixels.
    """
    plt = pyplot()
    height, width = grid.shape[:2]
    k = pixel_scale(width, cell or width)
    big = np.repeat(np.repeat(grid, k, axis=0), k, axis=1)  # nearest-neighbour enlargement
    dpi = 100
    labelled = bool(row_labels or col_labels or xlabel or ylabel)
    left = (95 if row_labels else 0) + (25 if ylabel else 0) + 8
    bottom = (22 if col_labels else 0) + (22 if xlabel else 0) + 8
    top, right = 30, 8
    spare = max(0, MIN_FIGURE_WIDTH - (width * k + left + right))  # room for the title
    left, right = left + spare // 2, right + spare - spare // 2
    fig_w, fig_h = width * k + left + right, height * k + bottom + top
    fig = plt.figure(figsize=(fig_w / dpi, fig_h / dpi), dpi=dpi)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, width * k / fig_w, height * k / fig_h))
    ax.imshow(
        big[..., 0] if grid.shape[2] == 1 else big,
        cmap="gray" if grid.shape[2] == 1 else None,
        vmin=0,
        vmax=1,
        interpolation="none",
        extent=(-0.5, width - 0.5, height - 0.5, -0.5),  # ticks stay in data pixels
    )
    ax.set_title(title, fontsize=10)
    if labelled:
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_xticks(_centres(width, len(col_labels)) if col_labels else [])
        ax.set_yticks(_centres(height, len(row_labels)) if row_labels else [])
        if col_labels:
            ax.set_xticklabels(col_labels, fontsize=8)
        if row_labels:
            ax.set_yticklabels(row_labels, fontsize=8)
        ax.tick_params(length=0)
        if xlabel:
            ax.set_xlabel(xlabel, fontsize=9)
        if ylabel:
            ax.set_ylabel(ylabel, fontsize=9)
    else:
        ax.axis("off")
    return save_figure(fig, path, dpi)


def _centres(extent: int, count: int) -> list[float]:
    """Pixel centres of ``count`` equal cells across ``extent`` pixels (grid padding ignored)."""
    cell = extent / count
    return [cell * (i + 0.5) - 0.5 for i in range(count)]


def check_decoding_fits(model, rows: int, what: str) -> None:
    """Refuse to decode ``rows`` codes at once where the estimate (the decoder's floats per
    row, as the evaluator's memory budget counts them) exceeds the device's free memory;
    ``what`` names the request and its flags (``"-n 100000000: decoding ..."``)."""
    from vaekit.evaluation.chunking import decoder_floats_per_row
    from vaekit.support.memory import check_fits

    p = next(model.parameters())
    check_fits(rows * decoder_floats_per_row(model) * p.element_size(), what, p.device)


def class_names(data_info: dict | None, count: int) -> list[str]:
    """Names of classes 0..``count``-1 from a model's or dataset's info: its ``classes`` (an
    image folder's sub-folders, a built-in set's class names) where it names class i, else
    the number i as text."""
    names = list((data_info or {}).get("classes") or [])
    return [str(names[i]) if i < len(names) else str(i) for i in range(count)]


def save_samples(
    model, path: str | Path, n: int = 64, seed: int = 0, label: int | None = None
) -> Path:
    """Decode ``n`` draws z ~ p(z) and save E[x|z] as an image grid. A conditional model
    draws ``n`` images of class ``label``, or, without one, a grid with one row per class."""
    device = next(model.parameters()).device
    one_row_per_class = model.takes_labels and label is None
    rows = max(1, n // model.num_classes) * model.num_classes if one_row_per_class else n
    check_decoding_fits(model, rows, f"{spell('-n', 'n =')} {n}: decoding {rows} prior samples")
    generator = torch.Generator(device=device).manual_seed(seed)
    if not model.takes_labels:
        images = model.sample(n, generator=generator)
        return save_grid(
            image_grid(images),
            path,
            f"{n} prior samples: E[x|z], z ~ p(z)",
            cell=images.shape[-1],
        )
    names = class_names(getattr(model, "data_info", None), model.num_classes)
    if label is not None:
        images = model.sample(n, generator=generator, y=label)
        return save_grid(
            image_grid(images),
            path,
            f"{n} samples of class {names[label]}: E[x|z,y], z ~ p(z|y)",
            cell=images.shape[-1],
        )
    per_class = max(1, n // model.num_classes)
    y = torch.arange(model.num_classes, device=device).repeat_interleave(per_class)
    images = model.sample(y.numel(), generator=generator, y=y)
    return save_grid(
        image_grid(images, ncols=per_class),
        path,
        "samples per class (one row per class): E[x|z,y], z ~ p(z|y)",
        row_labels=names,
        cell=images.shape[-1],
    )


def save_reconstructions(
    model, x: torch.Tensor, path: str | Path, y: torch.Tensor | None = None
) -> Path:
    """Save inputs (odd columns) beside their reconstructions E[x|z=mu(x)] (even columns);
    ``y`` are the inputs' labels (needed by a conditional model)."""
    x = x.to(next(model.parameters()).device)
    y = y.to(x.device) if y is not None and model.takes_labels else None
    recon = model.reconstruct(x, y=y)
    pairs = torch.stack([x, recon], dim=1).flatten(0, 1)  # [2N, *shape]: input, recon, ...
    grid = image_grid(pairs, ncols=2 * min(8, x.shape[0]), group=2)
    return save_grid(
        grid, path, "inputs (left) and reconstructions (right) of each pair", cell=x.shape[-1]
    )


def save_run_pictures(model, dataset: Dataset, run_dir: str | Path, seed: int = 0) -> list[Path]:
    """The pictures every run directory gets (image data only)."""
    if not is_image(dataset.shape):
        return []
    run_dir = Path(run_dir)
    x = dataset.fixed("test", seed=seed)[:32]
    y = dataset.test.y[:32] if dataset.test.y is not None else None
    return [
        save_samples(model, run_dir / "samples.png", seed=seed),
        save_reconstructions(model, x, run_dir / "reconstructions.png", y),
    ]
