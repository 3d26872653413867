"""The VAE exactly as the lecture derives it: q(z|x) from the encoder, p(x|z) from the
decoder, a prior p(z).

It composes network bodies (``vaekit.networks``) with a posterior, a likelihood and a prior
from the registries of ``vaekit.distributions``. Every method returns per-example tensors;
nothing here averages over the batch (the objectives and the evaluator do that).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution

from vaekit.distributions import POSTERIORS, PRIORS, build_likelihood
from vaekit.models.base import DecodesThroughLikelihood, ELBOTerms, LatentMoments, LikelihoodModel
from vaekit.models.bodies import BodyConfig, build_bodies, resolve_network
from vaekit.models.registry import register_model
from vaekit.settings import ConfigError, setting


@dataclass
class VAEConfig(BodyConfig):
    """The VAE's ``[model]`` table (``kind = "vae"``)."""

    kind: str = dataclasses.field(default="vae", init=False)
    posterior: str = setting(
        "diagonal",
        help="q(z|x): diagonal Gaussian, full (Cholesky covariance) or iaf (an inverse "
        "autoregressive flow on a diagonal Gaussian, Kingma et al. 2016)",
    )
    prior: str = setting(
        "standard-normal",
        help="p(z): standard-normal, or vamp (the VampPrior, Tomczak & Welling 2018); the "
        "conditional VAE also takes conditional (a learned p(z|y))",
    )
    num_pseudo_inputs: int = setting(
        500, help="K, the VampPrior's learned pseudo-inputs (prior vamp)"
    )
    flow_steps: int = setting(2, help="T, the IAF posterior's steps (posterior iaf)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, registry in (("posterior", POSTERIORS), ("prior", PRIORS)):
            if getattr(self, name) not in registry:
                raise ConfigError(
                    f"model.{name} must be one of {', '.join(map(repr, registry))}; "
                    f"got {getattr(self, name)!r}"
                )
        if self.flow_steps < 1:
            raise ConfigError(f"model.flow_steps must be >= 1, got {self.flow_steps}")
        if self.posterior == "iaf" and self.prior == "vamp":
            raise ConfigError(
                "model.prior 'vamp' mixes posterior densities at arbitrary points, which an "
                "IAF posterior (model.posterior 'iaf') defines only at its own draws"
            )
        if self.num_pseudo_inputs < 1:
            raise ConfigError(f"model.num_pseudo_inputs must be >= 1, got {self.num_pseudo_inputs}")


@register_model
class VAE(DecodesThroughLikelihood, LikelihoodModel):
    """Variational autoencoder: q(z|x) from the encoder, p(x|z) from the decoder, p(z) prior.

    Build it from a :class:`VAEConfig` (``VAE(config)``), optionally passing your own
    ``encoder`` / ``decoder`` bodies (see ``vaekit.networks`` for the contract).
    """

    name = "vae"
    description = "the lecture's variational autoencoder (default)"
    config_class = VAEConfig
    has_continuous_latent = True
    has_posterior = True
    objectives = ("elbo", "iwae", "slide")

    def __init__(
        self,
        config: VAEConfig,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config = config = self.own_config(config)
        resolve_network(config)
        self.likelihood = build_likelihood(config)
        self.encoder, self.decoder = build_bodies(
            config, encoder, decoder, self.likelihood.param_shape
        )
        family = POSTERIORS[config.posterior]
        options = {name: getattr(config, name) for name in family.config_fields}
        self.posterior = family(self.encoder.out_features, config.latent_dim, **options)
        # The prior may use the model (a VampPrior encodes its pseudo-inputs).
        self.prior = PRIORS[config.prior](self, config.latent_dim)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def network_bodies(self) -> list[nn.Module]:
        """The encoder and the decoder."""
        return [self.encoder, self.decoder]

    def encode(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> Distribution:
        """q(z|x): ``x [B, *data_shape]`` -> distribution with batch ``[B]``, event ``[m]``."""
        self.check_input(x)
        return self.posterior(self.encoder(x))

    def top_posterior(self, x: torch.Tensor) -> Distribution:
        """q(z|x), the posterior over the latent the prior models (a VampPrior's components
        at its pseudo-inputs)."""
        return self.encode(x)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode ``n`` draws z ~ p(z): E[x|z] ``[n, *data_shape]``."""
        return self.decode_mean(self.prior.sample(n, generator=generator))

    def elbo(
        self, x: torch.Tensor, num_mc_samples: int = 1, *, y: torch.Tensor | None = None
    ) -> ELBOTerms:
        """Per-example ELBO (nats) with L = ``num_mc_samples`` reparameterised draws.

        ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)): the expectation is the lecture's
        "sample mean" over L draws; the KL is in closed form where the posterior family has
        one against the prior, else estimated at the same draws. ``x [B, ...] -> [B]`` each.
        """
        q = self.encode(x)
        z = q.rsample((num_mc_samples,))  # [L, B, m]
        # log p(x|z) straight from the decoder output (no distribution objects per step).
        log_px_z = self.likelihood.log_density(self.decoder(z), x)  # [L, B]
        # The mean over L draws; one draw is the same number without an operator.
        log_px_z = log_px_z.squeeze(0) if num_mc_samples == 1 else log_px_z.mean(dim=0)  # [B]
        kl = self.prior.kl(q, z)
        return ELBOTerms(
            elbo=log_px_z - kl,
            log_px_z=log_px_z,
            kl=kl,
            group_kl=lambda: self.prior.kl_groups(q, z),  # [B, m] where it factorises, else None
        )

    def proposal(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> Distribution:
        """q(z|x), the importance distribution."""
        return self.encode(x)

    def log_weight_terms_given(
        self,
        proposal: Distribution,
        x: torch.Tensor,
        num_samples: int,
        *,
        y: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(x|z), log p(z) - log q(z|x)) for z ~ ``proposal``, ``[K, B]`` each."""
        z = proposal.rsample((num_samples,))  # [K, B, m]
        # log p(x|z) from the decoder output directly (same number as decode(z).log_prob(x)):
        # the decoder sees K*B rows in one call, x [B, ...] broadcasts over K.
        log_px_z = self.likelihood.log_density(self.decoder(z), x)  # [K, B]
        return log_px_z, self.prior.log_prob(z) - proposal.log_prob(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z] at the posterior mean z = mu(x): ``[B, *data_shape]``."""
        return self.decode_mean(self.encode(x).mean)

    def latent_moments(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> LatentMoments:
        """q(z|x)'s mean and covariance, its KL from the prior and, where the prior is
        N(0, I) and the family has a closed form, the KL of each coordinate's marginal."""
        q = self.encode(x)
        mean, covariance = q.moments()  # exact for the Gaussian families, Monte Carlo for IAF
        # The marginal KLs are against N(0, 1): only for that prior, and a closed form.
        per_dim = None
        if self.config.prior == "standard-normal" and q.has_closed_form_kl:
            per_dim = q.marginal_kl_standard_normal()
        return LatentMoments(mean, covariance, self.prior.kl(q), per_dim, mean_draws=q.moment_draws)
