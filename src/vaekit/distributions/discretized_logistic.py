"""Discretised logistic likelihoods for data with L discrete levels (8-bit images: L = 256).

The data are the levels v in {0, ..., L-1} scaled to the grid x = v / (L - 1) in [0, 1] (no
dequantisation noise). A logistic density with location mu and scale s (or a mixture of K of
them, one mixture per dimension) is integrated over each level's bin
[x - h, x + h], h = 1 / (2 (L - 1)), with the lowest bin extended to -inf and the highest to
+inf (Salimans et al. 2017, PixelCNN++, eq. 2; there on [-1, 1], here on [0, 1]), so

    P(x) = sigma((x + h - mu) / s) - sigma((x - h - mu) / s)     (interior levels)
    P(0) = sigma((h - mu) / s),   P(1) = 1 - sigma((1 - h - mu) / s)

is a probability mass function: the L probabilities of a dimension sum to 1 and log p(x|z) is
the log-probability of the discrete data itself. Its nll converts to bits per dimension
exactly, without the dequantisation bound. Each dimension is modelled independently given z
(PixelCNN++'s linear coupling of the R, G, B channels is not used).

Numerics. The difference of two sigmoids is computed without cancellation from the identity

    sigma(a) - sigma(b) = sigma(a) sigma(-b) (1 - exp(-(a - b))),   a - b = 2 h / s > 0,

i.e. log P = -softplus(-a) - softplus(b) + log(-expm1(-2 h / s)): every term is finite for any
mu and s and exact in floating point (no fallback to a density approximation in thin bins).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent

# The logistic scale s is kept in [bin width / 16, 100] (in units of the [0, 1] data range).
# Below: a bin can hold up to sigma(8) - sigma(-8) = 99.93% of the mass already, and the
# gradients of a narrower logistic vanish. Above: 100 data ranges is flatter than any useful
# fit, and it keeps 2 h / s far from float32's underflow for 8-bit data. Clamping also keeps
# extreme decoder outputs finite.
MIN_SCALE_BINS = 1.0 / 16.0
MAX_SCALE = 100.0
# The scale at a zero decoder output: standard deviation 0.2 (s = 0.2 sqrt(3) / pi), the start
# the Gaussian likelihoods use, for the same reason (a reconstruction term strong enough
# against the KL from the first step).
INIT_STD = 0.2


def log_bin_probability(
    x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, num_levels: int
) -> torch.Tensor:
    """log P(x) of one discretised logistic per element (nats), broadcasting ``x``, ``loc``
    and ``log_scale`` (log s, already clamped by the caller). ``x`` must lie on the grid
    v / (L - 1); see the module docstring for the formula."""
    half = 0.5 / (num_levels - 1)  # h, half a bin
    inv_scale = torch.exp(-log_scale)
    centred = (x - loc) * inv_scale  # (a + b) / 2
    half_width = half * inv_scale  # (a - b) / 2
    # Each full-size pass costs about as much as another; evaluation runs thousands of draws
    # per image through here, so the terms are built in as few passes as the identity allows.
    log_cdf_upper = F.logsigmoid(centred + half_width)  # log sigma(a): the lowest bin
    log_sf_lower = F.logsigmoid(half_width - centred)  # log(1 - sigma(b)): the highest bin
    log_width = torch.log(-torch.expm1(-2.0 * half_width))  # log(1 - exp(-(a - b)))
    interior = log_cdf_upper + log_sf_lower + log_width
    lowest = x < half
    highest = x > 1.0 - half
    return torch.where(lowest, log_cdf_upper, torch.where(highest, log_sf_lower, interior))


class DiscretizedLogisticMixture(Distribution):
    """A mixture of K discretised logistics per element: parameters ``[*shape, K]`` (mixture
    logits, locations mu, log-scales log s), values on the grid v / (L - 1) with
    ``num_levels`` = L. Batch shape ``shape``, no event dimensions (wrap in ``Independent``)."""

    arg_constraints: ClassVar[dict] = {}
    has_rsample = False

    def __init__(
        self,
        logits: torch.Tensor,
        loc: torch.Tensor,
        log_scale: torch.Tensor,
        num_levels: int,
        validate_args: bool = False,
    ) -> None:
        self.logits, self.loc, self.log_scale = logits, loc, log_scale
        self.num_levels = int(num_levels)
        super().__init__(loc.shape[:-1], validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log P(value) per element, nats: logsumexp_k (log pi_k + log P_k(value))."""
        per_component = log_bin_probability(
            value.unsqueeze(-1), self.loc, self.log_scale, self.num_levels
        )
        return torch.logsumexp(F.log_softmax(self.logits, dim=-1) + per_component, dim=-1)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        """Exact draws: a component k ~ pi, y ~ Logistic(mu_k, s_k), then the level whose bin
        holds y (the edge bins take the tails): ``[*sample_shape, *shape]`` on the grid."""
        shape = torch.Size(sample_shape) + self.batch_shape
        k = torch.distributions.Categorical(logits=self.logits).sample(sample_shape)
        loc = self.loc.expand(shape + self.loc.shape[-1:]).gather(-1, k.unsqueeze(-1))[..., 0]
        log_scale = self.log_scale.expand(shape + self.loc.shape[-1:])
        log_scale = log_scale.gather(-1, k.unsqueeze(-1))[..., 0]
        u = torch.rand(shape, dtype=loc.dtype, device=loc.device).clamp(1e-12, 1 - 1e-7)
        y = loc + log_scale.exp() * (u.log() - torch.log1p(-u))  # logistic inverse CDF
        top = self.num_levels - 1
        return torch.round(y * top).clamp(0, top) / top


class _DiscretizedLogistic(nn.Module):
    """What the plain and the mixture likelihood share; subclasses say how the decoder's
    output is laid out (``_param_shape``, ``split``) and nothing else."""

    support = "levels"
    discrete = True  # a probability mass function of the discrete levels, not a density
    name = ""

    def __init__(self, event_shape: tuple[int, ...], num_levels: int, num_components: int) -> None:
        super().__init__()
        if num_levels < 2:
            raise ValueError(f"{self.name} needs data with >= 2 levels, got {num_levels}")
        if num_components < 1:
            raise ValueError(f"model.likelihood_components must be >= 1, got {num_components}")
        self.event_shape = tuple(event_shape)
        self.num_levels = int(num_levels)
        self.num_components = int(num_components)
        self.param_shape = self._param_shape()
        bin_width = 1.0 / (self.num_levels - 1)
        self.min_log_scale = math.log(MIN_SCALE_BINS * bin_width)
        self.max_log_scale = math.log(MAX_SCALE)
        self.log_scale_offset = math.log(INIT_STD * math.sqrt(3.0) / math.pi)
        # Data-sized temporaries of log_density per dimension (the evaluator's chunk size).
        self.log_density_temporaries = 4 + 8 * self.num_components

    def _param_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def split(self, decoder_output: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def _check(self, decoder_output: torch.Tensor, what: str) -> None:
        n = len(self.event_shape)
        if tuple(decoder_output.shape[-n:]) != self.param_shape:
            raise ValueError(
                f"{self.name} reads {what} per dimension: the decoder must output "
                f"[..., {', '.join(map(str, self.param_shape))}], got "
                f"{list(decoder_output.shape)}"
            )

    def _log_scale(self, raw: torch.Tensor) -> torch.Tensor:
        """log s from the decoder's pre-activation, clamped (see ``MIN_SCALE_BINS``)."""
        return (raw + self.log_scale_offset).clamp(self.min_log_scale, self.max_log_scale)

    def forward(self, decoder_output: torch.Tensor) -> Distribution:
        base = DiscretizedLogisticMixture(*self.split(decoder_output), self.num_levels)
        return Independent(base, len(self.event_shape), validate_args=False)

    def mean(self, decoder_output: torch.Tensor) -> torch.Tensor:
        """What a picture shows, ``[*batch, *event]``: the mixture's mean location
        sum_k pi_k mu_k, clamped to the data range [0, 1]. (E[x|z] of the discretised
        distribution itself differs slightly: the edge bins collect the tails.)"""
        logits, loc, _ = self.split(decoder_output)
        return (F.softmax(logits, dim=-1) * loc).sum(-1).clamp(0.0, 1.0)

    def page_mean(self) -> str | None:
        """None: the explorer's page does not compute this mean (a mixture's)."""
        return None

    def log_density(self, decoder_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log P(x|z) of the discrete data summed over the event, ``[*batch]`` (nats), the
        same number as ``self(decoder_output).log_prob(x)``; ``x`` broadcasts."""
        event_dims = tuple(range(-len(self.event_shape), 0))
        logits, loc, log_scale = self.split(decoder_output)
        per_component = log_bin_probability(x.unsqueeze(-1), loc, log_scale, self.num_levels)
        if self.num_components == 1:  # one logistic: its weight is 1, no mixture to sum
            return per_component.sum(dim=tuple(range(-len(self.event_shape) - 1, 0)))
        log_p = torch.logsumexp(F.log_softmax(logits, dim=-1) + per_component, dim=-1)
        return log_p.sum(dim=event_dims)


class DiscretizedLogisticMixtureLikelihood(_DiscretizedLogistic):
    """p(x|z) = prod_d sum_k pi_dk DiscretizedLogistic(x_d; mu_dk(z), s_dk(z)) for data with
    ``num_levels`` discrete levels per dimension (Salimans et al. 2017), K = ``num_components``.

    The decoder writes 3K times the data's first dimension: ``[*batch, 3KC, ...]`` holds, in
    blocks of K*C, the mixture logits, the locations mu and the log-scale pre-activations r
    (block j, component k, channel c at index j*K*C + k*C + c), with
    log s = clamp(r + log s_0, log(bin / 16), log 100) and s_0 the scale of standard deviation
    0.2. Support: the grid {0, 1/(L-1), ..., 1}; vaekit feeds it the un-dequantised levels.
    """

    name = "discretized-logistic-mixture"

    def __init__(
        self, event_shape: tuple[int, ...], num_levels: int = 256, num_components: int = 5
    ) -> None:
        super().__init__(event_shape, num_levels, num_components)

    def _param_shape(self) -> tuple[int, ...]:
        return (3 * self.num_components * self.event_shape[0], *self.event_shape[1:])

    def split(self, decoder_output: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``[*batch, 3KC, ...]`` -> (logits, loc, log_scale), each ``[*batch, C, ..., K]``."""
        self._check(decoder_output, f"{3 * self.num_components} numbers")
        lead = decoder_output.shape[: -len(self.event_shape)]
        k, c, rest = self.num_components, self.event_shape[0], self.event_shape[1:]
        blocks = decoder_output.reshape(*lead, 3, k, c, *rest)  # [*batch, 3, K, C, ...]
        blocks = blocks.movedim(len(lead) + 1, -1)  # [*batch, 3, C, ..., K]
        logits, loc, raw = blocks.unbind(dim=len(lead))
        return logits, loc, self._log_scale(raw)


class DiscretizedLogisticLikelihood(_DiscretizedLogistic):
    """One discretised logistic per dimension: p(x|z) = prod_d DiscretizedLogistic(x_d;
    mu_d(z), s_d(z)), data with ``num_levels`` levels. The decoder writes
    ``[*batch, 2C, ...]``: the first C are mu, the last C the log-scale pre-activations, as in
    the mixture (which gives the same numbers with K = 1)."""

    name = "discretized-logistic"

    def __init__(self, event_shape: tuple[int, ...], num_levels: int = 256) -> None:
        super().__init__(event_shape, num_levels, num_components=1)

    def _param_shape(self) -> tuple[int, ...]:
        return (2 * self.event_shape[0], *self.event_shape[1:])

    def page_mean(self) -> str | None:
        """How the explorer's page computes the picture: mu, the first half of the channels,
        clamped to [0, 1] (``mean`` with one component)."""
        return "split-clamp"

    def split(self, decoder_output: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``[*batch, 2C, ...]`` -> (logits = 0, loc, log_scale), each ``[*batch, C, ..., 1]``."""
        self._check(decoder_output, "a location and a scale")
        loc, raw = decoder_output.chunk(2, dim=-len(self.event_shape))
        loc, log_scale = loc.unsqueeze(-1), self._log_scale(raw).unsqueeze(-1)
        return loc.new_zeros(()).expand_as(loc), loc, log_scale  # no memory for the zeros
