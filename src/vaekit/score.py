"""Per-example likelihood scores for anomaly (out-of-distribution) detection.

``score_run(run, data, output)`` reads new data like every other command
(:mod:`vaekit.data.new_data`) and writes one CSV row per example, every score
higher-is-more-anomalous and of the data as given: the importance-sampled -log p(x) with its
Monte-Carlo standard error, -ELBO, the squared reconstruction error (for a mixed-type table
whose cells have different units: each column's share of the score), and the ``complexity``
and ``typicality`` remedies. A conditional model scores log p(x|y) where the data bring
labels, else the class-marginal (:func:`importance_scores`). Labels of what is out of
distribution give each score's AUROC and AUPRC. Every column's definition and unit, and the
remedies' sources: the guide's "Anomaly scores" (docs/guide/evaluation.md).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from vaekit.checkpoint import load
from vaekit.data.errors import DataError
from vaekit.data.new_data import NewData, read_new_data
from vaekit.data.transforms import run_transform
from vaekit.data.writers import csv_bytes, printable
from vaekit.metrics.ranking import auprc, auroc
from vaekit.metrics.scores import score_column
from vaekit.models import Model
from vaekit.outputs import check_outputs
from vaekit.rundir import atomic_write_bytes

REMEDIES = ("none", "complexity", "typicality")


def _table_shares(model, x: torch.Tensor, num_samples: int, batch_size: int, y=None) -> dict:
    """``share_NAME_nats`` per column of a mixed-type table (``vaekit.impute.column_shares``;
    a conditional model's given the labels ``y``)."""
    from vaekit.impute import column_shares

    shares = column_shares(model, x, num_samples, batch_size, y)
    return {f"share_{c.name}_nats": shares[:, j] for j, c in enumerate(model.config.columns)}


# --- per-example scores ---------------------------------------------------------------------


class ImportanceScores(NamedTuple):
    """Per-example results of :func:`importance_scores`, each ``[N]`` (float64 nats of the
    model's space, or class indices)."""

    log_px: torch.Tensor  # log p_hat(x): log of the mean importance weight
    stderr: torch.Tensor  # its delta-method standard error
    elbo: torch.Tensor  # the mean log-weight: an ELBO estimate
    most_likely_class: torch.Tensor | None  # argmax_y p_hat(x|y): the class-marginal only


@torch.no_grad()
def importance_scores(
    model: Model,
    x: torch.Tensor,
    num_samples: int,
    batch_size: int,
    chunk_size: int,
    y: torch.Tensor | None = None,
) -> ImportanceScores:
    """Per example of model inputs ``x [N, ...]``: log p_hat(x) = log mean_k w_k, its
    delta-method standard error sd(w)/(sqrt(K) mean w), and mean_k log w_k (an ELBO
    estimate), each ``[N]`` in nats of the model's space (float64).

    A conditional model (``takes_labels``) given labels ``y [N]`` scores log p(x|y). Without
    them it scores the class-marginal log p(x) = log (1/C) sum_y p(x|y), with p(y) uniform
    over its C classes (the model does not learn p(y)): K draws from q(z|x,y) for each class,
    log p_hat(x) the log of the mean of all C K weights (the importance estimate under the
    proposal q(y,z|x) = q(z|x,y)/C, stratified over y), its standard error
    sqrt(sum_y var_y(w)/K) / (C mean w), and the mean log-weight a bound on log p(x) under
    that proposal. ``most_likely_class`` is then argmax_y p_hat(x|y).
    """
    if num_samples < 2:
        raise ValueError("--num-samples must be at least 2 for a standard error")
    marginal = model.takes_labels and y is None
    log_px, stderr, elbo, best = [], [], [], []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        if marginal:
            labels = [
                torch.full((xb.shape[0],), c, dtype=torch.long) for c in range(model.num_classes)
            ]
        else:
            labels = [None if y is None else y[start : start + batch_size]]
        per_class = []
        with model.held_fixed():
            for yb in labels:
                yb = None if yb is None else yb.to(xb.device)
                proposal = model.proposal(xb, y=yb)  # the encoder runs once per example
                chunks = []
                for k0 in range(0, num_samples, chunk_size):
                    k = min(chunk_size, num_samples - k0)
                    chunks.append(model.log_weights_given(proposal, xb, k, y=yb).double())
                per_class.append(torch.cat(chunks))  # [K, B]
        log_w = torch.stack(per_class).cpu()  # [C, K, B], C = 1 unless marginal
        classes = log_w.shape[0]
        log_mean = torch.logsumexp(log_w.flatten(0, 1), dim=0) - math.log(classes * num_samples)
        ratio = torch.exp(log_w - log_mean)  # w / mean w, [C, K, B]; its overall mean is 1
        variance = (ratio - ratio.mean(dim=1, keepdim=True)).square().sum(dim=1)
        variance = variance / (num_samples - 1)  # of each class's weights, [C, B]
        log_px.append(log_mean)
        stderr.append(variance.sum(dim=0).sqrt() / (math.sqrt(num_samples) * classes))
        elbo.append(log_w.mean(dim=(0, 1)))
        if marginal:
            best.append(torch.logsumexp(log_w, dim=1).argmax(dim=0))
    return ImportanceScores(
        torch.cat(log_px),
        torch.cat(stderr),
        torch.cat(elbo),
        torch.cat(best) if marginal else None,
    )


def png_bits(images: np.ndarray) -> np.ndarray:
    """8 x bytes of each uint8 image ``[N, C, H, W]`` saved as a PNG at zlib level 9."""
    from PIL import Image

    bits = np.empty(images.shape[0], dtype=np.float64)
    for i, image in enumerate(images):
        pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=9)
        bits[i] = 8.0 * len(buffer.getvalue())
    return bits


def _complexity(new: NewData, data_info: dict[str, Any], x: torch.Tensor) -> np.ndarray:
    """L(v) in bits of each image as the model sees its levels: the stored 8-bit levels, or
    for a binarised model the binarised draw ``x`` (0/1 -> 0/255) the likelihood was of."""
    transform = run_transform(data_info)
    levels = getattr(transform, "levels", None)
    if levels is None or levels > 256 or new.x.dim() != 4:
        raise DataError(
            f"{new.path}: --remedy complexity needs images of integer levels (at most 256); "
            "use --remedy typicality for this data"
        )
    if transform.kind == "binarize-dynamic":
        return png_bits((x.detach().cpu().numpy() * 255).round().astype(np.uint8))
    return png_bits(new.x.numpy().astype(np.uint8))


def _nll(model, new: NewData, num_samples, batch_size, chunk, seed, by_label) -> torch.Tensor:
    """-log p(v) of the data as given, [N] nats; ``by_label``: a conditional model's
    log p(v|y) with the data's labels, not the class-marginal."""
    from vaekit.codes import labels_for, model_inputs

    torch.manual_seed(seed)
    x = model_inputs(model, new, seed)
    y = labels_for(model, new) if by_label else None
    log_px = importance_scores(model, x, num_samples, batch_size, chunk, y).log_px
    return -log_px + run_transform(model.data_info).log_data_scale(model.data_shape)


def _reference_entropy(
    run, model, reference, num_samples, batch_size, chunk, seed, max_examples, trust_scale, by_label
) -> tuple[float, str]:
    """H: the mean nll (data as given) of in-distribution reference data, and its source;
    ``by_label`` as for the scores, so that H is of the same density."""
    if reference is not None:
        ref = read_new_data(reference, model.data_info, trust_scale=trust_scale)
        where = printable(str(reference))
    else:
        from vaekit.data.new_data import NewData as _New
        from vaekit.evaluate import load_run

        if isinstance(run, torch.nn.Module):
            raise ValueError("--remedy typicality on a model object needs reference=PATH")
        _, dataset = load_run(run)
        split = "val" if len(dataset.val) else "test"
        part = dataset.split(split)
        x = part.x[:max_examples].double()
        y = None if part.y is None else part.y[:max_examples]
        ref = _New(Path(dataset.name), x, "array", ".npy", (), labels=y)
        where = f"{dataset.name} ({'validation' if split == 'val' else 'test'} split)"
    nll = _nll(model, ref, num_samples, batch_size, chunk, seed, by_label)[:max_examples]
    return float(nll.mean()), f"{where}, {nll.numel()} examples"


def score_data(
    run: str | Path | Model,
    data: str | Path,
    num_samples: int = 100,
    batch_size: int = 100,
    seed: int = 0,
    remedy: str = "none",
    reference: str | Path | None = None,
    reference_max_examples: int = 1000,
    ood_column: str = "ood",
    ood_classes: list[str] | None = None,
    trust_scale: bool = False,
    max_examples: int | None = None,
    memory_budget_mb: float = 32,
    unknown_categories: str = "error",
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-example scores (column name -> ``[N]`` array) and a summary (counts, space,
    units, AUROC/AUPRC per score where labels exist). ``run``: a run or model directory, or
    a loaded model (with its ``data_info``). ``unknown_categories`` "missing": a table's
    category that training never saw is scored as a missing cell. See the module doc."""
    from vaekit.codes import labels_for, model_inputs
    from vaekit.evaluation.chunking import choose_chunk_size

    if remedy not in REMEDIES:
        raise ValueError(f"--remedy {remedy!r}: choose one of {', '.join(REMEDIES)}")
    model = run if isinstance(run, torch.nn.Module) else load(run)
    if not model.has_likelihood:
        raise ValueError(
            f"{run}: score needs a model with a likelihood p(x); {model.name!r} has none"
        )
    new = read_new_data(
        data,
        model.data_info,
        ood_column=ood_column,
        ood_classes=ood_classes,
        trust_scale=trust_scale,
        columns=model.config.columns,
        unknown_categories=unknown_categories,
    )
    if max_examples is not None:
        new.x = new.x[:max_examples]
        new.ood = None if new.ood is None else new.ood[:max_examples]
        new.names = None if new.names is None else new.names[:max_examples]
    info = model.data_info or {"shape": list(model.data_shape)}
    transform = run_transform(info)
    c = transform.log_data_scale(model.data_shape)
    chunk = choose_chunk_size(model, batch_size, num_samples, memory_budget_mb)
    torch.manual_seed(seed)
    x = model_inputs(model, new, seed)
    # A conditional model: log p(x|y) where the data bring labels, else the class-marginal.
    by_label = model.takes_labels and new.labels is not None
    y = labels_for(model, new) if by_label else None
    log_px, stderr, elbo, best = importance_scores(model, x, num_samples, batch_size, chunk, y)
    recon_y = y if y is not None else best  # the class-marginal reconstructs its likeliest class
    recon = torch.cat(
        [
            model.reconstruct(
                x[i : i + batch_size],
                y=None if recon_y is None else recon_y[i : i + batch_size].to(x.device),
            )
            for i in range(0, len(x), batch_size)
        ]
    )
    v_hat = transform.to_data(recon.double())
    sq_error = (new.x.double() - v_hat).square().flatten(1).sum(dim=1)
    columns: dict[str, np.ndarray] = {
        "nll_nats": (-log_px + c).numpy(),
        "nll_stderr_nats": stderr.numpy(),
        "neg_elbo_nats": (-elbo + c).numpy(),
        "recon_sq_error": sq_error.numpy(),
    }
    if transform.kind == "table":  # cells of several types and units: no squared error
        del columns["recon_sq_error"]
        columns |= _table_shares(model, x, num_samples, batch_size, recon_y)
    summary: dict[str, Any] = {
        "data": printable(str(new.path)),
        "num_examples": len(new.x),
        "num_samples": num_samples,
        "space": transform.data_space(),
        "remedy": remedy,
    }
    if model.takes_labels:
        summary["density"] = (
            "log p(x|y) with the data's labels"
            if by_label
            else f"log p(x) = log (1/C) sum_y p(x|y), p(y) uniform over the model's "
            f"C = {model.num_classes} classes"
        )
    if best is not None:
        columns["most_likely_class"] = best.numpy()
    if remedy == "complexity":
        bits = _complexity(new, info, x)
        columns["complexity_bits"] = bits
        columns["complexity_corrected_bits"] = columns["nll_nats"] / math.log(2.0) - bits
    elif remedy == "typicality":
        h, where = _reference_entropy(
            run,
            model,
            reference,
            num_samples,
            batch_size,
            chunk,
            seed,
            reference_max_examples,
            trust_scale,
            by_label,
        )
        columns["typicality_nats"] = np.abs(columns["nll_nats"] - h)
        summary["typicality_reference"] = {"mean_nll_nats": h, "data": where}
    summary["units"] = {name: score_column(name).meaning for name in columns}
    if new.ood is not None:
        labels = new.ood.numpy()
        summary["num_out_of_distribution"] = int(labels.sum())
        summary["num_in_distribution"] = int(labels.size - labels.sum())
        if 0 < labels.sum() < labels.size:
            summary["metrics"] = {
                name: {"auroc": auroc(values, labels), "auprc": auprc(values, labels)}
                for name, values in columns.items()
                if score_column(name).ranked
            }
        columns = {"ood": labels, **columns}
    if new.names is not None:
        columns = {"file": np.asarray(new.names), **columns}
    return columns, summary


def write_scores(path: str | Path, columns: dict[str, np.ndarray]) -> Path:
    """One CSV row per example (atomic): ``row`` (from 0), then every column; file names
    that are not UTF-8 are written backslash-escaped (:func:`printable`)."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise DataError(f"-o {path}: scores are written as a .csv file")
    n = len(next(iter(columns.values())))
    rows = [["row", *columns]]
    for i in range(n):
        row = [str(i)]
        for values in columns.values():
            v = values[i]
            row.append(f"{v:.9g}" if isinstance(v, float | np.floating) else printable(str(v)))
        rows.append(row)
    atomic_write_bytes(path, csv_bytes(rows))
    return path


def score_run(
    run: str | Path, data: str | Path, output: str | Path | None = None, **options: Any
) -> dict:
    """Score ``data`` with the run's model, write ``output`` (CSV) if given and return the
    summary (its AUROC and AUPRC where the data bring labels)."""
    if output is not None and Path(output).suffix.lower() != ".csv":
        raise DataError(f"-o {output}: scores are written as a .csv file")
    check_outputs({"output": output}, inputs=[run, data, options.get("reference")])
    columns, summary = score_data(run, data, **options)
    if output is not None:
        summary["output"] = printable(str(write_scores(output, columns)))
    return summary


def score_headline(summary: dict[str, Any]) -> list[str]:
    """The lines ``vaekit score`` prints: what was scored, each column's unit, the metrics."""
    lines = [
        f"scored {summary['num_examples']} examples of {summary['data']} with K = "
        f"{summary['num_samples']} importance samples each"
        + (f"; wrote {summary['output']}" if "output" in summary else ""),
        f"likelihood figures are of {summary['space']}",
    ]
    if "density" in summary:  # a conditional model: which density the figures are
        lines.append(f"the density scored: {summary['density']}")
    units = dict(summary["units"])
    label = units.pop("most_likely_class", None)  # a class, not an anomaly score
    lines.append("columns (higher = more out-of-distribution):")
    lines += [f"  {name:<26} {unit}" for name, unit in units.items()]
    if label is not None:
        lines.append(f"  {'most_likely_class':<26} {label} (not a score)")
    reference = summary.get("typicality_reference")
    if reference:
        lines.append(
            f"typicality reference: mean nll {reference['mean_nll_nats']:.3f} nats per example "
            f"over {reference['data']}"
        )
    if "metrics" in summary:
        n_out, n_in = summary["num_out_of_distribution"], summary["num_in_distribution"]
        lines.append(
            f"out-of-distribution detection, OOD = positive class ({n_out} out, {n_in} in):"
        )
        lines.append(f"  {'score':<26} {'AUROC':>7} {'AUPRC':>7}")
        for name, m in summary["metrics"].items():
            lines.append(f"  {name:<26} {m['auroc']:>7.4f} {m['auprc']:>7.4f}")
    elif "num_out_of_distribution" in summary:
        lines.append("labels hold only one class: no AUROC/AUPRC")
    else:
        lines.append(
            "no labels (an 'ood' column/array of 0/1, or sub-folders in/ and out/): no AUROC"
        )
    return lines
