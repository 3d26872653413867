"""The space and unit of a likelihood figure: the data as given or the model's inputs, nats
per example or bits per dimension, and its standard error.

* Spaces. ``nll``, ``elbo`` and ``log_px_z`` are of the data *as given* (``space`` says
  which): the model sees x = transform(v), and the change of variables adds the transform's
  term c = ``Transform.log_data_scale`` (log p(v) = log p(x) - c): sum_d log std_d for a
  standardised table (its own units), D log(levels) for dequantised levels (then nll is the
  dequantisation bound on -log P(v) of the discrete levels, Theis et al. 2016), 0 for binary
  data. Where c != 0 the model-space figures are kept as ``nll_model_space``,
  ``elbo_model_space``, ``log_px_z_model_space``, named by ``model_space``.
* ``bits_per_dim``: the nll of the *discrete* data in bits per dimension. For a discrete
  likelihood (a discretised logistic on the levels themselves, or Bernoulli on binary data):
  exactly nll / (D log 2). For a density on dequantised data with ``levels`` grey levels
  scaled to [0, 1]: (nll_model_space + D log(levels)) / (D log 2), the dequantisation bound
  of Theis et al. (2016), which equals the data-space nll / (D log 2).
  ``bits_per_dim_basis`` says which.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vaekit.data import Dataset


def standard_error(values: torch.Tensor) -> float:
    """Standard error of the mean: ``std(values, ddof=1) / sqrt(N)``; nan for N < 2."""
    n = values.numel()
    if n < 2:
        return float("nan")
    return float(values.double().std(unbiased=True) / math.sqrt(n))


def likelihood_results(log_px: torch.Tensor, dataset: Dataset, discrete: bool) -> dict[str, Any]:
    """nll ± standard error and bits/dim from per-example model-space log p(x) ``[N]``
    (nats); ``discrete``: the likelihood is a probability mass of the levels."""
    nll = float(-log_px.mean())
    result: dict[str, Any] = {"nll": nll, "nll_stderr": standard_error(log_px)}
    bpd = bits_per_dim(nll, dataset, discrete=discrete)
    if bpd is not None:
        result["bits_per_dim"] = bpd
        result["bits_per_dim_basis"] = bits_per_dim_basis(dataset, discrete)
        result["bits_per_dim_stderr"] = result["nll_stderr"] / (
            math.prod(dataset.shape) * math.log(2.0)
        )
    return result


def data_space(dataset: Dataset) -> str:
    """A one-line label: which space ``nll``/``elbo`` are in (see the module doc)."""
    return dataset.transform.data_space()


def to_data_space(result: dict[str, Any], dataset: Dataset) -> None:
    """Turn ``result``'s model-space nll/ELBO into the data as given (in place): add the
    transform's change-of-variables term; keep the model-space figures, named as such."""
    c = dataset.transform.log_data_scale(tuple(dataset.shape))
    result["space"] = data_space(dataset)
    if c == 0.0:
        return
    result["nll_model_space"] = result["nll"]
    result["elbo_model_space"] = result["elbo"]
    result["log_px_z_model_space"] = result["log_px_z"]
    result["model_space"] = dataset.transform.space
    result["log_data_scale"] = c
    result["nll"] = result["nll"] + c
    result["elbo"] = result["elbo"] - c
    result["log_px_z"] = result["log_px_z"] - c


def bits_per_dim(nll: float, dataset: Dataset, discrete: bool = False) -> float | None:
    """Convert an nll in nats per example to bits per dimension of the discrete data.

    ``discrete``: the nll is of a probability mass function of the levels (the model's
    likelihood is discrete), so bits/dim = nll / (D log 2) exactly; the data must then be the
    levels, not dequantised values. Otherwise the nll is of a density: on dequantised data the
    dequantisation bound (nll + D log(levels)) / (D log 2) (Theis et al. 2016). Returns None
    where no conversion is honest (a density on continuous or un-dequantised data).
    """
    basis = bits_per_dim_basis(dataset, discrete)
    if basis is None:
        return None
    d = math.prod(dataset.shape)
    if basis.startswith("dequantisation"):
        return (nll + d * math.log(dataset.transform.levels)) / (d * math.log(2.0))
    return nll / (d * math.log(2.0))


def bits_per_dim_basis(dataset: Dataset, discrete: bool = False) -> str | None:
    """How :func:`bits_per_dim` converts for this data and likelihood, in words (None: no
    honest conversion)."""
    kind = dataset.transform.kind
    if discrete:
        if kind == "dequantize":
            raise ValueError(
                "a discrete likelihood's nll is of the levels, but the data was dequantised: "
                "evaluate it on dataset.as_levels(...)"
            )
        return "exact: a probability of the discrete data"
    if kind == "dequantize":
        return f"dequantisation bound (Theis et al. 2016), {dataset.transform.levels} levels"
    if dataset.support == "binary":
        return "exact: binary data"
    return None
