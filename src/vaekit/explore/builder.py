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

Per-model sections (a label selector, one space per latent group, a grid of codes) come
from the model contract: :mod:`vaekit.explore.spaces`.
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

from vaekit.explore.decoder_spec import Programs
from vaekit.explore.spaces import has_kl, model_spaces

EXPLORE_FILE = "explore.html"
DATA_MARKER = "/*__VAEKIT_EXPLORE_DATA__*/null"


@dataclass
class Capabilities:
    """What the page shows beyond "decode a latent vector z [m]", as the model contract
    declares it: ``has_kl``: q(z|x) is a distribution (a KL per coordinate exists);
    ``num_classes``: the decoder also takes a class label (a label selector);
    ``latent_layers``: the names of the latent groups of a hierarchical model (a group
    choice); ``codebook_size``: the number of codes of a vector-quantised model (a code grid).
    """

    kind: str
    has_kl: bool
    num_classes: int | None = None
    latent_layers: list[str] | None = None
    codebook_size: int | None = None


def capabilities(model: torch.nn.Module) -> Capabilities:
    """The model's :class:`Capabilities`, read from the model contract
    (``vaekit.models.base.Model``)."""
    groups = len(model.latent_layers)
    return Capabilities(
        kind=model.name,
        has_kl=has_kl(model),
        num_classes=model.num_classes if model.takes_labels else None,
        latent_layers=[f"z{i + 1}" for i in range(groups)] if groups > 1 else None,
        codebook_size=model.codebook_size,
    )


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _is_image(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[0] in (1, 3)


def _display(dataset, data_info: dict[str, Any] | None, likelihood) -> dict[str, Any]:
    """How the page shows one decoded example: an image (values clipped to [0, 1], as the
    report's pictures) or a table row, in the user's units when a standardisation is recorded;
    a mixed table's row in its types, each column's E[v|z] from its head (``page_heads``)."""
    if hasattr(likelihood, "page_heads"):
        heads = likelihood.page_heads()
        return {
            "kind": "table",
            "columns": [h["name"] for h in heads],
            "heads": heads,
            "outputs": math.prod(likelihood.param_shape),
            "units": "the table's own units: a real or positive column's mean, a count's "
            "mean rounded, a category's most probable value (its probability)",
        }
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


def build_explorer(
    run_dir: str | Path,
    axes: tuple[int, int] | None = None,
    max_points: int = 1000,
    data_dir: str | None = None,
    seed: int = 0,
) -> tuple[str, dict[str, Any]]:
    """The explorer page for a run as an HTML string, and the data embedded in it.

    The returned dict also holds, for tests, the default space's fields at the top level
    (``stat``, ``order``, ``map``, ...) and its arrays as numpy arrays under ``arrays``
    (``mu``, ``coords``, ``weights``; ``spaces``: every space's ``mu`` and ``coords``)."""
    from vaekit.checkpoint import read_descriptor
    from vaekit.evaluate import load_run

    run_dir = Path(run_dir)
    descriptor = read_descriptor(run_dir)
    model, dataset = load_run(run_dir, data_dir)
    model = model.float().eval()
    caps = capabilities(model)
    programs = Programs(model.likelihood)

    x_test = dataset.fixed("test", seed=seed).float()
    if x_test.shape[0] == 0:
        raise ValueError(f"explore: the test split of {dataset.name!r} is empty")
    n = min(max_points, x_test.shape[0])
    labels = dataset.test.y
    if labels is not None and labels.is_floating_point():
        labels = None
    y_test = None
    if caps.num_classes is not None:
        if labels is None:
            raise ValueError(
                f"explore: this {caps.kind} model is conditioned on labels, but the test split "
                f"of {dataset.name!r} has none"
            )
        y_test = labels.long()

    spaces, default, grid, held = model_spaces(model, programs, x_test, y_test, axes, n, seed)

    label_list = [int(v) for v in labels[:n].tolist()] if labels is not None else None
    display = _display(dataset, descriptor.get("data"), model.likelihood)
    x_points = x_test[:n].flatten(1).numpy()
    if "heads" in display:  # a mixed table's rows as their cell texts ("" where missing)
        from vaekit.data.tables import encoded_cells

        rows = dataset.fixed("test", seed=seed)[:n].double().numpy()
        inputs = {"encoding": "text", "rows": encoded_cells(rows, model.likelihood.columns)}
    elif display["kind"] == "image":
        inputs = {
            "encoding": "u8",
            "data": _b64(np.rint(np.clip(x_points, 0, 1) * 255).astype(np.uint8)),
        }
    else:
        inputs = {"encoding": "f32", "data": _b64(x_points.astype(np.float32))}

    offsets, blobs, offset = [], [], 0
    for t in programs.tensors:
        flat = t.numpy().ravel()
        offsets.append([offset, flat.size])
        blobs.append(flat)
        offset += flat.size
    weights = np.concatenate(blobs) if blobs else np.zeros(0, np.float32)

    arrays = {"spaces": [{"mu": sp["mu"], "coords": sp["coords"]} for sp in spaces]}
    page_spaces = []
    for sp in spaces:
        page_spaces.append(sp | {"mu": _b64(sp["mu"]), "coords": _b64(sp["coords"])})
    data = {
        "title": f"vaekit explorer: {run_dir.name} ({dataset.name})",
        "run": run_dir.name,
        "dataset": dataset.name,
        "capabilities": asdict(caps),
        "display": display,
        "decoder": {
            "mean": programs.mean_kind,
            "tensors": offsets,
            "weights": _b64(weights.astype(np.float32)),
        },
        "stat_examples": int(x_test.shape[0]),
        "spaces": page_spaces,
        "default_space": default,
        "code_grid": grid,
        "held": None if held is None else held | {"draws": _b64(held["draws"])},
        "points": {
            "n": n,
            "labels": label_list,
            "class_names": (descriptor.get("data") or dataset.info()).get("classes"),
            "inputs": inputs,
        },
    }
    template = resources.files("vaekit.explore").joinpath("template.html").read_text("utf-8")
    if DATA_MARKER not in template:
        raise RuntimeError("vaekit/explore/template.html has lost its data marker")
    # one substitution each, in the template's own text: a name that spells a marker stays text
    head, tail = template.split(DATA_MARKER, 1)
    head = head.replace("__VAEKIT_TITLE__", _html_escape(data["title"]), 1)
    page = head + script_json(data) + tail
    main_space = spaces[default]
    data.update({k: v for k, v in main_space.items() if k not in ("mu", "coords")})
    data["decoder"]["layers"] = main_space["layers"]
    arrays.update(mu=main_space["mu"], coords=main_space["coords"], weights=weights)
    if held is not None:
        arrays["held_draws"] = held["draws"]
    data["arrays"] = arrays
    return page, data


def script_json(value) -> str:
    """``value`` as JSON safe inside an HTML ``<script>``: ``<``, ``>`` and ``&`` are written
    as ``\\u003c``, ``\\u003e``, ``\\u0026`` (the same string to JavaScript), so no text in
    it (a column named ``</script>`` or ``<!--<script>``) can end or re-open the element."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


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
    from vaekit.outputs import check_outputs
    from vaekit.rundir import atomic_write_bytes

    own = Path(run_dir) / EXPLORE_FILE
    path = Path(output) if output is not None else own
    check_outputs({"output": path}, inputs=[run_dir], own=[own])
    page, _ = build_explorer(run_dir, axes, max_points, data_dir, seed)
    atomic_write_bytes(path, page.encode("utf-8"))
    return path
