"""The models: a VAE exactly as the lecture derives it, and the plain AE it is contrasted with.

A model composes network bodies (``vaekit.networks``) with a posterior q(z|x), a likelihood
p(x|z) and a prior p(z) (``vaekit.distributions``). Every method returns per-example tensors;
nothing here averages over the batch (the objectives and the evaluator do that).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.distributions import Distribution

from vaekit.config import ModelConfig
from vaekit.distributions import POSTERIORS, PRIORS
from vaekit.distributions.likelihoods import build_likelihood
from vaekit.networks import build_networks, default_network


@dataclass
class ELBOTerms:
    """Per-example ELBO in nats and its two terms, each ``[B]``.

    ``elbo = log_px_z - kl`` where ``log_px_z`` is the Monte-Carlo mean of log p(x|z) over
    z ~ q(z|x) and ``kl`` = KL(q(z|x) || p(z)) (closed form for the Gaussian families).
    """

    elbo: torch.Tensor
    log_px_z: torch.Tensor
    kl: torch.Tensor
    # The KL split into independent groups, ``[B, G]`` summing to ``kl`` (one per latent
    # coordinate where the posterior and prior factorise); what free bits clamp. None: one group.
    kl_groups: torch.Tensor | None = None


def _resolve(config: ModelConfig, kind: str) -> ModelConfig:
    """A copy of ``config`` with ``kind`` set and 'auto' network resolved from the data shape."""
    config = dataclasses.replace(config, kind=kind)
    if config.data_shape is None:
        raise ValueError("model config has no data_shape: set it or build the model from data")
    if config.network == "auto":
        config.network = default_network(tuple(config.data_shape))
    if config.likelihood == "auto":
        raise ValueError("model.likelihood is 'auto': resolve it from the dataset before building")
    return config


def _bodies(
    config: ModelConfig,
    encoder: nn.Module | None,
    decoder: nn.Module | None,
    output_shape: tuple[int, ...],
) -> tuple[nn.Module, nn.Module]:
    """The user's encoder/decoder where given, the configured network's otherwise. The
    decoder writes ``output_shape``: the likelihood's ``param_shape``."""
    if encoder is None or decoder is None:
        built = build_networks(
            config.network,
            tuple(config.data_shape),
            config.latent_dim,
            config.hidden_dims,
            config.activation,
            output_shape,
        )
        encoder = encoder if encoder is not None else built[0]
        decoder = decoder if decoder is not None else built[1]
    return encoder, decoder


class _Autoencoder(nn.Module):
    """What VAE and AE share: the config, data shape, decode, save."""

    config: ModelConfig

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.config.data_shape)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def _check_x(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"expected data of shape [batch, {', '.join(map(str, self.data_shape))}], "
                f"got {list(x.shape)}"
            )

    def decode(self, z: torch.Tensor) -> Distribution:
        """p(x|z): ``z [*lead, m]`` -> distribution with batch ``[*lead]``, event data shape."""
        return self.likelihood(self.decoder(z))

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x|z], ``[*lead, *data_shape]``: what a picture of the decoder shows."""
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` draws z ~ N(0, I): E[x|z] ``[n, *data_shape]``."""
        z = self.prior.sample(n, generator=generator)
        return self.decode_mean(z)

    def save(self, path: str | Path, metadata: dict | None = None) -> None:
        """Write ``path/model.safetensors`` + ``path/config.json`` (atomic, no pickle)."""
        from vaekit.checkpoint import save_model

        save_model(self, path, metadata=metadata)


class VAE(_Autoencoder):
    """Variational autoencoder: q(z|x) from the encoder, p(x|z) from the decoder, p(z) prior.

    Build it from a :class:`~vaekit.config.ModelConfig` (``VAE(config)``), optionally passing
    your own ``encoder`` / ``decoder`` bodies (see ``vaekit.networks`` for the contract).
    """

    def __init__(
        self,
        config: ModelConfig,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config = config = _resolve(config, "vae")
        self.likelihood = build_likelihood(config)
        self.encoder, self.decoder = _bodies(config, encoder, decoder, self.likelihood.param_shape)
        self.posterior = POSTERIORS[config.posterior](self.encoder.out_features, config.latent_dim)
        self.prior = PRIORS[config.prior](config.latent_dim)

    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z|x): ``x [B, *data_shape]`` -> distribution with batch ``[B]``, event ``[m]``."""
        self._check_x(x)
        return self.posterior(self.encoder(x))

    def elbo(self, x: torch.Tensor, num_mc_samples: int = 1) -> ELBOTerms:
        """Per-example ELBO (nats) with L = ``num_mc_samples`` reparameterised draws.

        ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)): the expectation is the lecture's
        "sample mean" over L draws, the KL is in closed form. ``x [B, ...] -> [B]`` each.
        """
        q = self.encode(x)
        z = q.rsample((num_mc_samples,))  # [L, B, m]
        # log p(x|z) straight from the decoder output (no distribution objects per step).
        log_px_z = self.likelihood.log_density(self.decoder(z), x).mean(dim=0)  # [L, B] -> [B]
        kl = self.prior.kl(q, z)
        kl_groups = self.prior.kl_groups(q, z)
        return ELBOTerms(elbo=log_px_z - kl, log_px_z=log_px_z, kl=kl, kl_groups=kl_groups)

    def log_weights(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        """Importance log-weights log w = log p(x|z) + log p(z) - log q(z|x), ``[K, B]``.

        z_k ~ q(z|x), K = ``num_samples``. log mean_k exp(log w) is the IWAE_K bound
        (Burda et al. 2015, §3): ELBO <= IWAE_K <= log p(x), increasing in K.
        """
        return self._log_weights(self.encode(x), x, num_samples)

    def _log_weights(self, q: Distribution, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        z = q.rsample((num_samples,))  # [K, B, m]
        # log p(x|z) from the decoder output directly (same number as decode(z).log_prob(x)):
        # the decoder sees K*B rows in one call, x [B, ...] broadcasts over K.
        log_px_z = self.likelihood.log_density(self.decoder(z), x)  # [K, B]
        return log_px_z + self.prior.log_prob(z) - q.log_prob(z)

    @torch.no_grad()
    def log_likelihood(
        self, x: torch.Tensor, num_samples: int = 1000, chunk_size: int | None = None
    ) -> torch.Tensor:
        """Importance-sampled log p(x) per example in nats, ``[B]`` (Burda et al. 2015).

        Every example gets exactly ``num_samples`` draws from q(z|x); ``chunk_size`` only
        bounds memory (draws per decoder call), it does not change the estimator.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        chunk = min(chunk_size or num_samples, num_samples)
        q = self.encode(x)  # the encoder runs once per example
        partial = []  # logsumexp of each chunk's log-weights, [B] each
        for start in range(0, num_samples, chunk):
            k = min(chunk, num_samples - start)
            partial.append(torch.logsumexp(self._log_weights(q, x, k), dim=0))
        return torch.logsumexp(torch.stack(partial), dim=0) - math.log(num_samples)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x|z] at the posterior mean z = mu(x): ``[B, *data_shape]``."""
        return self.decode_mean(self.encode(x).mean)


class DeterministicCode(nn.Module):
    """The AE's bottleneck: a linear map from features to the code ``[B, m]``."""

    def __init__(self, feature_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.head = nn.Linear(feature_dim, latent_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


class AE(_Autoencoder):
    """Plain autoencoder: the lecture's contrast. Same networks as :class:`VAE`, the code is
    deterministic (no noise) and training only minimises reconstruction error (no KL).

    ``sample(n)`` decodes draws from N(0, I) exactly as the VAE does, which is the point of
    the comparison: nothing made the AE's codes look like N(0, I). An AE has no likelihood
    p(x), so it has no ``elbo`` or ``log_likelihood``.
    """

    def __init__(
        self,
        config: ModelConfig,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config = config = _resolve(config, "ae")
        self.likelihood = build_likelihood(config)
        self.encoder, self.decoder = _bodies(config, encoder, decoder, self.likelihood.param_shape)
        self.code = DeterministicCode(self.encoder.out_features, config.latent_dim)
        self.prior = PRIORS[config.prior](config.latent_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code z = f(x), ``[B, m]``."""
        self._check_x(x)
        return self.code(self.encoder(x))

    def reconstruction_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x | z = f(x)) per example in nats, ``[B]``: the AE's only training signal.

        For the unit-variance Gaussian decoder this is -||x - x_hat||^2 / 2 - D log(2 pi) / 2.
        """
        return self.likelihood.log_density(self.decoder(self.encode(x)), x)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x|z] at z = f(x): ``[B, *data_shape]``."""
        return self.decode_mean(self.encode(x))


MODELS: dict[str, type[_Autoencoder]] = {"vae": VAE, "ae": AE}


def build_model(config: ModelConfig) -> VAE | AE:
    """The model registered under ``config.kind``, built from its config."""
    return MODELS[config.kind](config)
