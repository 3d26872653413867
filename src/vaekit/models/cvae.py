"""The conditional VAE: p(x|z,y), q(z|x,y) and a prior p(z) or p(z|y) for a class label y.

Kingma et al. (2014, "semi-supervised learning with deep generative models", model M2 with y
observed) and Sohn et al. (2015): the label enters the encoder's posterior head and the
decoder as a one-hot vector, so the model learns a density of x for each class. Every quantity
is conditional on y: the ELBO bounds log p(x|y), and the importance-sampled estimate is of
log p(x|y) (nats per example). ``sample(n, y=...)`` draws images of the given classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution

from vaekit.distributions import POSTERIORS, DiagonalGaussian, StandardNormalPrior, build_likelihood
from vaekit.distributions.priors import monte_carlo_kl
from vaekit.models.base import ELBOTerms, LatentMoments, LikelihoodModel
from vaekit.models.bodies import BodyConfig, build_bodies, resolve_network
from vaekit.models.registry import register_model
from vaekit.settings import ConfigError, setting


@dataclass
class CVAEConfig(BodyConfig):
    """The conditional VAE's ``[model]`` table (``kind = "cvae"``)."""

    kind: str = dataclasses.field(default="cvae", init=False)
    num_classes: int | None = setting(
        None,
        help="conditional VAE: the number of classes C (labels 0..C-1)",
        shown_default="none: from the training labels",
    )
    posterior: str = setting(
        "diagonal", help="q(z|x,y): diagonal or full (a posterior family with no options)"
    )
    # "standard-normal": p(z) = N(0, I), y only in the decoder; "conditional": p(z|y) =
    # N(mu_y, diag(sigma_y^2)), a learned mean and scale per class (starting at N(0, I)).
    prior: Literal["standard-normal", "conditional"] = setting(
        "standard-normal", help="p(z): standard-normal, or conditional (a learned p(z|y))"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError(f"model.num_classes must be >= 2, got {self.num_classes}")
        if self.posterior not in POSTERIORS or POSTERIORS[self.posterior].config_fields:
            simple = [n for n, c in POSTERIORS.items() if not c.config_fields]
            raise ConfigError(
                f"model.posterior must be one of {', '.join(map(repr, simple))}; "
                f"got {self.posterior!r}"
            )

    def fill_from_data(self, labels: Any) -> None:
        """C = the largest training label + 1; the data must have integer labels >= 0."""
        if labels is None or labels.is_floating_point() or labels.numel() == 0:
            raise ValueError(
                "model 'cvae' is conditioned on class labels, but the training data has no "
                "integer labels (use a labelled dataset: MNIST, an image folder with class "
                "sub-folders, a .npz with a labels array, a table with --label-column NAME)"
            )
        if int(labels.min()) < 0:
            raise ValueError(f"model 'cvae' needs labels >= 0, got {int(labels.min())}")
        needed = int(labels.max()) + 1
        if self.num_classes is None:
            self.num_classes = max(needed, 2)
        elif needed > self.num_classes:
            raise ValueError(
                f"model.num_classes is {self.num_classes}, but the data has label {needed - 1}"
            )


class ConditionalGaussianPrior(nn.Module):
    """p(z|y) = N(mu_y, diag(exp(log_var_y))): one learned row ``[2m]`` per class, zero at the
    start (so p(z|y) = N(0, I) before training)."""

    def __init__(self, num_classes: int, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.table = nn.Embedding(num_classes, 2 * latent_dim)
        nn.init.zeros_(self.table.weight)

    def given(self, y: torch.Tensor) -> DiagonalGaussian:
        """p(z|y) for labels ``y [B]``: batch ``[B]``, event ``[m]``."""
        mu, log_var = self.table(y).chunk(2, dim=-1)
        return DiagonalGaussian(mu, log_var)


@register_model
class ConditionalVAE(LikelihoodModel):
    """A VAE conditioned on a class label y (module docstring). Every method needs ``y``:
    integer labels ``[B]`` in 0..C-1."""

    name = "cvae"
    description = "conditional VAE: p(x|z,y), q(z|x,y), prior p(z) or p(z|y); needs labels"
    config_class = CVAEConfig
    has_continuous_latent = True
    has_posterior = True
    takes_labels = True
    objectives = ("elbo", "iwae")

    def __init__(
        self,
        config: CVAEConfig,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config = config = self.own_config(config)
        resolve_network(config)
        if config.num_classes is None:
            raise ValueError("model.num_classes is unset: fill it from the data before building")
        C, m = config.num_classes, config.latent_dim
        self.likelihood = build_likelihood(config)
        # The decoder reads [z, one_hot(y)]: its input is m + C wide.
        encoder, decoder = build_bodies(
            config, encoder, decoder, self.likelihood.param_shape, decoder_input_dim=m + C
        )
        self.encoder, self.decoder = encoder, decoder
        # The posterior head reads [features, one_hot(y)].
        self.posterior = POSTERIORS[config.posterior](self.encoder.out_features + C, m)
        if config.prior == "conditional":
            self.conditional_prior = ConditionalGaussianPrior(C, m)
        self.prior = StandardNormalPrior(m)  # p(z), or the reference for sampling z only

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def network_bodies(self) -> list[nn.Module]:
        """The encoder and the decoder."""
        return [self.encoder, self.decoder]

    def _one_hot(self, y: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        if y is None:
            raise ValueError("model 'cvae' is conditional: it needs the labels y")
        if y.is_floating_point() or (y.numel() and (y.min() < 0 or y.max() >= self.num_classes)):
            raise ValueError(f"labels must be integers in 0..{self.num_classes - 1}")
        return F.one_hot(y.long(), self.num_classes).to(dtype)

    def _with_label(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """``[z, one_hot(y)]``: ``z [*lead, B, m]``, ``y [B]`` -> ``[*lead, B, m + C]``."""
        code = self._one_hot(y, z.dtype).expand(*z.shape[:-1], self.num_classes)
        return torch.cat([z, code], dim=-1)

    def prior_given(self, y: torch.Tensor) -> Distribution | StandardNormalPrior:
        """p(z|y) (conditional prior) or p(z) = N(0, I): an object with ``log_prob``."""
        if self.config.prior == "conditional":
            return self.conditional_prior.given(y)
        return self.prior

    def encode(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> Distribution:
        """q(z|x,y): batch ``[B]``, event ``[m]``."""
        self.check_input(x, y)
        features = self.encoder(x)
        return self.posterior(torch.cat([features, self._one_hot(y, features.dtype)], dim=-1))

    def decode_params(self, z: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder output for ``[z, one_hot(y)]``: ``z [*lead, m]`` with ``y``
        broadcastable to ``lead``, ``[*lead, *param_shape]``."""
        return self.decoder(self._with_label(z, y))

    def group_decoder(self, group: int) -> nn.Module:
        """The decoder, which reads ``[z, one_hot(y)]`` ``[B, m + C]``: one latent group."""
        if group != 0:
            raise IndexError(f"this model has one latent group, not group {group}")
        return self.decoder

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        y: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """E[x|z,y] for z ~ p(z|y), ``[n, *data_shape]``; ``y`` is one label for all ``n``
        or ``[n]`` labels."""
        p = next(self.parameters())
        if y is None:
            raise ValueError("model 'cvae' samples images of a class: give the labels y")
        y = torch.as_tensor(y, device=p.device).long().expand(n)
        eps = self.prior.sample(n, generator=generator)  # N(0, I) draws
        if self.config.prior == "conditional":
            q = self.conditional_prior.given(y)
            eps = q.loc + torch.exp(0.5 * q.log_var) * eps
        return self.decode_mean(eps, y=y)

    def elbo(
        self, x: torch.Tensor, num_mc_samples: int = 1, *, y: torch.Tensor | None = None
    ) -> ELBOTerms:
        """ELBO of log p(x|y) (nats per example ``[B]``): E_q[log p(x|z,y)] - KL(q(z|x,y) ||
        p(z|y)), the KL in closed form (both Gaussian)."""
        q = self.encode(x, y=y)
        z = q.rsample((num_mc_samples,))  # [L, B, m]
        log_px_z = self.likelihood.log_density(self.decoder(self._with_label(z, y)), x).mean(0)
        kl = self._kl(q, y, z)
        return ELBOTerms(elbo=log_px_z - kl, log_px_z=log_px_z, kl=kl)

    def _kl(self, q: Distribution, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x,y) || p(z|y)) ``[B]``: closed form for the Gaussian families (against
        N(0, I) or the diagonal Gaussian p(z|y)), Monte Carlo at the draws ``z`` otherwise."""
        if self.config.prior == "standard-normal":
            return self.prior.kl(q, z)
        p = self.conditional_prior.given(y)
        if q.has_closed_form_kl:
            return q.kl_diagonal_gaussian(p.loc, p.log_var)
        return monte_carlo_kl(q, p.log_prob(z), z)

    def proposal(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> Distribution:
        return self.encode(x, y=y)

    def log_weight_terms_given(
        self,
        proposal: Distribution,
        x: torch.Tensor,
        num_samples: int,
        *,
        y: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(x|z,y), log p(z|y) - log q(z|x,y)), ``[K, B]`` each."""
        z = proposal.rsample((num_samples,))  # [K, B, m]
        log_px_z = self.likelihood.log_density(self.decoder(self._with_label(z, y)), x)
        return log_px_z, self.prior_given(y).log_prob(z) - proposal.log_prob(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z,y] at the posterior mean of q(z|x,y), ``[B, *data_shape]``."""
        return self.decode_mean(self.encode(x, y=y).mean, y=y)

    def latent_moments(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> LatentMoments:
        """q(z|x,y)'s mean and covariance; its KL, and per coordinate where p(z) = N(0, I)."""
        q = self.encode(x, y=y)
        mean, covariance = q.moments()
        draws = q.moment_draws
        if self.config.prior == "conditional":
            kl = self._kl(q, y, q.rsample((1,)))
            return LatentMoments(mean, covariance, kl, mean_draws=draws)
        per_dim = q.marginal_kl_standard_normal()
        return LatentMoments(mean, covariance, self.prior.kl(q), per_dim, mean_draws=draws)
