"""The plain autoencoder: the lecture's contrast to the VAE."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vaekit.distributions import StandardNormalPrior, build_likelihood
from vaekit.models.base import DecodesThroughLikelihood, LatentMoments, Model
from vaekit.models.bodies import BodyConfig, build_bodies, resolve_network
from vaekit.models.registry import register_model


@dataclass
class AEConfig(BodyConfig):
    """The AE's ``[model]`` table (``kind = "ae"``): networks and a likelihood, no posterior
    and no prior."""

    kind: str = dataclasses.field(default="ae", init=False)

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Runs saved before each model had its own config stored the VAE's ``posterior`` and
        ``prior`` for an AE too, unused: drop them."""
        return {k: v for k, v in data.items() if k not in ("posterior", "prior")}


class DeterministicCode(nn.Module):
    """The AE's bottleneck: a linear map from features to the code ``[B, m]``."""

    def __init__(self, feature_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.head = nn.Linear(feature_dim, latent_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


@register_model
class AE(DecodesThroughLikelihood, Model):
    """Plain autoencoder: the lecture's contrast. Same networks as the VAE, the code is
    deterministic (no noise) and training only minimises reconstruction error (no KL).

    ``sample(n)`` decodes draws from N(0, I) exactly as the VAE does, which is the point of
    the comparison: nothing made the AE's codes look like N(0, I). An AE has no likelihood
    p(x) (``has_likelihood`` is False), so it has no ``elbo`` or ``log_likelihood``.
    """

    name = "ae"
    description = "the plain autoencoder the lecture contrasts with the VAE (no likelihood)"
    config_class = AEConfig
    has_continuous_latent = True
    has_posterior = False
    objectives = ("reconstruction",)

    def __init__(
        self,
        config: AEConfig,
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
        self.code = DeterministicCode(self.encoder.out_features, config.latent_dim)
        # Not part of the model: the N(0, I) that `sample` decodes draws from, as a VAE does.
        self.prior = StandardNormalPrior(config.latent_dim)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def network_bodies(self) -> list[nn.Module]:
        """The encoder and the decoder."""
        return [self.encoder, self.decoder]

    def encode(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """The code z = f(x), ``[B, m]``."""
        self.check_input(x)
        return self.code(self.encoder(x))

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode ``n`` draws z ~ N(0, I): E[x|z] ``[n, *data_shape]``."""
        return self.decode_mean(self.prior.sample(n, generator=generator))

    def reconstruction_log_prob(
        self, x: torch.Tensor, *, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(x | z = f(x)) per example in nats, ``[B]``: the AE's only training signal.

        For the unit-variance Gaussian decoder this is -||x - x_hat||^2 / 2 - D log(2 pi) / 2.
        """
        return self.likelihood.log_density(self.decoder(self.encode(x)), x)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z] at z = f(x): ``[B, *data_shape]``."""
        return self.decode_mean(self.encode(x))

    def latent_moments(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> LatentMoments:
        """The code f(x) as the mean and a zero covariance (a point mass); no KL."""
        code = self.encode(x)
        m = code.shape[-1]
        return LatentMoments(code, code.new_zeros(code.shape[0], m, m))

    def per_example_metrics(
        self, x: torch.Tensor, *, y: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """log p(x | z = f(x)), ``[B]`` nats per example."""
        return {"log_px_z": self.reconstruction_log_prob(x)}
