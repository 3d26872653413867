"""Training criteria: ``objective(model, x, y) -> (loss, metrics)``.

``loss`` is the scalar the optimiser minimises (a batch mean of a per-example quantity, so
its scale does not depend on the batch size); ``metrics`` are batch means of per-example
tensors in nats per example. The model owns the math; an objective only picks and weights it.
``y`` is the batch's labels ``[B]`` (or None): passed on to the model, which uses them only
if it is conditional. Each model lists the objectives it supports (``model.objectives``).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from vaekit.config import ObjectiveConfig
from vaekit.data_defaults import unresolved
from vaekit.distributions.functional import LOG_2PI, log_mean_exp, slide_loss
from vaekit.distributions.likelihoods import GaussianLikelihood
from vaekit.distributions.posteriors import DiagonalGaussian
from vaekit.models import Model
from vaekit.support.spelling import spell, spell_value

Metrics = dict[str, torch.Tensor]
Labels = torch.Tensor | None


class Objective(Protocol):
    def __call__(
        self, model, x: torch.Tensor, y: Labels = None
    ) -> tuple[torch.Tensor, Metrics]: ...


class NegativeELBO:
    """beta-weighted negative ELBO in nats per example: -(E_q[log p(x|z)] - beta * KL).

    ``beta = 1`` is the true negative ELBO; the metrics always report the true ELBO.
    L = ``num_mc_samples`` reparameterised draws estimate the expectation. The trainer sets
    ``beta`` every step during KL warm-up (``vaekit.training.schedules.kl_weight``).

    ``free_bits`` = lambda > 0 (nats) turns the KL term into free bits (Kingma et al. 2016,
    the IAF paper): the KL of each group j (a latent coordinate where the posterior
    factorises, see ``ELBOTerms.kl_groups``) is averaged over the batch *before* it is clamped,
    and the loss is -(mean_B log p(x|z) - beta * sum_j max(lambda, mean_B KL_j)). A group
    below lambda then gets no gradient pushing its KL down. Under torchrun the batch mean is
    over each rank's share of the batch. The loss is then not the negative ELBO; the
    ``elbo``/``kl`` metrics still are the true ones, and ``kl_free_bits`` is the clamped sum.
    """

    def __init__(self, beta: float = 1.0, num_mc_samples: int = 1, free_bits: float = 0.0) -> None:
        self.beta = beta
        self.num_mc_samples = num_mc_samples
        self.free_bits = free_bits

    def __call__(
        self, model: Model, x: torch.Tensor, y: Labels = None
    ) -> tuple[torch.Tensor, Metrics]:
        terms = model.elbo(x, self.num_mc_samples, y=y)
        metrics = _elbo_metrics(terms.elbo, terms.log_px_z, terms.kl)
        if self.free_bits <= 0:
            # beta = 1 (no warm-up): the ELBO itself (the same number, two operators fewer).
            bound = terms.elbo if self.beta == 1.0 else terms.log_px_z - self.beta * terms.kl
            return -bound.mean(), metrics
        groups = terms.kl_groups if terms.kl_groups is not None else terms.kl.unsqueeze(-1)
        kl_clamped = groups.mean(dim=0).clamp_min(self.free_bits).sum()  # [B, G] -> [G] -> ()
        metrics["kl_free_bits"] = kl_clamped.detach()
        return -terms.log_px_z.mean() + self.beta * kl_clamped, metrics


class SlideLoss:
    """The lecture's L_VAE, exactly as on the slide, per example (then averaged over the batch):

    ``||x_i - x_hat_i||^2 + sum_j ( mu_j^2 + exp(s_j) - (1 + s_j) )``

    with x_hat = mu_theta(z), z = mu + exp(s/2) * eps. It is defined for the unit-variance
    Gaussian decoder and the diagonal Gaussian encoder; there it equals
    ``-2 * ELBO - D * log(2 pi)`` per example (D = data dimension), so minimising it maximises
    the ELBO.
    """

    def __init__(self, num_mc_samples: int = 1) -> None:
        self.num_mc_samples = num_mc_samples

    def __call__(
        self, model: Model, x: torch.Tensor, y: Labels = None
    ) -> tuple[torch.Tensor, Metrics]:
        lik = model.likelihood
        if not (isinstance(lik, GaussianLikelihood) and not lik.learned and lik.fixed_scale == 1):
            raise ValueError(
                "the slide loss assumes the unit-variance Gaussian decoder: use "
                f"{spell_value('--likelihood', 'model.likelihood', 'gaussian')} (or the "
                "'elbo' objective for other likelihoods)"
            )
        q = model.encode(x)
        if not isinstance(q, DiagonalGaussian):
            raise ValueError(
                "the slide loss assumes the diagonal posterior: "
                + spell("--posterior diagonal", "model.posterior = 'diagonal'")
            )
        z = q.rsample((self.num_mc_samples,))  # [L, B, m]
        x_hat = model.decoder(z)  # [L, B, *data_shape]
        per_example = slide_loss(x, x_hat, q.loc, q.log_var)  # [B]
        # Report the ELBO it corresponds to (the identity above).
        d = math.prod(model.data_shape)
        elbo = -0.5 * (per_example + d * LOG_2PI)
        kl = q.kl_standard_normal()
        metrics = _elbo_metrics(elbo, elbo + kl, kl)
        metrics["slide_loss"] = per_example.mean().detach()
        return per_example.mean(), metrics


class IWAEObjective:
    """Negative IWAE_K bound (Burda et al. 2015, eq. 8), nats per example: K = 1 is the ELBO.

    Its metrics come from the same K draws (no second pass through the model): ``elbo`` is
    the K-draw Monte-Carlo ELBO (the mean of the log-weights), ``log_px_z`` the mean of log
    p(x|z) over the draws and ``kl`` the Monte-Carlo KL, mean(log q(z|x) - log p(z)).
    """

    def __init__(self, num_samples: int = 5) -> None:
        self.num_samples = num_samples

    def __call__(
        self, model: Model, x: torch.Tensor, y: Labels = None
    ) -> tuple[torch.Tensor, Metrics]:
        log_px_z, log_ratio = model.log_weight_terms(x, self.num_samples, y=y)  # [K, B] each
        log_w = log_px_z + log_ratio
        iwae = log_mean_exp(log_w, dim=0)  # [B]
        with torch.no_grad():
            metrics = _elbo_metrics(log_w.mean(dim=0), log_px_z.mean(dim=0), -log_ratio.mean(0))
            metrics["iwae"] = iwae.mean()
        return -iwae.mean(), metrics


class ReconstructionObjective:
    """The AE's criterion: -log p(x | z = f(x)) in nats per example (no noise, no KL).

    For the unit-variance Gaussian decoder this is ||x - x_hat||^2 / 2 + D log(2 pi) / 2,
    i.e. "only minimise reconstruction error".
    """

    def __call__(
        self, model: Model, x: torch.Tensor, y: Labels = None
    ) -> tuple[torch.Tensor, Metrics]:
        log_px_z = model.reconstruction_log_prob(x, y=y)
        return -log_px_z.mean(), {"log_px_z": log_px_z.mean().detach()}


class ModelDefinedLoss:
    """A model's own criterion, ``model.training_loss(x, y=y) -> (loss [B], metrics)``: for
    a model that is not trained on a likelihood bound (the VQ-VAE's reconstruction plus
    commitment, with its codebook's moving-average step)."""

    def __call__(
        self, model: Model, x: torch.Tensor, y: Labels = None
    ) -> tuple[torch.Tensor, Metrics]:
        loss, metrics = model.training_loss(x, y=y)
        return loss.mean(), metrics


def _elbo_metrics(elbo: torch.Tensor, log_px_z: torch.Tensor, kl: torch.Tensor) -> Metrics:
    return {
        "elbo": elbo.mean().detach(),
        "log_px_z": log_px_z.mean().detach(),
        "kl": kl.mean().detach(),
    }


# name -> builder(config). A model lists the names it supports in ``model.objectives``.
OBJECTIVES = {
    "elbo": lambda config: NegativeELBO(config.beta, config.num_mc_samples, config.free_bits),
    "slide": lambda config: SlideLoss(config.num_mc_samples),
    "iwae": lambda config: IWAEObjective(
        unresolved("objective.num_importance_samples", config.num_importance_samples)
    ),
    "reconstruction": lambda config: ReconstructionObjective(),
    "vq": lambda config: ModelDefinedLoss(),
}


def build_objective(config: ObjectiveConfig, model: Model) -> Objective:
    """The objective named in ``config``, if ``model`` supports it. The default name, "elbo",
    stands for the model's own default where the model has no ELBO (an AE: reconstruction);
    "auto", left by a config that never saw data, for "elbo"."""
    name = unresolved("objective.name", config.name)
    if name == "elbo" and name not in model.objectives:
        name = model.objectives[0]
    if name not in model.objectives:
        raise ValueError(
            f"objective {name!r} does not apply to model {model.name!r}; it trains with "
            f"{', '.join(model.objectives)}"
        )
    return OBJECTIVES[name](config)
