"""``vaekit explore RUN``: write ``RUN/explore.html``, one self-contained offline page.

What the page holds (everything embedded; no network, no Python at view time):

* the decoder as a layer program (:mod:`vaekit.explore.decoder_spec`) with its weights as
  base64 float32, run by a small JavaScript interpreter in the page;
* the test set's posterior means E_q[z|x] ``[N, m]`` (at most ``max_points`` examples), their
  labels, and the inputs themselves (8-bit for images), for the latent map;
* per latent coordinate the KL of its marginal q(z_j|x) from N(0, 1), averaged over the
  whole test split, in nats per example (as ``vaekit evaluate`` computes ``kl_per_dim``):
  the sliders are ordered by it. A plain AE has no KL: its sliders are ordered by the
  variance of its codes over the test split, and the page says so;
* the map's projection: PCA of the posterior means (the first two principal axes, centred
  on their mean), or two chosen coordinates with the other coordinates taken from the
  sliders.

Per-model sections ask the model for its capabilities (:func:`capabilities`): a model that
takes labels (``num_classes``), has several latent layers (``latent_layers``) or a code
book (``codebook_size``) would get a label selector, a layer choice or a code grid. None of
vaekit's models has them yet; a model that declares one is refused with a one-line error
until its page section is written, rather than shown with a control that does nothing.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.explore.decoder_spec import decoder_program, likelihood_mean, run_program

EXPLORE_FILE = "explore.html"
DATA_MARKER = "/*__VAEKIT_EXPLORE_DATA__*/null"
# The in-page decoder must reproduce torch within this (float32 noise, far below 1/255).
SELF_CHECK_TOLERANCE = 1e-4


@dataclass
class Capabilities:
    """What a model offers the explorer beyond "decode a latent vector z [m]".

    Read with ``getattr`` and these defaults, so a model opts in by defining the attribute.
    ``has_kl``: q(z|x) is a distribution (KL per coordinate exists); ``num_classes``: the
    decoder also takes a class label (a label selector); ``latent_layers``: names of the
    latent layers of a hierarchical model (a layer choice); ``codebook_size``: the number of
    codes of a vector-quantised model (a code grid).
    """

    kind: str
    has_kl: bool
    num_classes: int | None = None
    latent_layers: list[str] | None = None
    codebook_size: int | None = None


def capabilities(model: torch.nn.Module) -> Capabilities:
    """The model's :class:`Capabilities`, from the capability flags of the model contract
    (``vaekit.models.base.Model``); attributes a model lacks read as their defaults."""
    config = getattr(model, "config", None)
    has_kl = bool(getattr(model, "has_posterior", False)) and bool(
        getattr(model, "has_likelihood", False)
    )
    layers = getattr(config, "latent_dims", None)  # a hierarchical model's layers
    return Capabilities(
        kind=str(getattr(config, "kind", type(model).__name__.lower())),
        has_kl=has_kl,
        num_classes=model.num_classes if getattr(model, "takes_labels", False) else None,
        latent_layers=[f"z{i + 1}" for i in range(len(layers))] if layers else None,
        codebook_size=(
            getattr(config, "codebook_size", None)
            if getattr(model, "has_codebook", False)
            else None
        ),
    )


def _refuse_unbuilt_sections(caps: Capabilities) -> None:
    for field, what in (
        ("num_classes", "a label selector (conditional model)"),
        ("latent_layers", "a layer choice (hierarchical model)"),
        ("codebook_size", "a code grid (vector-quantised model)"),
    ):
        if getattr(caps, field) is not None:
            raise ValueError(
                f"explore: this {caps.kind} model declares {field}, which needs {what}; the "
                "explorer does not have that section yet"
            )


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _is_image(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[0] in (1, 3)


def _display(dataset, data_info: dict[str, Any] | None) -> dict[str, Any]:
    """How the page shows one decoded example: an image (values clipped to [0, 1], as the
    report's pictures) or a table row, in the user's units when a standardisation is recorded."""
    shape = tuple(dataset.shape)
    if _is_image(shape):
        return {"kind": "image", "c": shape[0], "h": shape[1], "w": shape[2]}
    d = math.prod(shape)
    info = data_info or dataset.info()
    columns = info.get("columns") or [str(j + 1) for j in range(d)]
    transform = info.get("transform") or {}
    display: dict[str, Any] = {"kind": "table", "columns": [str(c) for c in columns][:d]}
    if transform.get("kind") == "standardize":
        display["mean"] = [float(v) for v in np.ravel(transform["mean"])]
        display["std"] = [float(v) for v in np.ravel(transform["std"])]
        display["units"] = "the data's own units (the standardisation undone)"
    else:
        display["units"] = "model units"
    return display


@torch.no_grad()
def _encode_means(model, x: torch.Tensor, has_kl: bool, batch: int = 1000):
    """Posterior means (or AE codes) ``[N, m]`` and, for a model with a KL, the marginal KL
    per coordinate ``[N, m]`` in nats, both from the model's ``latent_moments`` (the same
    numbers ``vaekit evaluate`` averages into ``kl_per_dim``)."""
    mus, kls = [], []
    for start in range(0, x.shape[0], batch):
        moments = model.latent_moments(x[start : start + batch])
        mus.append(moments.mean.double())
        if has_kl and moments.kl_per_dim is not None:
            kls.append(moments.kl_per_dim.double())
    return torch.cat(mus), (torch.cat(kls) if kls else None)


def _projection(mu: np.ndarray, axes: tuple[int, int] | None) -> dict[str, Any]:
    """The map's 2-D coordinates of ``mu [N, m]`` and how to go back from the map to z.

    PCA: a map point (a, b) is z = centre + a v1 + b v2 (v1, v2 the top principal axes of the
    posterior means). Axes (i, j): the map shows z_i, z_j; the other coordinates are the
    sliders' values.
    """
    m = mu.shape[1]
    if axes is not None:
        i, j = axes
        for a in (i, j):
            if not 0 <= a < m:
                raise ValueError(f"--axes: coordinate {a} does not exist (latent_dim is {m})")
        if i == j:
            raise ValueError("--axes: give two different coordinates")
        return {"kind": "axes", "axes": [i, j], "coords": mu[:, [i, j]]}
    centre = mu.mean(axis=0)
    if m == 1:
        components = np.zeros((2, 1))
        components[0, 0] = 1.0
        explained = [1.0, 0.0]
    else:
        _, s, vt = np.linalg.svd(mu - centre, full_matrices=False)
        components = vt[:2]
        if components.shape[0] < 2:
            components = np.vstack([components, np.zeros((1, m))])
        var = s**2
        explained = (var[:2] / max(var.sum(), 1e-300)).tolist()
    coords = (mu - centre) @ components.T
    return {
        "kind": "pca",
        "centre": centre.tolist(),
        "components": components.tolist(),
        "explained": explained,
        "coords": coords,
    }


def build_explorer(
    run_dir: str | Path,
    axes: tuple[int, int] | None = None,
    max_points: int = 1000,
    data_dir: str | None = None,
    seed: int = 0,
) -> tuple[str, dict[str, Any]]:
    """The explorer page for a run as an HTML string, and the data embedded in it (with the
    arrays as numpy arrays under ``arrays``, for tests)."""
    from vaekit.checkpoint import read_descriptor
    from vaekit.evaluate import load_run

    run_dir = Path(run_dir)
    descriptor = read_descriptor(run_dir)
    model, dataset = load_run(run_dir, data_dir)
    model = model.float().eval()
    caps = capabilities(model)
    _refuse_unbuilt_sections(caps)
    m = model.latent_dim
    mean_kind = likelihood_mean(model.likelihood)
    layers, tensors = decoder_program(model.decoder, m, tuple(model.likelihood.param_shape))

    # Self-check: the program must reproduce the decoder (catches a container whose forward
    # is not the plain sequence of its children).
    probe = torch.randn(4, m, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model.decode_mean(probe).flatten(1)
    got = run_program(layers, tensors, mean_kind, probe)
    if not torch.allclose(got, want, atol=SELF_CHECK_TOLERANCE, rtol=SELF_CHECK_TOLERANCE):
        raise ValueError(
            "explore: the in-page decoder program does not reproduce this decoder (max error "
            f"{float((got - want).abs().max()):.3g}); its forward is not a plain layer sequence"
        )

    x_test = dataset.fixed("test", seed=seed).float()
    if x_test.shape[0] == 0:
        raise ValueError(f"explore: the test split of {dataset.name!r} is empty")
    mu, kl = _encode_means(model, x_test, caps.has_kl)
    if caps.has_kl:
        stat = kl.mean(dim=0)  # nats per example, per coordinate, whole test split
        stat_kind = "kl"
    else:
        stat = mu.var(dim=0, unbiased=False)  # squared latent units
        stat_kind = "variance"
    order = torch.argsort(stat, descending=True, stable=True).tolist()

    n = min(max_points, x_test.shape[0])
    mu_np = mu.numpy()
    points_mu = mu_np[:n].astype(np.float32)
    projection = _projection(mu_np, axes)
    coords = np.asarray(projection.pop("coords"))[:n].astype(np.float32)
    labels = dataset.test.y
    label_list = None
    if labels is not None and not labels.is_floating_point():
        label_list = [int(v) for v in labels[:n].tolist()]

    display = _display(dataset, descriptor.get("data"))
    x_points = x_test[:n].flatten(1).numpy()
    if display["kind"] == "image":
        inputs = {
            "encoding": "u8",
            "data": _b64(np.rint(np.clip(x_points, 0, 1) * 255).astype(np.uint8)),
        }
    else:
        inputs = {"encoding": "f32", "data": _b64(x_points.astype(np.float32))}

    lo = np.minimum(-3.0, mu_np.min(axis=0)) if caps.has_kl else None
    hi = np.maximum(3.0, mu_np.max(axis=0)) if caps.has_kl else None
    if not caps.has_kl:  # an AE's codes follow no prior: the codes' own spread
        centre, spread = mu_np.mean(axis=0), mu_np.std(axis=0) + 1e-6
        lo = np.minimum(centre - 3 * spread, mu_np.min(axis=0))
        hi = np.maximum(centre + 3 * spread, mu_np.max(axis=0))

    offsets, blobs, offset = [], [], 0
    for t in tensors:
        flat = t.numpy().ravel()
        offsets.append([offset, flat.size])
        blobs.append(flat)
        offset += flat.size
    weights = np.concatenate(blobs) if blobs else np.zeros(0, np.float32)

    data = {
        "title": f"vaekit explorer: {run_dir.name} ({dataset.name})",
        "run": run_dir.name,
        "dataset": dataset.name,
        "capabilities": asdict(caps),
        "latent_dim": m,
        "display": display,
        "decoder": {
            "layers": layers,
            "mean": mean_kind,
            "tensors": offsets,
            "weights": _b64(weights.astype(np.float32)),
        },
        "stat_kind": stat_kind,
        "stat": stat.tolist(),
        "stat_examples": int(x_test.shape[0]),
        "order": order,
        "slider_lo": lo.tolist(),
        "slider_hi": hi.tolist(),
        "map": projection,
        "points": {
            "n": n,
            "mu": _b64(points_mu),
            "coords": _b64(coords),
            "labels": label_list,
            "inputs": inputs,
        },
    }
    template = resources.files("vaekit.explore").joinpath("template.html").read_text("utf-8")
    if DATA_MARKER not in template:
        raise RuntimeError("vaekit/explore/template.html has lost its data marker")
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = template.replace("__VAEKIT_TITLE__", _html_escape(data["title"]))
    page = page.replace(DATA_MARKER, payload)
    data["arrays"] = {"mu": points_mu, "coords": coords, "weights": weights}
    return page, data


def _html_escape(text: str) -> str:
    import html

    return html.escape(text)


def write_explorer(
    run_dir: str | Path,
    output: str | Path | None = None,
    axes: tuple[int, int] | None = None,
    max_points: int = 1000,
    data_dir: str | None = None,
    seed: int = 0,
) -> Path:
    """Write the explorer page (default ``RUN/explore.html``) atomically; returns its path."""
    from vaekit.checkpoint import atomic_write_bytes

    page, _ = build_explorer(run_dir, axes, max_points, data_dir, seed)
    path = Path(output) if output is not None else Path(run_dir) / EXPLORE_FILE
    atomic_write_bytes(path, page.encode("utf-8"))
    return path
