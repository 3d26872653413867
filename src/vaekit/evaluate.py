"""Honest evaluation: every number is the quantity its name says, with its unit.

* ``nll``: -log p(x) in nats per example, estimated by importance sampling with
  ``num_samples`` draws (Burda et al. 2015); an upper bound on the true nll in expectation
  that tightens as K grows. ``nll_stderr`` is its standard error across examples.
* ``elbo``, ``log_px_z``, ``kl``: nats per example (the ELBO with one Monte-Carlo draw).
* ``bits_per_dim``: the nll of the *discrete* data in bits per dimension. For dequantised
  data with ``levels`` grey levels scaled to [0, 1]: (nll + D log(levels)) / (D log 2),
  the dequantisation bound of Theis et al. (2016); for binary data: nll / (D log 2).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vaekit.data import Dataset
from vaekit.models import VAE


@torch.no_grad()
def evaluate(
    model: VAE,
    dataset: Dataset,
    split: str = "test",
    num_samples: int = 1000,
    batch_size: int = 100,
    chunk_size: int | None = None,
    seed: int = 0,
    max_examples: int | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``split``; returns a JSON-ready dict (see the module doc)."""
    if not isinstance(model, VAE):
        raise ValueError("evaluate needs a VAE: an AE defines no likelihood p(x)")
    model.eval()
    device = next(model.parameters()).device
    x_all = dataset.fixed(split, seed=seed)
    if max_examples is not None:
        x_all = x_all[:max_examples]
    torch.manual_seed(seed)
    log_px, elbo, log_px_z, kl = [], [], [], []
    for start in range(0, x_all.shape[0], batch_size):
        x = x_all[start : start + batch_size].to(device)
        terms = model.elbo(x)
        elbo.append(terms.elbo.cpu())
        log_px_z.append(terms.log_px_z.cpu())
        kl.append(terms.kl.cpu())
        log_px.append(model.log_likelihood(x, num_samples, chunk_size).cpu())
    log_px_t = torch.cat(log_px).double()
    n = log_px_t.numel()
    nll = float(-log_px_t.mean())
    result: dict[str, Any] = {
        "split": split,
        "num_examples": n,
        "num_samples": num_samples,
        "nll": nll,
        "nll_stderr": float(log_px_t.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan"),
        "elbo": float(torch.cat(elbo).double().mean()),
        "log_px_z": float(torch.cat(log_px_z).double().mean()),
        "kl": float(torch.cat(kl).double().mean()),
    }
    bpd = bits_per_dim(nll, dataset)
    if bpd is not None:
        result["bits_per_dim"] = bpd
    result["units"] = {
        "nll": "nats per example, -log p(x) by importance sampling",
        "elbo": "nats per example",
        "log_px_z": "nats per example",
        "kl": "nats per example",
        "bits_per_dim": "bits per dimension of the discrete data",
    }
    return result


def bits_per_dim(nll: float, dataset: Dataset) -> float | None:
    """Convert an nll in nats per example to bits per dimension of the discrete data.

    Returns None where it does not apply (continuous data with no discrete levels).
    """
    d = math.prod(dataset.shape)
    kind = dataset.transform.kind
    if kind == "dequantize":
        return (nll + d * math.log(dataset.transform.levels)) / (d * math.log(2.0))
    if dataset.support == "binary":
        return nll / (d * math.log(2.0))
    return None
