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
from vaekit.evaluate import load_run
from vaekit.evaluation.latent_statistics import latent_statistics
from vaekit.outputs import check_outputs
from vaekit.report.curves import constant_learning_rate, save_training_curves
from vaekit.report.latent_plots import (
    colours_by_label,
    latent_codes,
    save_interpolations,
    save_kl_per_dim,
    save_latent_map,
    save_manifold,
    save_traversals,
)
from vaekit.report.plots import is_image, save_reconstructions, save_samples
from vaekit.support.spelling import spell


@dataclass
class Figure:
    """A written PNG and the caption the report shows under it; ``pixels`` marks a grid of
    image pixels (the page keeps them sharp if the browser has to scale it)."""

    name: str
    path: Path
    caption: str
    pixels: bool = False


def _manifold_path(output: Path) -> Path:
    return output.with_name(output.stem + "-manifold.png")


def _check_png(path: str | Path, run: str | Path, manifold: bool = False) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{spell('-o ', 'output=')}{path}: the output must be a .png file")
    extra = [("output", _manifold_path(path))] if manifold else []
    check_outputs([("output", path), *extra], inputs=[run])
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _require_image(model, run) -> None:
    if model.config.columns:  # the rows' own commands, and the report's table of rows
        raise ValueError(
            f"{run}: a model of a mixed table draws no pictures; reconstruct rows with "
            "--data TABLE.csv -o OUT.csv (vaekit report shows test rows beside theirs)"
        )
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
    if stats is None and model.has_continuous_latent:
        stats = latent_statistics(model, x, y=y)
    has_kl = stats is not None and "kl_per_dim" in stats  # an AE's codes have no KL
    if has_kl:
        order_by, order_name = stats["kl_per_dim"], "KL"
    elif model.has_continuous_latent:
        with torch.no_grad():
            codes = latent_codes(model, x, y if model.takes_labels else None)
            order_by, order_name = codes.double().var(0).tolist(), "var"
    figures = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        constant_lr = constant_learning_rate(metrics)
        lr_caption = (
            f"The learning rate was constant at {constant_lr:.3g}, so it has no panel."
            if constant_lr is not None
            else "The last panel is the learning rate the trainer recorded."
        )
        figures.append(
            Figure(
                "curves",
                save_training_curves(metrics, out_dir / "curves.png"),
                "Training curves: ELBO and its two terms per epoch on the "
                "training and validation splits (nats per example; the ELBO and its reconstruction "
                f"term of the data as given, as in the evaluation). {lr_caption}",
            )
        )
    image = is_image(model.data_shape)
    if image:
        figures.append(
            Figure(
                "reconstructions",
                save_reconstructions(
                    model, x[:32], out_dir / "reconstructions.png", None if y is None else y[:32]
                ),
                "Test inputs beside their reconstructions E[x|z = mu(x)].",
                pixels=True,
            )
        )
        figures.append(
            Figure(
                "samples",
                save_samples(model, out_dir / "samples.png", seed=seed),
                "Samples of each class, one row per class: E[x|z,y] for z ~ p(z|y)."
                if model.takes_labels
                else "Samples: E[x|z_q] for codes drawn independently per position from "
                "the codebook's usage frequencies (a simple prior over codes)."
                if model.has_codebook
                else "Prior samples: E[x|z] for z ~ p(z), the model's prior (decoder means, "
                "not noisy draws from p(x|z)).",
                pixels=True,
            )
        )
    # Interpolations and traversals move through z with the rest fixed; a conditional model
    # would also need a label per row: its report shows the per-class samples instead.
    if not model.has_continuous_latent:  # discrete codes (VQ-VAE): no moves through z
        return figures
    if image and not model.takes_labels:
        start, end = _pairs(x, 8)
        figures.append(
            Figure(
                "interpolations",
                save_interpolations(model, start, end, out_dir / "interpolations.png"),
                "Linear interpolation in latent space between the posterior means "
                "of pairs of test examples.",
                pixels=True,
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
                pixels=True,
            )
        )
    figures.append(
        Figure(
            "latent_map",
            save_latent_map(model, x, y, out_dir / "latent_map.png"),
            (
                "Posterior means of test examples coloured by label"
                if colours_by_label(y)
                else "Posterior means of test examples, in one colour (the data has fewer than "
                "two labels to colour them by)"
            )
            + " (PCA projection when the latent space has more than 2 dimensions).",
        )
    )
    if image and model.latent_dim == 2 and not model.takes_labels:
        figures.append(
            Figure(
                "manifold",
                save_manifold(model, out_dir / "manifold.png"),
                "The decoded 2-D manifold: E[x|z] on a grid of standard-normal "
                "quantiles, so each cell holds equal prior mass.",
                pixels=True,
            )
        )
    if not has_kl:
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
    output = _check_png(output, run)
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
    output = _check_png(output, run)
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
    output = _check_png(output, run)
    model, _, x = _image_run(run, data_dir, split, seed)
    if not 0 <= index < x.shape[0]:
        raise ValueError(
            f"{spell('--index ', 'index=')}{index}: split {split!r} has {x.shape[0]} examples"
        )
    stats = latent_statistics(model, x)
    # Rows by KL where the model has one; an AE's by the variance of its codes.
    name = "KL" if "kl_per_dim" in stats else "var"
    order = stats.get("kl_per_dim", stats["posterior_mean_variance"])
    return save_traversals(
        model, x[index : index + 1], order, output, max_dims, span, steps, score_name=name
    )


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
    output = _check_png(output, run, manifold=True)
    model, dataset = load_run(run, data_dir)
    x = _split_data(dataset, split, seed, model)[:max_examples]
    labels = dataset.split(split).y
    written = save_latent_map(model, x, None if labels is None else labels[:max_examples], output)
    if model.latent_dim == 2 and is_image(model.data_shape):
        save_manifold(model, _manifold_path(output))
    return written
