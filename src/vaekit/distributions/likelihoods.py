"""Likelihood families p(x|z): turn the decoder's output into a distribution over data.

``log_prob`` of every returned distribution sums over the data's event dimensions and keeps
every constant (nats per example). Shapes: decoder output ``[*batch, *event]`` ->
distribution with batch shape ``[*batch]`` and event shape ``event``.

Every likelihood has ``mean(decoder_output)`` (E[x|z], what a picture shows) and says with
``page_mean()`` how the explorer's page computes that mean, or None where the page cannot.

Every likelihood declares ``discrete``: True when ``log_prob`` is the log-probability of
discrete values (Bernoulli, the discretised logistics), False when it is a density. The data
pipeline feeds a discrete likelihood the data's levels without dequantisation noise, and the
evaluator converts its nll to bits per dimension exactly instead of through the
dequantisation bound.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from vaekit.distributions.discretized_logistic import (
    DiscretizedLogisticLikelihood,
    DiscretizedLogisticMixtureLikelihood,
)
from vaekit.distributions.functional import LOG_2PI
from vaekit.distributions.lowrank import LowRankGaussianLikelihood
from vaekit.distributions.tabular import TabularLikelihood


class GaussianLikelihood(nn.Module):
    """p(x|z) = N(x; mu(z), diag(sigma^2)).

    ``scale=1.0`` (or any fixed positive number) is the lecture's simplified slide,
    Sigma_theta(z) = I. ``scale="learned"`` learns sigma: one value per data dimension
    (``shared=False``) or a single value for all (``shared=True``), the diagonal case of the
    general slide's Sigma_theta. A learned sigma is ``min_scale + softplus(raw)``: the floor
    keeps the density bounded when a pixel is constant in the data (otherwise sigma -> 0 and
    log p -> +inf). A learned sigma starts at ``init_scale`` = 0.2: starting at 1, the
    reconstruction term is too weak against the KL on [0, 1] data and the posterior collapses
    for the first epochs (digits demo, 150 epochs: validation ELBO 46.1 nats per example from
    sigma = 1, 57.7 from 0.2). Support: real-valued data.
    """

    support = "real"
    discrete = False

    def __init__(
        self,
        event_shape: tuple[int, ...],
        scale: float | str = 1.0,
        shared: bool = False,
        min_scale: float = 1e-3,
        init_scale: float = 0.2,
    ) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.param_shape = self.event_shape  # the decoder outputs the mean only
        self.learned = scale == "learned"
        self.min_scale = min_scale
        if self.learned:
            init = math.log(math.expm1(init_scale - min_scale))  # softplus^{-1}
            shape = (1,) if shared else self.event_shape
            self.raw_scale = nn.Parameter(torch.full(shape, init))
        else:
            if not isinstance(scale, int | float) or scale <= 0:
                raise ValueError(
                    f"GaussianLikelihood scale must be > 0 or 'learned', got {scale!r}"
                )
            self.fixed_scale = float(scale)

    def scale(self) -> torch.Tensor | float:
        """The decoder's standard deviation sigma (a tensor when learned)."""
        if self.learned:
            return self.min_scale + F.softplus(self.raw_scale)
        return self.fixed_scale

    def forward(self, decoder_output: torch.Tensor) -> Distribution:
        scale = self.scale()
        if not torch.is_tensor(scale):
            scale = torch.full((), scale, dtype=decoder_output.dtype, device=decoder_output.device)
        base = Normal(decoder_output, scale.expand_as(decoder_output), validate_args=False)
        return Independent(base, len(self.event_shape), validate_args=False)

    def mean(self, decoder_output: torch.Tensor) -> torch.Tensor:
        """E[x|z]: the decoder output itself."""
        return decoder_output

    def page_mean(self) -> str | None:
        """How the explorer's page computes E[x|z]: the decoder output itself."""
        return "identity"

    def log_density(self, decoder_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log N(x; mu, diag(sigma^2)) summed over the event, ``[*batch]``: the same number as
        ``self(decoder_output).log_prob(x)`` with fewer passes over memory (the evaluator's hot
        loop): -0.5 sum((x - mu)/sigma)^2 - sum(log sigma) - D log(2 pi)/2.
        ``x`` broadcasts against ``decoder_output [*batch, *event]``."""
        event_dims = tuple(range(-len(self.event_shape), 0))
        d = math.prod(self.event_shape)
        scale = self.scale()
        if torch.is_tensor(scale):
            log_scale = scale.log().expand(self.event_shape).sum()
        else:
            log_scale = d * math.log(scale)
        if torch.is_grad_enabled():  # autograd needs the intermediate tensors intact
            squared = ((decoder_output - x) / scale).square()
        else:  # evaluation: one temporary, updated in place
            squared = (decoder_output - x).div_(scale).square_()
        return -0.5 * squared.sum(dim=event_dims) - log_scale - 0.5 * d * LOG_2PI


class HeteroscedasticGaussianLikelihood(nn.Module):
    """p(x|z) = N(x; mu(z), diag(sigma(z)^2)): the decoder outputs the mean *and* the scale of
    every dimension, the general slide's Sigma_theta(z) restricted to a diagonal.

    The decoder's output doubles the data's first dimension (an image's channels, a vector's
    features): ``[*batch, 2C, ...]``, the first C are mu, the last C the scale's
    pre-activation r, with sigma = ``min_scale`` + softplus(r + c) and c chosen so that r = 0
    gives ``init_scale`` (0.2, as for the learned per-pixel sigma, for the same reason). Unlike
    a per-pixel sigma, each example gets its own uncertainty: sharp where the decoder is sure
    (a background pixel), wide where it is not (an edge). Support: real-valued data.
    """

    support = "real"
    discrete = False

    def __init__(
        self, event_shape: tuple[int, ...], min_scale: float = 1e-3, init_scale: float = 0.2
    ) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.param_shape = (2 * self.event_shape[0], *self.event_shape[1:])
        self.min_scale = min_scale
        self.offset = math.log(math.expm1(init_scale - min_scale))  # softplus^{-1}

    def split(self, decoder_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[*batch, 2C, ...]`` -> (mu, sigma), each ``[*batch, C, ...]``."""
        n = len(self.event_shape)
        if tuple(decoder_output.shape[-n:]) != self.param_shape:
            raise ValueError(
                "gaussian-heteroscedastic reads a mean and a scale per dimension: the decoder "
                f"must output [..., {', '.join(map(str, self.param_shape))}], got "
                f"{list(decoder_output.shape)}"
            )
        mu, raw = decoder_output.chunk(2, dim=-n)
        return mu, self.min_scale + F.softplus(raw + self.offset)

    def forward(self, decoder_output: torch.Tensor) -> Distribution:
        mu, sigma = self.split(decoder_output)
        base = Normal(mu, sigma, validate_args=False)
        return Independent(base, len(self.event_shape), validate_args=False)

    def mean(self, decoder_output: torch.Tensor) -> torch.Tensor:
        """E[x|z] = mu(z), ``[*batch, *event]``."""
        return self.split(decoder_output)[0]

    def page_mean(self) -> str | None:
        """How the explorer's page computes E[x|z]: the first half of the channels."""
        return "split"

    def log_density(self, decoder_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log N(x; mu, diag(sigma^2)) summed over the event, ``[*batch]`` (nats):
        -0.5 sum((x - mu)/sigma)^2 - sum(log sigma) - D log(2 pi)/2; ``x`` broadcasts."""
        event_dims = tuple(range(-len(self.event_shape), 0))
        mu, sigma = self.split(decoder_output)
        squared = ((x - mu) / sigma).square().sum(dim=event_dims)
        log_sigma = sigma.log().sum(dim=event_dims)
        return -0.5 * squared - log_sigma - 0.5 * math.prod(self.event_shape) * LOG_2PI


class BernoulliLikelihood(nn.Module):
    """p(x|z) = prod_d Bernoulli(x_d; sigmoid(logits_d(z))), for binary data only.

    ``log_prob`` is minus the binary cross-entropy computed from logits (stable).
    Support: {0, 1}; vaekit refuses to train it on grey-level data.
    """

    support = "binary"
    discrete = True

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.param_shape = self.event_shape  # the logits

    def forward(self, decoder_output: torch.Tensor) -> Distribution:
        base = Bernoulli(logits=decoder_output, validate_args=False)
        return Independent(base, len(self.event_shape), validate_args=False)

    def mean(self, decoder_output: torch.Tensor) -> torch.Tensor:
        """E[x|z] = sigmoid(logits)."""
        return torch.sigmoid(decoder_output)

    def page_mean(self) -> str | None:
        """How the explorer's page computes E[x|z]: the sigmoid of the logits."""
        return "sigmoid"

    def log_density(self, decoder_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over the event, ``[*batch]``, as ``self(...).log_prob(x)``:
        minus the binary cross-entropy from logits. ``x`` broadcasts against the logits."""
        event_dims = tuple(range(-len(self.event_shape), 0))
        if torch.is_grad_enabled():  # training: one op with a fused backward
            target = x.expand_as(decoder_output)
            bce = F.binary_cross_entropy_with_logits(decoder_output, target, reduction="none")
            return -bce.sum(dim=event_dims)
        # Evaluation's hot loop: sum_d x_d l_d - softplus(l_d), the same number in fewer
        # passes (the binary cross-entropy builds 1 - x and a log-sigmoid over every logit).
        fit = (decoder_output * x).sum(dim=event_dims)
        return fit - F.softplus(decoder_output).sum(dim=event_dims)


def _gaussian_unit(shape: tuple[int, ...]) -> nn.Module:
    return GaussianLikelihood(shape, scale=1.0)


def _gaussian_learned(shape: tuple[int, ...]) -> nn.Module:
    return GaussianLikelihood(shape, scale="learned", shared=False)


def _gaussian_shared(shape: tuple[int, ...]) -> nn.Module:
    return GaussianLikelihood(shape, scale="learned", shared=True)


# name -> builder(event_shape, **options). "gaussian" is the lecture's unit-variance decoder.
# Every likelihood has ``param_shape``: the shape of the decoder output it reads. The
# discretised logistics also take the data's ``num_levels`` (and ``num_components``).
LIKELIHOODS = {
    "gaussian": _gaussian_unit,
    "gaussian-learned": _gaussian_learned,
    "gaussian-shared": _gaussian_shared,
    "gaussian-heteroscedastic": HeteroscedasticGaussianLikelihood,
    "gaussian-lowrank": LowRankGaussianLikelihood,
    "bernoulli": BernoulliLikelihood,
    "discretized-logistic": DiscretizedLogisticLikelihood,
    "discretized-logistic-mixture": DiscretizedLogisticMixtureLikelihood,
    "tabular": TabularLikelihood,
}
# The options each builder reads from the model config, beyond the event shape:
# builder keyword -> ModelConfig field.
LIKELIHOOD_OPTIONS = {
    "discretized-logistic": {"num_levels": "data_levels"},
    "discretized-logistic-mixture": {
        "num_levels": "data_levels",
        "num_components": "likelihood_components",
    },
    "gaussian-lowrank": {"rank": "rank"},
    "tabular": {"columns": "columns", "rank": "rank", "missing": "missing"},
}
# Options the user may leave unset (null): the builder's default applies. The others are
# filled in from the data.
OPTIONAL_OPTIONS = frozenset({"rank"})


def is_discrete(name: str) -> bool:
    """Whether the likelihood registered as ``name`` is a probability mass function of the
    data's discrete levels (see the module docstring)."""
    return bool(getattr(LIKELIHOODS[name], "discrete", False))


def build_likelihood(config) -> nn.Module:
    """The likelihood named by ``config.likelihood`` (a ``ModelConfig``) for its data shape,
    with the options it reads from the config (``LIKELIHOOD_OPTIONS``)."""
    missing = getattr(config, "missing", "at-random")
    if missing != "at-random" and config.likelihood != "tabular":
        raise ValueError(
            f"--missing {missing} models a mixed-type table's missing cells; "
            f"--likelihood {config.likelihood} has none"
        )
    options = {}
    for keyword, field in LIKELIHOOD_OPTIONS.get(config.likelihood, {}).items():
        value = getattr(config, field)
        if value is None and field in OPTIONAL_OPTIONS:
            continue  # the builder's default
        if value is None:
            raise ValueError(
                f"--likelihood {config.likelihood} needs model.{field}; it is filled in from "
                "the data when training starts"
            )
        options[keyword] = value
    return LIKELIHOODS[config.likelihood](tuple(config.data_shape), **options)
