"""The importance-sampled log p(x) that ``vaekit evaluate``, ``vaekit score`` and ``vaekit
compare`` run: ``log_likelihood(model, x, ...)``, the same estimate and the same draws as
``model.log_likelihood``, with a faster inner loop where the model allows one.

At K = 5000 draws per example nearly all of the time is the decoder on K x B latents and
log p(x|z) on its output. For a VAE whose decoder is a plain MLP of Linear layers and ReLUs
and whose likelihood is a Bernoulli, ``FusedBernoulliMLP`` computes that part in fewer passes
over the ``[rows, D]`` logits than the generic ``decoder(z)`` then ``log_density``:

* each hidden layer's ReLU runs in place on the product's output (no second tensor);
* log p(x|z) = sum_d x_d l_d - sum_d softplus(l_d), and with l = h W^T + b the first sum is
  h . (W^T x) + b . x: a product of each draw's last hidden layer (width H) with one vector
  per example, instead of a multiply and a sum over every logit (width D > H);
* the softplus runs in place on the logits, then one sum.

Every other model (other networks, likelihoods, labels, hierarchies) takes
``model.log_likelihood`` unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.distributions.likelihoods import BernoulliLikelihood
from vaekit.models import Model
from vaekit.models.vae import VAE
from vaekit.networks import MLPDecoder

# softplus(l) = l above this: ``torch.nn.functional.softplus``'s default, so the same numbers
_SOFTPLUS_THRESHOLD = 20.0


class FusedBernoulliMLP:
    """log p(x|z) of a VAE with an MLP decoder (Linear layers, ReLUs between them) and a
    Bernoulli likelihood, computed from z without the generic decoder call."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        self.hidden = [(layer.weight, layer.bias) for layer in layers[:-1]]
        self.last = layers[-1]

    @classmethod
    def for_model(cls, model: Model) -> FusedBernoulliMLP | None:
        """The fused path for ``model``, or None where it does not apply: only a plain
        ``VAE`` (not a subclass that changes its weights' meaning) with a Bernoulli
        likelihood and an ``MLPDecoder`` of biased Linear layers separated by ReLUs."""
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

    @torch.no_grad()
    def log_density(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats, summed over the pixels: ``z [K, B, m]``, ``x [B, *data_shape]``
        (0/1 or in [0, 1]) ``-> [K, B]``; the numbers of ``likelihood.log_density(decoder(z),
        x)`` up to float rounding. Inference only: no gradients."""
        h = z.reshape(-1, z.shape[-1])  # [K B, m]
        for weight, bias in self.hidden:
            h = torch.addmm(bias, h, weight.T).relu_()
        weight, bias = self.last.weight, self.last.bias  # [D, H], [D]
        flat_x = x.reshape(x.shape[0], -1).to(h.dtype)  # [B, D]
        # sum_d x_d l_d = h . (W^T x) + b . x: a pass over [K B, H] instead of [K B, D]
        projected = flat_x @ weight  # [B, H]
        fit = (h.view(*z.shape[:-1], -1) * projected).sum(dim=-1) + flat_x @ bias  # [K, B]
        logits = torch.addmm(bias, h, weight.T)  # [B K, D]
        # softplus in place over the logits: one pass that writes no new tensor
        torch.ops.aten.softplus.out(logits, 1.0, _SOFTPLUS_THRESHOLD, out=logits)
        return fit - logits.sum(dim=-1).view(z.shape[:-1])

    def log_joint(self, model: Model, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) + log p(z) in nats, ``[K, B]``, ``model``'s prior at ``z [K, B, m]``."""
        return self.log_density(z, x) + model.prior.log_prob(z)

    def log_density_plain(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log_density`` written out of place, for ``torch.compile`` to fuse: the ReLUs and
        biases into the products, the fit and the softplus into one pass over the logits."""
        h = z
        for weight, bias in self.hidden:
            h = torch.relu(F.linear(h, weight, bias))
        logits = F.linear(h, self.last.weight, self.last.bias)  # [K, B, D]
        fit = (logits * x.reshape(x.shape[0], -1)).sum(dim=-1)
        return fit - F.softplus(logits, threshold=_SOFTPLUS_THRESHOLD).sum(dim=-1)


class CompiledChunk:
    """log p(x|z) + log p(z) of one chunk under ``torch.compile``, for one shape of ``z`` and
    ``x`` (the evaluation's full chunks of full batches; a last, shorter chunk or batch runs
    eager rather than compile again). Falls back to the eager ``FusedBernoulliMLP`` for good,
    without an error, where compiling fails (no C++ compiler, an unsupported op)."""

    def __init__(self, model: Model, fused: FusedBernoulliMLP) -> None:
        self.model, self.fused = model, fused
        self.compiled = torch.compile(self._log_joint, dynamic=False)
        self.shape: tuple | None = None  # (z, x) shapes compiled for
        self.failed = False

    @classmethod
    def for_model(cls, model: Model) -> CompiledChunk | None:
        """The compiled chunk for ``model``, or None where the fused path does not apply."""
        fused = FusedBernoulliMLP.for_model(model)
        return None if fused is None else cls(model, fused)

    def _log_joint(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.fused.log_density_plain(z, x) + self.model.prior.log_prob(z)

    def __call__(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``[K, B]`` nats: log p(x|z) + log p(z), compiled where the shape is the first one
        seen, eager otherwise."""
        shape = (tuple(z.shape), tuple(x.shape))
        if not self.failed and self.shape in (None, shape):
            try:
                out = self.compiled(z, x)
            except Exception:  # any failure of the compiler: the eager path gives the numbers
                self.failed = True
            else:
                self.shape = shape
                return out
        return self.fused.log_joint(self.model, z, x)


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
    rounding), through ``FusedBernoulliMLP`` where it applies. ``chunk_size`` draws per
    decoder call bound memory; they do not change the estimate. ``compiled``: the model's
    ``CompiledChunk`` (``CompiledChunk.for_model``), made once per evaluation and passed to
    every batch: the chunks run under ``torch.compile`` (tens of seconds to compile, once per
    model and shape, so only for long evaluations; eager where compiling fails)."""
    fused = FusedBernoulliMLP.for_model(model)
    if fused is None:
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
            joint = compiled(z, x) if compiled is not None else fused.log_joint(model, z, x)
            log_w = joint - proposal.log_prob(z)  # [k, B]
            partial.append(torch.logsumexp(log_w, dim=0))
    return torch.logsumexp(torch.stack(partial), dim=0) - math.log(num_samples)


__all__ = ["CompiledChunk", "FusedBernoulliMLP", "log_likelihood"]
