"""The explorer's spaces: what one set of sliders, one map and one decoder move.

A space is one latent vector the user controls: its sliders (ordered by a statistic over the
test set), the map's projection of the test set's codes, and the decoder program from it to
E[x|.]. What a model gets is read from the model contract (``vaekit.models.base``):

* one latent group (``latent_layers`` has one entry): one space over z (VAE, AE); a model
  that takes labels decodes [z, one_hot(y)], and its sliders are ordered by the KL of
  q(z_j|x,y) from its prior p(z_j) or p(z_j|y) (conditional VAE);
* several latent groups (``latent_layers``: the hierarchical VAEs): decode by group, one
  space per group, each with its own decoder (``group_decoder``) that holds the other
  groups at their prior means: the groups below at the means of their conditionals, down to
  x. The map shows the test set's posterior means E_q[z_l|x] (the model's own
  ``latent_moments``), and the sliders are ordered by their variance over the test set (the
  activity of Burda et al. 2015). The top group is the default. A model whose whole
  generative path reads the full code (``code_decoder``: the deep hierarchical VAE, dense
  and convolutional) can also hold the other groups at given values: a test example's
  posterior means, or an ancestral draw from the prior (``held``: that decoder, each
  group's offset in the code, and the draws);
* a code book (``codebook_size``: the VQ-VAE): one space over the quantised code z_q, and a
  grid of codes, one selector over the K code-book entries per code position.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vaekit.distributions import DiagonalGaussian
from vaekit.explore.decoder_spec import Programs

# Prior draws a page carries for holding the other groups (the page cycles through them).
HELD_DRAWS = 16


def model_spaces(
    model, programs: Programs, x_test, y_test, axes, n: int, seed: int
) -> tuple[list[dict], int, dict | None, dict | None]:
    """The spaces of ``model``'s page, the index of the one shown first, the VQ-VAE's code
    grid and the held groups' decoder (``held``; each None for the other models).
    ``x_test [N, ...]``, ``y_test [N]`` or None, the map and the page's points show the
    first ``n``."""
    param_shape = tuple(model.likelihood.param_shape)
    if model.codebook_size is not None:
        space, grid = _codebook_space(model, programs, x_test, axes, n, param_shape)
        return [space], 0, grid, None
    if len(model.latent_layers) > 1:
        spaces = _group_spaces(model, programs, x_test, axes, n, param_shape, seed)
        held = _held(model, programs, param_shape, seed)
        return spaces, len(spaces) - 1, None, held  # the top group: the whole generative path
    space = _single_space(model, programs, x_test, y_test, axes, n, param_shape)
    return [space], 0, None, None


@torch.no_grad()
def _held(model, programs: Programs, param_shape, seed: int) -> dict | None:
    """The full code's decoder and ``HELD_DRAWS`` ancestral prior draws ``[k, latent_dim]``
    (float32), for a model with a ``code_decoder``; None without one."""
    decoder = model.code_decoder()
    if decoder is None:
        return None
    m = model.latent_dim
    layers = programs.add(decoder.eval(), m, param_shape, model.decode_mean)
    draws = model.sample_codes(HELD_DRAWS, torch.Generator().manual_seed(seed))
    sizes = model.latent_layers
    offsets = [sum(sizes[:g]) for g in range(len(sizes))]
    return {"layers": layers, "input_dim": m, "offsets": offsets, "draws": draws.float().numpy()}


def has_kl(model) -> bool:
    """Whether q(z|x) is a distribution with a KL per coordinate."""
    return model.has_posterior and model.has_likelihood


@torch.no_grad()
def _encode_means(model, x: torch.Tensor, y: torch.Tensor | None, with_kl: bool, batch: int = 1000):
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
        if not with_kl:
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


def _single_space(model, programs, x_test, y_test, axes, n, param_shape) -> dict:
    """The VAE, AE and conditional VAE: one latent z ``[m]`` (and a label for the last)."""
    m = model.latent_dim
    kl_known = has_kl(model)
    mu_t, kl, against = _encode_means(model, x_test, y_test, kl_known)
    mu = mu_t.numpy()
    decoder = model.group_decoder(0)
    if model.takes_labels:
        C = model.num_classes

        def reference(zy: torch.Tensor) -> torch.Tensor:  # [z, one_hot(y)] -> E[x|z, y]
            return model.decode_mean(zy[:, :m], y=zy[:, m:].argmax(dim=1))

        # The check's label part must be a label: one-hot rows of random classes.
        generator = torch.Generator().manual_seed(0)
        y = torch.randint(0, C, (4,), generator=generator)
        z = torch.randn(4, m, generator=generator)
        probe = torch.cat([z, torch.nn.functional.one_hot(y, C).float()], dim=1)
        layers = programs.add(decoder, m + C, param_shape, reference, probe)
        input_dim = m + C
    else:
        layers = programs.add(decoder, m, param_shape, model.decode_mean)
        input_dim = m
    if kl_known:
        stat, stat_kind = kl.mean(dim=0), "kl"  # nats per example, per coordinate
        prior_lo, prior_hi = np.full(m, -3.0), np.full(m, 3.0)
        if model.takes_labels:
            prior = model.prior_given(torch.arange(model.num_classes))
            if isinstance(prior, DiagonalGaussian):  # p(z|y): each class's +-3 sds
                loc, sd = prior.loc.detach().double(), (0.5 * prior.log_var.detach()).exp()
                prior_lo = np.minimum(-3.0, (loc - 3 * sd).min(0).values.numpy())
                prior_hi = np.maximum(3.0, (loc + 3 * sd).max(0).values.numpy())
        lo, hi = _ranges(mu, prior_lo, prior_hi)
    else:  # an AE's codes follow no prior: the codes' own spread
        stat, stat_kind = mu_t.var(dim=0, unbiased=False), "variance"  # squared latent units
        lo, hi = _ranges(mu)
    return _space("z", mu, stat, stat_kind, lo, hi, axes, n, layers, input_dim, kl_against=against)


def _group_spaces(model, programs, x_test, axes, n, param_shape, seed) -> list:
    """Decode by group: one space per latent group of a hierarchical model (module doc)."""
    dims = model.latent_layers
    with torch.random.fork_rng(devices=[]):  # latent_moments draws: a fixed, private seed
        torch.manual_seed(seed)
        mu_all, _, _ = _encode_means(model, x_test, None, False)
    spaces = []
    for group, mu_t in enumerate(mu_all.split(dims, dim=1)):
        m_l = dims[group]
        path = model.group_decoder(group).eval()

        def reference(z: torch.Tensor, path=path) -> torch.Tensor:
            return model.likelihood.mean(path(z))

        layers = programs.add(path, m_l, param_shape, reference)
        mu = mu_t.numpy()
        top = group == len(dims) - 1
        prior = (np.full(m_l, -3.0), np.full(m_l, 3.0)) if top else (None, None)
        lo, hi = _ranges(mu, *prior)
        stat = mu_t.var(dim=0, unbiased=False)  # activity: Cov_x(E_q[z_j|x]), squared units
        spaces.append(_space(f"z{group + 1}", mu, stat, "activity", lo, hi, axes, n, layers, m_l))
    return spaces


@torch.no_grad()
def _codebook_space(model, programs, x_test, axes, n, param_shape) -> tuple[dict, dict]:
    """The VQ-VAE: the decoder reads the n chosen code-book vectors ``[n * d]``; the map is
    the PCA of the test set's quantised codes. Returns the space and the code grid's data."""
    K = model.codebook_size
    codes = torch.cat([model.encode(x_test[i : i + 1000]) for i in range(0, len(x_test), 1000)])
    num_latents = codes.shape[1]
    vectors = model.quantise(torch.arange(K)[:, None])  # [K, d]: entry k of the code book
    z_q = model.quantise(codes).double()  # [N, n * d]
    mu = z_q.numpy()
    decoder = model.group_decoder(0)
    layers = programs.add(decoder, model.latent_dim, param_shape, model.decode_mean)
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
