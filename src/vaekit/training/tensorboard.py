"""What a training run shows in TensorBoard besides its scalars (``RUN/tensorboard``).

* IMAGES: ``pictures/samples`` (E[x|z] for 64 fixed draws z ~ p(z), the same draws every
  time, so their evolution is visible; a conditional model draws 64 // C per class, one row
  per class y = 0, 1, ...) and ``pictures/reconstructions`` (16 fixed test inputs, each beside
  the model's ``reconstruct``: E[x|z] at the posterior mean, the code, or the quantised code)
  every ``train.tensorboard_images_every`` epochs and after the last one. Small images are
  scaled up (nearest neighbour) to stay legible. A conditional model's reconstructions need the
  inputs' labels; without them the grid is skipped and the reason written to the TEXT tab
  (``pictures/notes``).
* HPARAMS: the run's full config, flattened to ``section.field`` names, against its final
  metrics: the last validation ELBO and its terms (``epoch/val_*``, nats per example), the best
  validation ELBO, and, where the run was evaluated (the report does it), the test nll in nats
  per example, bits per dimension and active units (``final/*``).
* PROJECTOR: the test split's posterior means E_q[z|x] from the model's ``latent_moments``
  (a deterministic model's codes; estimated from draws where the posterior has no closed-form
  mean: IAF, the hierarchical VAE's layers), one row per example (at most
  ``EMBEDDING_MAX_EXAMPLES``), with the labels as metadata and a sprite of the input images.
  Only for models with a continuous latent (``has_continuous_latent``): a VQ-VAE's code is a
  discrete index, so the projector is skipped and the reason written to the TEXT tab
  (``projector/notes``). A conditional model's means are of q(z|x,y), each example with its
  own label.

Every picture is drawn with the model in eval mode, from its own seeded generator, and any
draw a model makes from the global RNG (a Monte-Carlo posterior mean) happens inside a forked,
seeded RNG: logging never moves the training RNG, so a resumed run stays bitwise identical.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vaekit.data import Dataset
from vaekit.outputs import read_regular
from vaekit.report.plots import image_grid, is_image

NUM_SAMPLES = 64
NUM_RECONSTRUCTIONS = 16
EMBEDDING_MAX_EXAMPLES = 10_000  # the projector samples at most 10,000 points for PCA/t-SNE
MIN_PICTURE_SIDE = 28  # pixels: smaller images are repeated up to at least this side
# Final metrics read from RUN/eval.json, each shown as final/test_KEY; what each is and its
# unit: the table in vaekit.metrics.
EVALUATED = ("nll", "bits_per_dim", "active_units")


def _upscale(images: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` repeated (nearest neighbour) so the shorter side is at least
    ``MIN_PICTURE_SIDE`` pixels."""
    factor = max(1, math.ceil(MIN_PICTURE_SIDE / min(images.shape[-2:])))
    return images.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def _as_images(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` (a ``[N, H, W]`` batch gains a channel), float in [0, 1] for display."""
    x = x.detach().float().cpu()
    return (x.unsqueeze(1) if x.dim() == 3 else x).clamp(0, 1)


@contextlib.contextmanager
def _own_rng(device: torch.device, seed: int):
    """Run the block with the global RNG forked and seeded (restored afterwards)."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _samples(model, generator: torch.Generator) -> tuple[torch.Tensor, int | None]:
    """E[x|z] for ``NUM_SAMPLES`` prior draws and the grid's columns (None: a square grid);
    a conditional model draws ``NUM_SAMPLES // C`` per class, one row per class."""
    if not model.takes_labels:
        return model.sample(NUM_SAMPLES, generator=generator), None
    device = next(model.parameters()).device
    per_class = max(1, NUM_SAMPLES // model.num_classes)
    y = torch.arange(model.num_classes, device=device).repeat_interleave(per_class)
    return model.sample(y.numel(), generator=generator, y=y), per_class


@torch.no_grad()
def log_pictures(
    writer,
    model,
    x_test: torch.Tensor,
    step: int,
    seed: int = 0,
    y_test: torch.Tensor | None = None,
) -> None:
    """Add the sample and reconstruction grids at ``step`` (image data only). ``y_test``:
    the labels of ``x_test`` (a conditional model's reconstructions need them; without them
    that grid is skipped and the reason written to ``pictures/notes``)."""
    if not is_image(tuple(x_test.shape[1:])):
        return
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    generator = torch.Generator(device=p.device).manual_seed(seed)
    notes = []
    with _own_rng(p.device, seed):
        samples, ncols = _samples(model, generator)
        grids = {"pictures/samples": image_grid(_upscale(_as_images(samples)), ncols=ncols)}
        x = x_test[:NUM_RECONSTRUCTIONS].to(device=p.device, dtype=p.dtype)
        y = y_test[: x.shape[0]].to(p.device) if y_test is not None else None
        if x.shape[0] > 0 and model.takes_labels and y is None:
            notes.append(
                f"pictures/reconstructions skipped: model {model.name!r} is conditional and "
                "reconstructs x given its label y, but the test inputs came without labels"
            )
        elif x.shape[0] > 0:
            recon = model.reconstruct(x, y=y if model.takes_labels else None)
            pairs = _as_images(torch.stack([x, recon], dim=1).flatten(0, 1))  # input, recon, ...
            grids["pictures/reconstructions"] = image_grid(_upscale(pairs), ncols=8)
    model.train(was_training)
    for tag, grid in grids.items():
        writer.add_image(tag, grid, step, dataformats="HWC")
    for note in notes:
        writer.add_text("pictures/notes", note, step)


def flat_hparams(config: dict[str, Any]) -> dict[str, float | int | str | bool]:
    """``{"section.field": value}`` of a config dict; lists and None become strings (the
    HPARAMS tab takes numbers, strings and booleans only)."""
    flat: dict[str, float | int | str | bool] = {}
    for section, fields in config.items():
        for name, value in (fields or {}).items():
            ok = isinstance(value, bool | int | float | str)
            flat[f"{section}.{name}"] = value if ok else json.dumps(value)
    return flat


def final_metrics(history: list[dict[str, Any]], run_dir: Path | None) -> dict[str, float]:
    """The numbers the HPARAMS tab shows against the config (see the module doc)."""
    metrics: dict[str, float] = {}
    last = history[-1] if history else {}
    for key in ("val_elbo", "val_log_px_z", "val_kl"):
        if isinstance(last.get(key), int | float):
            metrics[f"epoch/{key}"] = float(last[key])
    val = [r["val_elbo"] for r in history if isinstance(r.get("val_elbo"), int | float)]
    if val:
        metrics["final/best_val_elbo"] = max(val)
    evaluated = _read_eval(run_dir)
    for key in EVALUATED:
        if isinstance(evaluated.get(key), int | float):
            metrics[f"final/test_{key}"] = float(evaluated[key])
    return metrics


def _read_eval(run_dir: Path | None) -> dict[str, Any]:
    path = None if run_dir is None else Path(run_dir) / "eval.json"
    if path is None or not path.exists():
        return {}
    try:
        result = json.loads(read_regular(path))
    except (json.JSONDecodeError, OSError):
        return {}
    return result if isinstance(result, dict) and result.get("split") == "test" else {}


def log_hparams(writer, config: dict[str, Any], metrics: dict[str, float], step: int) -> None:
    """Write the HPARAMS plugin's experiment and session summaries into the run's own event
    file, and each metric as a scalar (the tab shows a metric's last scalar value)."""
    from torch.utils.tensorboard.summary import hparams

    experiment, start, end = hparams(flat_hparams(config), metrics)
    file_writer = writer._get_file_writer()
    for summary in (experiment, start, end):
        file_writer.add_summary(summary, step)
    for tag, value in metrics.items():
        if tag.startswith("final/"):  # epoch/* are already in the event file
            writer.add_scalar(tag, value, step)


def projector_refusal(model, labels: torch.Tensor | None) -> str | None:
    """Why the projector cannot show this model's codes (one line), or None."""
    if not model.has_continuous_latent:
        return (
            f"projector skipped: model {model.name!r} has a discrete code (codebook indices), "
            "not a continuous latent with posterior means"
        )
    if model.takes_labels and labels is None:
        return (
            f"projector skipped: model {model.name!r} is conditional and the test split has "
            "no labels to encode with"
        )
    return None


@torch.no_grad()
def log_embedding(writer, model, dataset: Dataset, step: int, seed: int = 0) -> int:
    """Add the test split's posterior means to the projector, with label metadata and a
    sprite of the inputs (image data); returns the number of points (0 where the model has
    none: the reason goes to ``projector/notes``)."""
    x = dataset.fixed("test", seed=seed)[:EMBEDDING_MAX_EXAMPLES]
    if x.shape[0] == 0:
        return 0
    labels = dataset.test.y
    reason = projector_refusal(model, labels)
    if reason is not None:
        writer.add_text("projector/notes", reason, step)
        return 0
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    chunks = []
    with _own_rng(p.device, seed):
        for i in range(0, x.shape[0], 1000):
            xb = x[i : i + 1000].to(device=p.device, dtype=p.dtype)
            yb = labels[i : i + xb.shape[0]].to(p.device) if model.takes_labels else None
            chunks.append(model.latent_moments(xb, y=yb).mean.cpu())
    means = torch.cat(chunks)
    model.train(was_training)
    metadata = None if labels is None else [str(v) for v in labels[: x.shape[0]].tolist()]
    sprite = _upscale(_as_images(x)) if is_image(tuple(x.shape[1:])) else None
    writer.add_embedding(
        means.float(), metadata=metadata, label_img=sprite, global_step=step, tag="posterior_mean"
    )
    return means.shape[0]


def log_final(
    writer,
    model,
    dataset: Dataset,
    config: dict[str, Any],
    history: list[dict[str, Any]],
    run_dir: Path | None,
    step: int,
    seed: int = 0,
) -> None:
    """What the end of training adds besides the last pictures: HPARAMS and the projector."""
    log_hparams(writer, config, final_metrics(history, run_dir), step)
    log_embedding(writer, model, dataset, step, seed)
    writer.flush()


class TensorBoardLog:
    """RUN/tensorboard of a training run: the ``writer`` (its scalars come from the records)
    and the pictures of ``model`` inside ``averaged()`` (the Polyak average, if kept), of the
    same 16 test inputs every time (``seed`` picks them)."""

    writer: Any  # torch.utils.tensorboard.SummaryWriter
    run_dir: Path
    model: Any  # vaekit.models.Model
    averaged: Callable[[], contextlib.AbstractContextManager]
    dataset: Dataset
    seed: int
    inputs: tuple[torch.Tensor, torch.Tensor | None] | None  # the inputs and their labels
    pictures_step: int | None  # the step of the last pictures

    def __init__(self, run_dir: Path, step: int, model, averaged, dataset, seed: int) -> None:
        """The log at ``run_dir``/tensorboard, continued from ``step`` (events a killed run
        wrote after it are dropped)."""
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=step)
        self.run_dir, self.model, self.averaged = run_dir, model, averaged
        self.dataset, self.seed = dataset, seed
        self.inputs, self.pictures_step = None, None

    @staticmethod
    def available() -> bool:
        """Whether tensorboard is installed (the optional dependency: pip install
        'vaekit[tensorboard]')."""
        return importlib.util.find_spec("tensorboard") is not None

    def pictures(self, step: int) -> None:
        """The sample and reconstruction grids at ``step``."""
        if self.inputs is None:  # chosen at the first pictures, then the same every time
            labels = self.dataset.test.y
            x = self.dataset.fixed("test", seed=self.seed)[:NUM_RECONSTRUCTIONS]
            self.inputs = x, labels[:NUM_RECONSTRUCTIONS] if labels is not None else None
        x, y = self.inputs
        with self.averaged():
            log_pictures(self.writer, self.model, x, step, self.seed, y_test=y)
        self.pictures_step = step

    def final(self, config: dict[str, Any], history: list[dict[str, Any]], step: int) -> None:
        """The last pictures (unless this step has them), HPARAMS and the projector."""
        if self.pictures_step != step:
            self.pictures(step)
        log_final(
            self.writer, self.model, self.dataset, config, history, self.run_dir, step, self.seed
        )
