"""The importance-sampled log p(x) that ``vaekit evaluate`` runs:
``log_likelihood(model, x, ..., compiled=...)``, the estimate of ``model.log_likelihood`` at
the same draws, with its chunks under ``torch.compile`` where an evaluation is long enough.

At K = 5000 draws per example nearly all of the time is the decoder on K x B latents, log
p(x|z) on its output and log p(z). Eager PyTorch runs the biases, ReLUs, softplus and sums
beside the matrix products as separate passes over ``[rows, D]``. Written out of place
(``BernoulliMLPDensity``, for a VAE whose decoder is a plain MLP of Linear layers and ReLUs
and whose likelihood is a Bernoulli), ``torch.compile`` fuses them into one pass over the
logits, and a VampPrior's logsumexp into one pass over its components (``CompiledChunk``).
Every other model, and every evaluation too short to pay for the compile, runs
``model.log_likelihood`` unchanged (rewriting the eager passes in place measured no gain:
benchmarks/notes/evaluation-throughput.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.distributions.likelihoods import BernoulliLikelihood
from vaekit.models import Model
from vaekit.models.vae import VAE
from vaekit.networks import MLPDecoder

# softplus(l) = l above this: ``torch.nn.functional.softplus``'s default, so the same numbers
_SOFTPLUS_THRESHOLD = 20.0

# Decoded rows (examples x draws) from which an evaluation compiles its chunks: the 10,000
# MNIST test images at K = 5000 (5e7) do, a K = 1000 evaluation of them (1e7) does not.
MIN_ROWS_TO_COMPILE = 30_000_000


class BernoulliMLPDensity:
    """log p(x|z) of a VAE with an MLP decoder (Linear layers, ReLUs between them) and a
    Bernoulli likelihood, written out of place for ``torch.compile``."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        self.layers = layers

    @classmethod
    def for_model(cls, model: Model) -> BernoulliMLPDensity | None:
        """The density for ``model``, or None where it does not apply: only a plain ``VAE``
        (not a subclass that changes its weights' meaning) with a Bernoulli likelihood and an
        ``MLPDecoder`` of biased Linear layers separated by ReLUs."""
        if type(model) is not VAE or model.takes_labels:
            return None
        if not isinstance(model.likelihood, BernoulliLikelihood):
            return None
        decoder = model.decoder
        if type(decoder) is not MLPDecoder or not isinstance(decoder.body, nn.Sequential):
            return None
        modules = list(decoder.body)
        layers = modules[0::2]
        if not all(type(m) is nn.Linear and m.bias is not None for m in layers):
            return None
        if not all(type(m) is nn.ReLU for m in modules[1::2]) or len(modules) % 2 == 0:
            return None
        return cls(layers)

    def log_density(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats: ``z [K, B, m]``, ``x [B, *data_shape]`` ``-> [K, B]``, the numbers
        of ``likelihood.log_density(decoder(z), x)`` up to float rounding: sum_d x_d l_d -
        softplus(l_d), which a compiler sums in one pass over the logits l."""
        h = z
        for layer in self.layers[:-1]:
            h = torch.relu(F.linear(h, layer.weight, layer.bias))
        logits = F.linear(h, self.layers[-1].weight, self.layers[-1].bias)  # [K, B, D]
        fit = (logits * x.reshape(x.shape[0], -1)).sum(dim=-1)
        return fit - F.softplus(logits, threshold=_SOFTPLUS_THRESHOLD).sum(dim=-1)


class CompiledChunk:
    """log p(x|z) + log p(z) of one chunk under ``torch.compile``, for one shape of ``z`` and
    ``x`` (the evaluation's full chunks of full batches; a last, shorter chunk or batch runs
    eager rather than compile again). Falls back to the model's own eager code for good,
    without an error, where compiling fails (no C++ compiler, an unsupported op)."""

    def __init__(self, model: Model, density: BernoulliMLPDensity) -> None:
        self.model, self.density = model, density
        self.compiled: Callable | None = None  # torch.compile's wrapper, made at first use
        self.shape: tuple | None = None  # (z, x) shapes compiled for
        self.failed = False

    @classmethod
    def for_model(cls, model: Model) -> CompiledChunk | None:
        """The compiled chunk for ``model``, or None where ``BernoulliMLPDensity`` does not
        apply."""
        density = BernoulliMLPDensity.for_model(model)
        return None if density is None else cls(model, density)

    @classmethod
    def if_it_pays(cls, model: Model, num_examples: int, num_samples: int) -> CompiledChunk | None:
        """The compiled chunk where compiling can pay back within one evaluation of
        ``num_examples`` x ``num_samples`` decoded rows on the CPU, else None (eager).

        Measured on the record model (2 cores, 1 thread, loaded machine, CPU seconds): the
        compiled chunks took 0.92 times the eager ones' time (1.43 against 1.56 times the
        decoder's GEMM time); the first compile took about 25 s (seconds again once torch's
        on-disk cache holds it). At about 60,000 rows per second, ``MIN_ROWS_TO_COMPILE`` rows
        take some 500 s eager, of which 8 % is 40 s. On a GPU it is not measured: eager."""
        device = next(model.parameters()).device
        if device.type != "cpu" or num_examples * num_samples < MIN_ROWS_TO_COMPILE:
            return None
        return cls.for_model(model)

    def _log_joint(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.density.log_density(z, x) + self.model.prior.log_prob(z)

    def __call__(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``[K, B]`` nats: log p(x|z) + log p(z), compiled where the shape is the first one
        seen, eager otherwise."""
        shape = (tuple(z.shape), tuple(x.shape))
        if not self.failed and self.shape in (None, shape):
            try:
                if self.compiled is None:
                    self.compiled = torch.compile(self._log_joint, dynamic=False)
                out = self.compiled(z, x)
            except Exception:  # any failure of the compiler: the eager path gives the numbers
                self.failed = True
            else:
                self.shape = shape
                return out
        model = self.model
        return model.likelihood.log_density(model.decoder(z), x) + model.prior.log_prob(z)


@torch.no_grad()
def log_likelihood(
    model: Model,
    x: torch.Tensor,
    num_samples: int = 1000,
    chunk_size: int | None = None,
    *,
    y: torch.Tensor | None = None,
    compiled: CompiledChunk | None = None,
) -> torch.Tensor:
    """Importance-sampled log p(x) per example in nats, ``[B]``: ``model.log_likelihood``'s
    estimate (the same draws from the global random stream, the same numbers up to float
    rounding). ``chunk_size`` draws per decoder call bound memory; they do not change the
    estimate. ``compiled``: the model's ``CompiledChunk`` (``CompiledChunk.if_it_pays`` or
    ``for_model``), made once per evaluation and passed to every batch; None runs
    ``model.log_likelihood`` itself."""
    if compiled is None:
        return model.log_likelihood(x, num_samples, chunk_size, y=y)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    model.check_input(x)
    chunk = min(chunk_size or num_samples, num_samples)
    partial = []  # logsumexp of each chunk's log-weights, [B] each
    with model.held_fixed():
        proposal = model.proposal(x)  # the encoder runs once per example
        for start in range(0, num_samples, chunk):
            k = min(chunk, num_samples - start)
            z = proposal.rsample((k,))  # [k, B, m], as log_weight_terms_given draws them
            log_w = compiled(z, x) - proposal.log_prob(z)  # [k, B]
            partial.append(torch.logsumexp(log_w, dim=0))
    return torch.logsumexp(torch.stack(partial), dim=0) - math.log(num_samples)


__all__ = ["MIN_ROWS_TO_COMPILE", "BernoulliMLPDensity", "CompiledChunk", "log_likelihood"]
