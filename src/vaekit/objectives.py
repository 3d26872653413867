"""Training criteria: ``objective(model, x) -> (loss, metrics)``.

``loss`` is the scalar the optimiser minimises (a batch mean of a per-example quantity, so
its scale does not depend on the batch size); ``metrics`` are batch means of per-example
tensors in nats per example. The model owns the math; an objective only picks and weights it.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from vaekit.config import ObjectiveConfig
from vaekit.distributions.functional import LOG_2PI, log_mean_exp, slide_loss
from vaekit.distributions.likelihoods import GaussianLikelihood
from vaekit.distributions.posteriors import DiagonalGaussian
from vaekit.models import AE, VAE
from vaekit.spelling import spell, spell_value

Metrics = dict[str, torch.Tensor]


class Objective(Protocol):
    def __call__(self, model, x: torch.Tensor) -> tuple[torch.Tensor, Metrics]: ...


class NegativeELBO:
    """beta-weighted negative ELBO in nats per example: -(E_q[log p(x|z)] - beta * KL).

    ``beta = 1`` is the true negative ELBO; the metrics always report the true ELBO.
    L = ``num_mc_samples`` reparameterised draws estimate the expectation.
    """

    def __init__(self, beta: float = 1.0, num_mc_samples: int = 1) -> None:
        self.beta = beta
        self.num_mc_samples = num_mc_samples

    def __call__(self, model: VAE, x: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
        terms = model.elbo(x, self.num_mc_samples)
        loss = -(terms.log_px_z - self.beta * terms.kl).mean()
        return loss, _elbo_metrics(terms.elbo, terms.log_px_z, terms.kl)


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

    def __call__(self, model: VAE, x: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
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
    """Negative IWAE_K bound (Burda et al. 2015, eq. 8), nats per example: K = 1 is the ELBO."""

    def __init__(self, num_samples: int = 5) -> None:
        self.num_samples = num_samples

    def __call__(self, model: VAE, x: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
        log_w = model.log_weights(x, self.num_samples)  # [K, B]
        iwae = log_mean_exp(log_w, dim=0)  # [B]
        with torch.no_grad():
            terms = model.elbo(x)
        metrics = _elbo_metrics(terms.elbo, terms.log_px_z, terms.kl)
        metrics["iwae"] = iwae.mean().detach()
        return -iwae.mean(), metrics


class ReconstructionObjective:
    """The AE's criterion: -log p(x | z = f(x)) in nats per example (no noise, no KL).

    For the unit-variance Gaussian decoder this is ||x - x_hat||^2 / 2 + D log(2 pi) / 2,
    i.e. "only minimise reconstruction error".
    """

    def __call__(self, model: AE, x: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
        log_px_z = model.reconstruction_log_prob(x)
        return -log_px_z.mean(), {"log_px_z": log_px_z.mean().detach()}


def _elbo_metrics(elbo: torch.Tensor, log_px_z: torch.Tensor, kl: torch.Tensor) -> Metrics:
    return {
        "elbo": elbo.mean().detach(),
        "log_px_z": log_px_z.mean().detach(),
        "kl": kl.mean().detach(),
    }


def build_objective(config: ObjectiveConfig, model_kind: str) -> Objective:
    """The objective named in ``config``; an AE only has the reconstruction criterion."""
    if model_kind == "ae":
        if config.name not in ("reconstruction", "elbo"):
            raise ValueError(
                f"objective {config.name!r} needs a VAE; an AE trains on reconstruction"
            )
        return ReconstructionObjective()
    if config.name == "reconstruction":
        raise ValueError(
            "objective 'reconstruction' is the AE's: use "
            + spell("--model ae", "model.kind = 'ae'")
        )
    builders = {
        "elbo": lambda: NegativeELBO(config.beta, config.num_mc_samples),
        "slide": lambda: SlideLoss(config.num_mc_samples),
        "iwae": lambda: IWAEObjective(config.num_importance_samples),
    }
    return builders[config.name]()
