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

Per-model sections ask the model for its capabilities (:func:`capabilities`):

* a model that takes labels (``num_classes``: the conditional VAE) gets a label selector; its
  in-page decoder reads [z, one_hot(y)], the map's points are the means of q(z|x,y) at each
  example's own label, and its sliders are ordered by the KL of q(z_j|x,y) from its prior
  p(z_j) or p(z_j|y);
* a model with several latent layers (``latent_layers``: the hierarchical VAE) gets a layer
  choice. Each layer is a "space" of its own (sliders, map, decoder): moving layer l's
  coordinates decodes along the generative path's conditional means, z_{l-1} = E[z_{l-1}|z_l]
  down to z_1, then E[x|z_1]; for z_1 that is the decoder itself. The map shows the test
  set's posterior means E_q[z_l|x] (the model's own ``latent_moments``), and the sliders are
  ordered by their variance over the test set (the activity of Burda et al. 2015);
* a model with a code book (``codebook_size``: the VQ-VAE) gets a grid of codes: one selector
  over the K code-book entries per code position; the decoder reads the chosen entries, and
  the map (PCA of the test set's quantised codes) loads an example's codes when clicked.
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

from vaekit.explore.decoder_spec import (
    TakeFirst,
    decoder_program,
    likelihood_mean,
    run_program,
)

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


def _require(model, caps: Capabilities, what: str, *attributes: str) -> None:
    """One line naming what a model that declares a section lacks for it."""
    missing = [a for a in attributes if not hasattr(model, a)]
    if missing:
        raise ValueError(
            f"explore: this {caps.kind} model declares {what}, but has no "
            f"{', '.join(missing)}: the explorer cannot build that section"
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
def _encode_means(model, x: torch.Tensor, y: torch.Tensor | None, has_kl: bool, batch: int = 1000):
    """Posterior means (or AE codes) ``[N, m]``; for a model with a KL, the KL of each
    coordinate's marginal q(z_j|x) from its prior, ``[N, m]`` in nats: the model's own
    ``kl_per_dim`` where it has one (against N(0, 1), the same numbers ``vaekit evaluate``
    averages), else against a diagonal Gaussian prior the model states per example
    (``prior_given(y)``: the conditional VAE's p(z|y)); and which prior that was."""
    mus, kls = [], []
    against = "N(0, 1)"
    for start in range(0, x.shape[0], batch):
        yb = y[start : start + batch] if y is not None else None
        moments = model.latent_moments(x[start : start + batch], y=yb)
        mus.append(moments.mean.double())
        if not has_kl:
            continue
        if moments.kl_per_dim is not None:
            kls.append(moments.kl_per_dim.double())
        else:
            against = "p(z_j|y)"
            prior = model.prior_given(yb)
            loc, log_var = prior.loc.double(), prior.log_var.double()
            mean = moments.mean.double()
            var = torch.diagonal(moments.covariance, dim1=-2, dim2=-1).double()
            # KL(N(a, s2) || N(b, t2)) = (log t2 - log s2 + (s2 + (a - b)^2) / t2 - 1) / 2
            kls.append(0.5 * (log_var - var.log() + (var + (mean - loc) ** 2) / log_var.exp() - 1))
    return torch.cat(mus), (torch.cat(kls) if kls else None), against


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


_TENSOR_KEYS = {
    "linear": ("w", "b"),
    "conv2d": ("weight", "bias"),
    "conv_transpose2d": ("weight", "bias"),
}


class _Programs:
    """The layer programs of a page, their tensors in one shared list (one weights blob)."""

    def __init__(self, mean_kind: str) -> None:
        self.mean_kind = mean_kind
        self.tensors: list[torch.Tensor] = []  # kept alive, so data pointers stay unique
        self._seen: dict[tuple, int] = {}

    def add(
        self,
        module: torch.nn.Module,
        input_dim: int,
        output_shape: tuple[int, ...],
        reference,
        probe: torch.Tensor | None = None,
    ) -> list:
        """The program of ``module`` (input ``[input_dim]``), checked against ``reference``:
        a function ``[B, input_dim] -> E[x|.] [B, ...]`` (the model's own decoder), at
        ``probe [B, input_dim]`` (default: standard normal draws)."""
        layers, tensors = decoder_program(module, input_dim, tuple(output_shape))
        # Self-check: the program must reproduce the model (catches a container whose
        # forward is not the plain sequence of its children).
        if probe is None:
            probe = torch.randn(4, input_dim, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            want = reference(probe).flatten(1)
        got = run_program(layers, tensors, self.mean_kind, probe)
        if not torch.allclose(got, want, atol=SELF_CHECK_TOLERANCE, rtol=SELF_CHECK_TOLERANCE):
            raise ValueError(
                "explore: the in-page decoder program does not reproduce this decoder (max "
                f"error {float((got - want).abs().max()):.3g}); its forward is not a plain "
                "layer sequence"
            )
        # A tensor two programs share (the x decoder in every layer's path of a hierarchical
        # model) is stored once.
        index = [self._index(t) for t in tensors]
        for layer in layers:
            # A conv layer's "w" is its input width, not a tensor: only these keys index.
            for key in _TENSOR_KEYS.get(layer["type"], ()):
                if layer.get(key) is not None:
                    layer[key] = index[layer[key]]
        return layers

    def _index(self, t: torch.Tensor) -> int:
        key = (t.data_ptr(), tuple(t.shape), tuple(t.stride()))
        if key not in self._seen:
            self._seen[key] = len(self.tensors)
            self.tensors.append(t)
        return self._seen[key]

    def add_tensor(self, t: torch.Tensor) -> int:
        return self._index(t.detach().to(torch.float32).cpu().contiguous())


def _space(
    name: str,
    mu: np.ndarray,
    stat: torch.Tensor,
    stat_kind: str,
    lo: np.ndarray,
    hi: np.ndarray,
    axes: tuple[int, int] | None,
    n: int,
    decoder_layers: list,
    input_dim: int,
    **extra: Any,
) -> dict[str, Any]:
    """One controllable latent ``[m]``: its sliders (ordered by ``stat``), map and decoder."""
    projection = _projection(mu, axes)
    coords = np.asarray(projection.pop("coords"))[:n].astype(np.float32)
    return {
        "name": name,
        "latent_dim": int(mu.shape[1]),
        "input_dim": input_dim,
        "layers": decoder_layers,
        "stat_kind": stat_kind,
        "stat": stat.tolist(),
        "order": torch.argsort(stat, descending=True, stable=True).tolist(),
        "slider_lo": np.asarray(lo, dtype=np.float64).tolist(),
        "slider_hi": np.asarray(hi, dtype=np.float64).tolist(),
        "map": projection,
        "mu": mu[:n].astype(np.float32),
        "coords": coords,
        **extra,
    }


def _ranges(mu: np.ndarray, prior_lo=None, prior_hi=None) -> tuple[np.ndarray, np.ndarray]:
    """Slider ranges: the prior's +-3 standard deviations where there is a prior (``prior_lo``,
    ``prior_hi``), else the codes' mean +-3 standard deviations; always covering every
    test example's value."""
    if prior_lo is None:
        centre, spread = mu.mean(axis=0), mu.std(axis=0) + 1e-6
        prior_lo, prior_hi = centre - 3 * spread, centre + 3 * spread
    return np.minimum(prior_lo, mu.min(axis=0)), np.maximum(prior_hi, mu.max(axis=0))


def _single_space(model, caps, programs, x_test, y_test, axes, n, param_shape) -> dict:
    """The VAE, AE and conditional VAE: one latent z ``[m]`` (and a label for the last)."""
    m = model.latent_dim
    mu_t, kl, against = _encode_means(model, x_test, y_test, caps.has_kl)
    mu = mu_t.numpy()
    if caps.num_classes is not None:
        C = caps.num_classes

        def reference(zy: torch.Tensor) -> torch.Tensor:  # [z, one_hot(y)] -> E[x|z, y]
            return model.decode_mean(zy[:, :m], y=zy[:, m:].argmax(dim=1))

        # The check's label part must be a label: one-hot rows of random classes.
        generator = torch.Generator().manual_seed(0)
        y = torch.randint(0, C, (4,), generator=generator)
        z = torch.randn(4, m, generator=generator)
        probe = torch.cat([z, torch.nn.functional.one_hot(y, C).float()], dim=1)
        layers = programs.add(model.decoder, m + C, param_shape, reference, probe)
        input_dim = m + C
    else:
        layers = programs.add(model.decoder, m, param_shape, model.decode_mean)
        input_dim = m
    if caps.has_kl:
        stat, stat_kind = kl.mean(dim=0), "kl"  # nats per example, per coordinate
        prior_lo, prior_hi = np.full(m, -3.0), np.full(m, 3.0)
        if caps.num_classes is not None and hasattr(model, "prior_given"):
            prior = model.prior_given(torch.arange(caps.num_classes))
            if hasattr(prior, "loc"):  # p(z|y): every class's +-3 standard deviations
                loc, sd = prior.loc.detach().double(), (0.5 * prior.log_var.detach()).exp()
                prior_lo = np.minimum(-3.0, (loc - 3 * sd).min(0).values.numpy())
                prior_hi = np.maximum(3.0, (loc + 3 * sd).max(0).values.numpy())
        lo, hi = _ranges(mu, prior_lo, prior_hi)
    else:  # an AE's codes follow no prior: the codes' own spread
        stat, stat_kind = mu_t.var(dim=0, unbiased=False), "variance"  # squared latent units
        lo, hi = _ranges(mu)
    return _space("z", mu, stat, stat_kind, lo, hi, axes, n, layers, input_dim, kl_against=against)


def generative_path(model, layer: int) -> torch.nn.Sequential:
    """A hierarchical model's decoder from layer ``layer`` (0 = z_1, next to x) through the
    conditional means: E[z_{l-1}|z_l] = the mean half of ``model.down[l-1]``'s head, down to
    z_1, then the decoder of x. Input ``[m_l]``, output the likelihood's parameters."""
    steps: list[torch.nn.Module] = []
    dims = list(model.config.latent_dims)
    for i in range(layer - 1, -1, -1):
        down = model.down[i]  # p(z_i|z_{i+1}): an MLP body, then a Linear head [mu, log_var]
        steps += [down.body, down.head, TakeFirst(dims[i])]
    steps.append(model.decoder)
    return torch.nn.Sequential(*steps)


def _hierarchical_spaces(model, caps, programs, x_test, axes, n, param_shape, seed) -> list:
    """One space per stochastic layer of a hierarchical model (module docstring)."""
    dims = list(model.config.latent_dims)
    with torch.random.fork_rng(devices=[]):  # latent_moments draws: a fixed, private seed
        torch.manual_seed(seed)
        mu_all, _, _ = _encode_means(model, x_test, None, False)
    spaces = []
    offset = 0
    for layer, m_l in enumerate(dims):
        mu_t = mu_all[:, offset : offset + m_l]
        offset += m_l
        path = generative_path(model, layer).eval()

        def reference(z: torch.Tensor, path=path) -> torch.Tensor:
            with torch.no_grad():
                return model.likelihood.mean(path(z))

        layers = programs.add(path, m_l, param_shape, reference)
        mu = mu_t.numpy()
        top = layer == len(dims) - 1
        prior = (np.full(m_l, -3.0), np.full(m_l, 3.0)) if top else (None, None)
        lo, hi = _ranges(mu, *prior)
        stat = mu_t.var(dim=0, unbiased=False)  # activity: Cov_x(E_q[z_j|x]), squared units
        spaces.append(_space(f"z{layer + 1}", mu, stat, "activity", lo, hi, axes, n, layers, m_l))
    return spaces


@torch.no_grad()
def _codebook_space(model, caps, programs, x_test, axes, n, param_shape) -> tuple[dict, dict]:
    """The VQ-VAE: the decoder reads the n chosen code-book vectors ``[n * d]``; the map is
    the PCA of the test set's quantised codes. Returns the space and the code grid's data."""
    K = caps.codebook_size
    codes = torch.cat([model.encode(x_test[i : i + 1000]) for i in range(0, len(x_test), 1000)])
    num_latents = codes.shape[1]
    vectors = model.quantise(torch.arange(K)[:, None])  # [K, d]: entry k of the code book
    z_q = model.quantise(codes).double()  # [N, n * d]
    mu = z_q.numpy()
    layers = programs.add(model.decoder, model.latent_dim, param_shape, model.decode_mean)
    counts = torch.bincount(codes.flatten(), minlength=K).double()
    grid = {
        "num_latents": num_latents,
        "code_dim": int(vectors.shape[1]),
        "codebook_size": K,
        "vectors": programs.add_tensor(vectors),
        # share of the test set's code positions assigned to each entry
        "share": (counts / counts.sum()).tolist(),
        "codes": codes[:n].tolist(),
    }
    lo, hi = _ranges(mu)
    stat = z_q.var(dim=0, unbiased=False)
    space = _space("z_q", mu, stat, "variance", lo, hi, axes, n, layers, model.latent_dim)
    return space, grid


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
    param_shape = tuple(model.likelihood.param_shape)
    programs = _Programs(likelihood_mean(model.likelihood))

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

    grid = None
    if caps.codebook_size is not None:
        _require(model, caps, "a code book", "quantise", "decoder")
        space, grid = _codebook_space(model, caps, programs, x_test, axes, n, param_shape)
        spaces, default = [space], 0
    elif caps.latent_layers is not None:
        _require(model, caps, "latent layers", "down", "decoder")
        spaces = _hierarchical_spaces(model, caps, programs, x_test, axes, n, param_shape, seed)
        default = len(spaces) - 1  # the top layer: the whole generative path
    else:
        spaces = [_single_space(model, caps, programs, x_test, y_test, axes, n, param_shape)]
        default = 0

    label_list = [int(v) for v in labels[:n].tolist()] if labels is not None else None
    display = _display(dataset, descriptor.get("data"))
    x_points = x_test[:n].flatten(1).numpy()
    if display["kind"] == "image":
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
