"""Every picture of a run, and one function per ``vaekit`` picture command.

``run_figures`` writes all PNGs that apply to a model into a folder (the HTML report embeds
them); ``reconstruct_run``, ``interpolate_run``, ``traverse_run`` and ``latent_map_run`` are
what the CLI commands of the same names call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaekit.data import Dataset
from vaekit.evaluate import latent_statistics, load_run
from vaekit.models import VAE
from vaekit.report.curves import save_training_curves
from vaekit.report.latent_plots import (
    latent_codes,
    save_interpolations,
    save_kl_per_dim,
    save_latent_map,
    save_manifold,
    save_traversals,
)
from vaekit.report.plots import is_image, save_reconstructions, save_samples
from vaekit.spelling import spell


@dataclass
class Figure:
    """A written PNG and the caption the report shows under it."""

    name: str
    path: Path
    caption: str


def _check_png(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{spell('-o ', 'output=')}{path}: the output must be a .png file")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _require_image(model, run) -> None:
    if not is_image(model.data_shape):
        raise ValueError(f"{run}: data shape {list(model.data_shape)} is not an image")


def _pairs(x: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` (start, end) pairs of distinct examples: x[0] -> x[1], x[2] -> x[3], ..."""
    count = min(count, x.shape[0] // 2)
    if count < 1:
        raise ValueError("interpolation needs at least two examples")
    return x[0 : 2 * count : 2], x[1 : 2 * count : 2]


def run_figures(
    model,
    dataset: Dataset,
    run_dir: str | Path,
    out_dir: str | Path,
    stats: dict[str, Any] | None = None,
    seed: int = 0,
    max_examples: int = 2000,
) -> list[Figure]:
    """Write every picture that applies into ``out_dir``; returns them in report order.

    ``stats`` is ``latent_statistics`` output (computed on the test split if not given) for a
    VAE. An AE has no posterior: its traversals are ordered by the variance of its codes over
    the test split and it gets no KL chart.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = dataset.fixed("test", seed=seed)[:max_examples].to(next(model.parameters()).dtype)
    y = dataset.test.y[:max_examples] if dataset.test.y is not None else None
    vae = isinstance(model, VAE)
    if stats is None and vae:
        stats = latent_statistics(model, x)
    if vae:
        order_by, order_name = stats["kl_per_dim"], "KL"
    else:
        with torch.no_grad():
            order_by, order_name = latent_codes(model, x).double().var(0).tolist(), "var"
    figures = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        figures.append(
            Figure(
                "curves",
                save_training_curves(metrics, out_dir / "curves.png"),
                "Training curves: ELBO and its two terms per epoch on the "
                "training and validation splits (nats per example); the "
                "learning rate where the trainer recorded it.",
            )
        )
    image = is_image(model.data_shape)
    if image:
        figures.append(
            Figure(
                "reconstructions",
                save_reconstructions(model, x[:32], out_dir / "reconstructions.png"),
                "Test inputs beside their reconstructions E[x|z = mu(x)].",
            )
        )
        figures.append(
            Figure(
                "samples",
                save_samples(model, out_dir / "samples.png", seed=seed),
                "Prior samples: E[x|z] for z ~ N(0, I) (decoder means, not noisy "
                "draws from p(x|z)).",
            )
        )
        start, end = _pairs(x, 8)
        figures.append(
            Figure(
                "interpolations",
                save_interpolations(model, start, end, out_dir / "interpolations.png"),
                "Linear interpolation in latent space between the posterior means "
                "of pairs of test examples.",
            )
        )
        figures.append(
            Figure(
                "traversals",
                save_traversals(
                    model, x[:1], order_by, out_dir / "traversals.png", score_name=order_name
                ),
                "Latent traversals from the first test example's code: one coordinate at a "
                "time from -3 to +3, the others fixed; rows ordered by KL (for an AE: by the "
                "codes' variance), the most informative coordinates first.",
            )
        )
    figures.append(
        Figure(
            "latent_map",
            save_latent_map(model, x, y, out_dir / "latent_map.png"),
            "Posterior means of test examples coloured by label (PCA projection "
            "when the latent space has more than 2 dimensions).",
        )
    )
    if image and model.latent_dim == 2:
        figures.append(
            Figure(
                "manifold",
                save_manifold(model, out_dir / "manifold.png"),
                "The decoded 2-D manifold: E[x|z] on a grid of standard-normal "
                "quantiles, so each cell holds equal prior mass.",
            )
        )
    if not vae:
        return figures
    active = [v > stats["active_unit_threshold"] for v in stats["posterior_mean_variance"]]
    figures.append(
        Figure(
            "kl_per_dim",
            save_kl_per_dim(stats["kl_per_dim"], out_dir / "kl_per_dim.png", active=active),
            "Mean KL of each latent coordinate's marginal posterior from N(0, 1), "
            "nats per example; grey bars are inactive units "
            "(Var_x(E_q[z_j]) <= 0.01).",
        )
    )
    return figures


def _split_data(dataset: Dataset, split: str, seed: int, model) -> torch.Tensor:
    return dataset.fixed(split, seed=seed).to(next(model.parameters()).dtype)


def _image_run(run, data_dir: str | None, split: str, seed: int):
    """The picture commands' common start: the run's model (image data only), its dataset
    and the split's examples in the model's dtype ``[N, *data_shape]``."""
    model, dataset = load_run(run, data_dir)
    _require_image(model, run)
    return model, dataset, _split_data(dataset, split, seed, model)


def reconstruct_run(
    run: str | Path,
    output: str | Path,
    n: int = 16,
    split: str = "test",
    seed: int = 0,
    data_dir: str | None = None,
) -> Path:
    """PNG of the first ``n`` examples of ``split`` beside their reconstructions."""
    output = _check_png(output)
    model, _, x = _image_run(run, data_dir, split, seed)
    return save_reconstructions(model, x[:n], output)


def interpolate_run(
    run: str | Path,
    output: str | Path,
    pairs: int = 8,
    steps: int = 10,
    split: str = "test",
    seed: int = 0,
    data_dir: str | None = None,
) -> Path:
    """PNG of latent interpolations between ``pairs`` pairs of examples of ``split``."""
    output = _check_png(output)
    model, _, x = _image_run(run, data_dir, split, seed)
    start, end = _pairs(x, pairs)
    return save_interpolations(model, start, end, output, steps=steps)


def traverse_run(
    run: str | Path,
    output: str | Path,
    index: int = 0,
    max_dims: int = 10,
    span: float = 3.0,
    steps: int = 11,
    split: str = "test",
    seed: int = 0,
    data_dir: str | None = None,
) -> Path:
    """PNG of latent traversals around example ``index`` of ``split``, rows ordered by KL."""
    output = _check_png(output)
    model, _, x = _image_run(run, data_dir, split, seed)
    if not 0 <= index < x.shape[0]:
        raise ValueError(
            f"{spell('--index ', 'index=')}{index}: split {split!r} has {x.shape[0]} examples"
        )
    kl = latent_statistics(model, x)["kl_per_dim"]
    return save_traversals(model, x[index : index + 1], kl, output, max_dims, span, steps)


def latent_map_run(
    run: str | Path,
    output: str | Path,
    split: str = "test",
    max_examples: int = 5000,
    seed: int = 0,
    data_dir: str | None = None,
) -> Path:
    """PNG of the posterior means of ``split`` coloured by label (PCA beyond 2-D); a 2-D latent
    space also gets the decoded manifold, written beside it as ``<output>-manifold.png``."""
    output = _check_png(output)
    model, dataset = load_run(run, data_dir)
    x = _split_data(dataset, split, seed, model)[:max_examples]
    labels = dataset.split(split).y
    written = save_latent_map(model, x, None if labels is None else labels[:max_examples], output)
    if model.latent_dim == 2 and is_image(model.data_shape):
        save_manifold(model, output.with_name(output.stem + "-manifold.png"))
    return written
