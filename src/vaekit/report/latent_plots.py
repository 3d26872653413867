"""Pictures of the latent space: interpolations, traversals, label maps, the 2-D manifold and
KL per coordinate. Every function takes a model (and data where needed) and writes one PNG.

Decoded pictures show E[x|z] (the decoder's mean), clipped to [0, 1] for display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vaekit.report.plots import (
    check_decoding_fits,
    class_names,
    image_grid,
    pyplot,
    save_figure,
    save_grid,
)
from vaekit.support.spelling import spell


def _device(model) -> torch.device:
    return next(model.parameters()).device


def latent_codes(model, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """The code a picture uses for ``x`` (labels ``y`` for a conditional model): the
    posterior mean E_q[z|x] of a VAE, the deterministic code f(x) of an AE. ``[B, m]``."""
    return model.latent_moments(x, y=y).mean


@torch.no_grad()
def save_interpolations(
    model, x_start: torch.Tensor, x_end: torch.Tensor, path: str | Path, steps: int = 10
) -> Path:
    """One row per pair: decode (1 - t) mu(x_start) + t mu(x_end) for ``steps`` values of t in
    [0, 1] (linear in latent space, between posterior means). ``x_* [P, *data_shape]``."""
    rows = x_start.shape[0] * steps
    flags = f"{spell('--pairs', 'pairs')} {x_start.shape[0]} x {spell('--steps', 'steps')} {steps}"
    check_decoding_fits(model, rows, f"{flags}: decoding {rows} images")
    device = _device(model)
    mu_a = latent_codes(model, x_start.to(device))  # [P, m]
    mu_b = latent_codes(model, x_end.to(device))
    t = torch.linspace(0.0, 1.0, steps, device=device, dtype=mu_a.dtype)  # [T]
    z = (1 - t)[None, :, None] * mu_a[:, None] + t[None, :, None] * mu_b[:, None]  # [P, T, m]
    images = model.decode_mean(z).flatten(0, 1)  # [P*T, *shape]
    grid = image_grid(images, ncols=steps)
    return save_grid(
        grid,
        path,
        "latent interpolations between pairs of test examples (one pair per row)",
        col_labels=[f"{v:.2f}" for v in t.tolist()],
        xlabel="t in z = (1 - t) mu(x_a) + t mu(x_b)",
        cell=images.shape[-1],
    )


@torch.no_grad()
def save_traversals(
    model,
    x_anchor: torch.Tensor,
    kl_per_dim: Sequence[float],
    path: str | Path,
    max_dims: int = 10,
    span: float = 3.0,
    steps: int = 11,
    score_name: str = "KL",
) -> Path:
    """Latent traversals: start from z = mu(x_anchor) (one example ``[1, *shape]``), set one
    coordinate at a time to values in [-span, span] (prior standard deviations), keep the
    others fixed. Rows are coordinates in decreasing order of ``kl_per_dim`` (at most
    ``max_dims``); for an AE pass another per-coordinate score (e.g. the codes' variance) and
    its ``score_name``."""
    device = _device(model)
    base = latent_codes(model, x_anchor[:1].to(device))[0]  # [m]
    order = np.argsort(-np.asarray(kl_per_dim, dtype=float), kind="stable")[:max_dims]
    rows = len(order) * steps
    flags = f"{spell('--max-dims', 'max_dims')} {max_dims} x {spell('--steps', 'steps')} {steps}"
    check_decoding_fits(model, rows, f"{flags}: decoding {rows} images")
    values = torch.linspace(-span, span, steps, device=device, dtype=base.dtype)
    z = base.repeat(len(order), steps, 1)  # [R, T, m]
    for row, dim in enumerate(order):
        z[row, :, int(dim)] = values
    images = model.decode_mean(z).flatten(0, 1)
    grid = image_grid(images, ncols=steps)
    return save_grid(
        grid,
        path,
        f"latent traversals (rows: coordinates by {score_name}, others fixed at the code of x)",
        row_labels=[f"z{int(d)}  {score_name} {kl_per_dim[int(d)]:.2f}" for d in order],
        col_labels=[f"{v + 0.0:+.1f}" for v in values.tolist()],
        xlabel="value of the traversed coordinate (prior standard deviations)",
        cell=images.shape[-1],
    )


def colours_by_label(labels: torch.Tensor | None) -> bool:
    """Whether a latent map colours its points by label: only with two labels or more (one
    colour for every point would say nothing)."""
    return labels is not None and torch.unique(labels).numel() >= 2


@torch.no_grad()
def save_latent_map(
    model,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    path: str | Path,
    batch_size: int = 1000,
) -> Path:
    """Scatter the posterior means mu(x) (an AE's codes) coloured by label (where
    :func:`colours_by_label`): the two coordinates directly for a 2-D latent space, else the
    first two principal components (PCA by SVD of the centred codes)."""
    device = _device(model)
    mu = (
        torch.cat(
            [
                latent_codes(
                    model,
                    x[i : i + batch_size].to(device),
                    labels[i : i + batch_size].to(device) if model.takes_labels else None,
                ).cpu()
                for i in range(0, len(x), batch_size)
            ]
        )
        .double()
        .numpy()
    )
    if mu.shape[1] == 1:
        points, axes = np.c_[mu[:, 0], np.zeros(len(mu))], ("z0 (latent units)", "(1-D latent)")
        how = "1-D latent space"
    elif mu.shape[1] == 2:
        points, axes = mu, ("z0 (latent units)", "z1 (latent units)")
        how = "2-D latent space"
    else:
        centred = mu - mu.mean(axis=0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        points = centred @ vt[:2].T
        explained = singular[:2] ** 2 / max((singular**2).sum(), 1e-300)
        axes = tuple(
            f"PC{i + 1} ({100 * e:.0f}% of variance; latent units)" for i, e in enumerate(explained)
        )
        how = f"PCA of the {mu.shape[1]}-D posterior means"
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    if colours_by_label(labels):
        y = labels.cpu().numpy()
        classes = np.unique(y)
        named = y.dtype.kind in "iu" and classes.min() >= 0  # class indices: their names
        names = class_names(
            getattr(model, "data_info", None), int(classes.max()) + 1 if named else 0
        )
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for i, c in enumerate(classes):
            sel = y == c
            ax.scatter(
                points[sel, 0],
                points[sel, 1],
                s=10,
                alpha=0.75,
                color=cmap(i % cmap.N),
                label=names[c] if named else str(c),
            )
        ax.legend(
            title="class",
            fontsize=8,
            markerscale=2.5,
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
        )
    else:
        ax.scatter(points[:, 0], points[:, 1], s=10, alpha=0.75)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    code = "posterior means E_q[z|x]" if model.has_posterior else "codes f(x)"
    ax.set_title(f"{code} of {len(mu)} test examples, {how}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


@torch.no_grad()
def save_manifold(model, path: str | Path, n: int = 15) -> Path:
    """The decoded 2-D manifold: E[x|z] on an ``n x n`` grid z = (Phi^-1(u), Phi^-1(v)),
    u, v evenly spaced in (0, 1), so each cell covers equal prior probability mass."""
    if model.latent_dim != 2:
        raise ValueError(
            f"the 2-D manifold needs a 2-D latent space, this model has {model.latent_dim}"
        )
    device = _device(model)
    dtype = next(model.parameters()).dtype
    u = torch.linspace(0.5 / n, 1 - 0.5 / n, n, dtype=dtype, device=device)
    values = torch.distributions.Normal(0.0, 1.0).icdf(u)  # [n], standard-normal quantiles
    z1, z0 = torch.meshgrid(values.flip(0), values, indexing="ij")  # rows: z1 high -> low
    z = torch.stack([z0, z1], dim=-1).reshape(-1, 2)
    images = model.decode_mean(z)
    grid = image_grid(images, ncols=n)
    labels = [f"{v:+.1f}" for v in values.tolist()]
    return save_grid(
        grid,
        path,
        "decoded 2-D manifold E[x|z] on a grid of prior quantiles",
        row_labels=labels[::-1],
        col_labels=labels,
        xlabel="z0 = Phi^-1(u) (latent units)",
        ylabel="z1 = Phi^-1(v) (latent units)",
        cell=images.shape[-1],
    )


def save_kl_per_dim(
    kl_per_dim: Sequence[float], path: str | Path, active: Sequence[bool] | None = None
) -> Path:
    """Bar chart of the mean KL of each latent coordinate (nats per example), sorted high to
    low; bars of inactive units (Burda et al.) are grey when ``active`` is given."""
    kl = np.asarray(kl_per_dim, dtype=float)
    order = np.argsort(-kl, kind="stable")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.35 * len(kl) + 1.5), 3.6))
    colours = ["tab:blue" if active is None or active[i] else "tab:gray" for i in order]
    ax.bar(range(len(kl)), kl[order], color=colours)
    ax.set_xticks(range(len(kl)))
    ax.set_xticklabels([f"z{i}" for i in order], fontsize=8, rotation=90 if len(kl) > 20 else 0)
    ax.set_xlabel("latent coordinate (sorted by KL)")
    ax.set_ylabel("KL(q(z_j|x) || N(0,1)) (nats per example)")
    title = f"KL per latent coordinate (total {kl.sum():.2f} nats)"
    if active is not None:
        title += f"\n{int(sum(active))} active of {len(kl)} units (grey: inactive)"
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
