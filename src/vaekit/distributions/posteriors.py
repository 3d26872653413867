"""Posterior families q(z|x): a head on the encoder's features that returns a distribution.

Both families are Gaussian, as on the lecture's slides: ``DiagonalGaussianPosterior`` is the
simplified slide (mean and log-variance heads), ``FullCovariancePosterior`` the general
"close form of L" slides (a Cholesky factor with a positive diagonal).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal
from torch.distributions.utils import _standard_normal

from vaekit.distributions.flows import IAFPosterior
from vaekit.distributions.functional import (
    LOG_2PI,
    kl_diagonal_gaussian_standard_normal,
    kl_full_gaussian_standard_normal,
)


class DiagonalGaussian(Independent):
    """N(mu, diag(exp(log_var))) over the last dimension, keeping ``log_var`` exactly.

    ``rsample`` is the reparameterisation z = mu + exp(log_var / 2) * eps, eps ~ N(0, I)
    (torch's ``Normal.rsample``). Shapes: ``loc, log_var [B, m]``; event shape ``[m]``.
    """

    def __init__(self, loc: torch.Tensor, log_var: torch.Tensor) -> None:
        # Built on every training step: torch's Normal (argument broadcasting, shape checks)
        # is made only when a method of the base distribution is asked for; rsample and
        # log_prob, the training step's two, are written out here. The shapes are the same.
        self._loc, self.log_var = loc, log_var
        self._scale: torch.Tensor | None = None
        self._base: Normal | None = None
        self.reinterpreted_batch_ndims = 1
        Distribution.__init__(self, loc.shape[:-1], loc.shape[-1:], validate_args=False)

    @property
    def base_dist(self) -> Normal:
        """N(mu, exp(log_var / 2)) per coordinate (batch ``[B, m]``), built on first use."""
        if self._base is None:
            self._base = Normal(self._loc, self.scale, validate_args=False)
        return self._base

    @base_dist.setter
    def base_dist(self, value: Normal) -> None:  # Independent.expand assigns it
        self._base = value

    @property
    def loc(self) -> torch.Tensor:
        return self._loc

    @property
    def scale(self) -> torch.Tensor:
        """exp(log_var / 2), ``[B, m]`` (computed once)."""
        if self._scale is None:
            self._scale = torch.exp(0.5 * self.log_var)
        return self._scale

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """z = mu + exp(log_var / 2) * eps, ``[*sample_shape, B, m]``: the same draws and
        arithmetic as ``Normal.rsample`` (one standard-normal tensor from the global stream)."""
        shape = self._extended_shape(sample_shape)
        eps = _standard_normal(shape, dtype=self._loc.dtype, device=self._loc.device)
        return self._loc + eps * self.scale

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log q(z) in nats, ``[..., m] -> [...]``: -0.5 sum((z - mu)^2 exp(-log_var) + log_var
        + log 2 pi), written out (the same number as ``Independent(Normal)``, fewer passes)."""
        centred = value - self.loc
        return -0.5 * (
            (centred.square() * torch.exp(-self.log_var)).sum(-1)
            + self.log_var.sum(-1)
            + value.shape[-1] * LOG_2PI
        )

    def log_prob_each(self, value: torch.Tensor) -> torch.Tensor:
        """log q_k(z) under every member k of a batch ``[K]`` of these Gaussians at once:
        ``value [..., m] -> [..., K]`` (nats), the same numbers as ``log_prob`` of ``value``
        broadcast against the batch. Expanding the square, sum_j (z_j - mu_kj)^2 / v_kj =
        z^2 . (1/v_k) - 2 z . (mu_k / v_k) + sum_j mu_kj^2 / v_kj, makes it two matrix
        products: no ``[..., K, m]`` temporary, which for a VampPrior of 500 components is
        most of a training step and of an evaluation's time."""
        if self.loc.dim() != 2:
            raise ValueError(f"log_prob_each needs a batch [K], got {list(self.loc.shape[:-1])}")
        # The three terms are each as large as z^2 / v (thousands for a narrow component)
        # and cancel to the small distance of a near one: float32 leaves errors of about
        # 1e-3 nats. So they run in float64, except where autograd records them (a
        # training step), where the input's float32 suffices: its error is far below a
        # minibatch's noise, and the float64 products, their backward and the casts were a
        # measurable share of a VampPrior step. Every number vaekit reports (evaluation,
        # validation, scores) is computed without gradients, so in float64.
        recording = torch.is_grad_enabled() and (
            value.requires_grad or self.loc.requires_grad or self.log_var.requires_grad
        )
        dtype = value.dtype if recording else torch.float64
        loc, log_var = self.loc.to(dtype), self.log_var.to(dtype)
        precision = torch.exp(-log_var)  # [K, m]
        flat = value.reshape(-1, value.shape[-1]).to(dtype)  # [N, m]
        constant = -0.5 * ((loc.square() * precision).sum(-1) + log_var.sum(-1))  # [K]
        constant = constant - 0.5 * value.shape[-1] * LOG_2PI
        # One product, [z^2, z] [N, 2m] @ [-1/(2 v); mu / v] [2m, K], the constant added in
        # the same call: half the calls and passes over [N, K] of two products and sums.
        weights = torch.cat([-0.5 * precision, loc * precision], dim=-1).T  # [2m, K]
        log_q = torch.addmm(constant, torch.cat([flat.square(), flat], dim=-1), weights)
        return log_q.to(value.dtype).reshape(*value.shape[:-1], self.loc.shape[0])

    # Every posterior family says whether KL(q || N(0, I)) has a closed form; priors use it
    # to choose between the closed form and a Monte-Carlo estimate.
    has_closed_form_kl = True
    moment_draws: int | None = None  # ``moments()`` are exact, not Monte-Carlo estimates

    def kl_standard_normal(self) -> torch.Tensor:
        """Closed-form KL(q || N(0, I)) in nats per example, ``[B]``."""
        return kl_diagonal_gaussian_standard_normal(self.loc, self.log_var)

    @property
    def scale_tril(self) -> torch.Tensor:
        """Cholesky factor of the covariance, ``[B, m, m]``: diag(exp(log_var / 2))."""
        return torch.diag_embed(self.stddev)

    @property
    def covariance_matrix(self) -> torch.Tensor:
        """Sigma(x) = diag(exp(log_var)), ``[B, m, m]``."""
        return torch.diag_embed(self.variance)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean ``[B, m]``, covariance ``[B, m, m]``), exact."""
        return self.loc, self.covariance_matrix

    def kl_diagonal_gaussian(self, loc: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """Closed-form KL(q || N(loc, diag(exp(log_var)))) in nats, ``[...]``: 0.5 sum(v_p -
        v_q + (e^{v_q} + (mu_q - mu_p)^2) e^{-v_p} - 1) over the last dimension."""
        diff = self.loc - loc
        return 0.5 * (
            log_var
            - self.log_var
            + (self.log_var.exp() + diff.square()) * torch.exp(-log_var)
            - 1.0
        ).sum(-1)

    def marginal_kl_standard_normal(self) -> torch.Tensor:
        """KL(q(z_j|x) || N(0, 1)) for each coordinate, nats, ``[B, m]``: the exact terms of
        the closed-form KL (Kingma & Welling 2014, App. B), which sum to it."""
        return 0.5 * (self.loc.square() + self.log_var.exp() - 1.0 - self.log_var)

    def kl_standard_normal_groups(self) -> torch.Tensor:
        """The closed-form KL to N(0, I) split into independent groups, nats, ``[B, m]``: one
        per coordinate (q and the prior both factorise), summing to ``kl_standard_normal``."""
        return 0.5 * (self.loc.square() + self.log_var.exp() - 1.0 - self.log_var)


class FullCovarianceGaussian(MultivariateNormal):
    """N(mu, L L^T) with L lower triangular with a positive diagonal. Event shape ``[m]``."""

    def __init__(self, loc: torch.Tensor, scale_tril: torch.Tensor) -> None:
        super().__init__(loc, scale_tril=scale_tril, validate_args=False)

    has_closed_form_kl = True
    moment_draws: int | None = None  # ``moments()`` are exact, not Monte-Carlo estimates

    def kl_standard_normal(self) -> torch.Tensor:
        """Closed-form KL(q || N(0, I)) in nats per example, ``[B]``."""
        return kl_full_gaussian_standard_normal(self.loc, self.scale_tril)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean ``[B, m]``, covariance ``[B, m, m]``), exact."""
        return self.loc, self.covariance_matrix

    def kl_diagonal_gaussian(self, loc: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """Closed-form KL(q || N(loc, D)), D = diag(exp(log_var)), in nats ``[...]``:
        0.5 (tr(D^-1 Sigma) + (mu - loc)^T D^-1 (mu - loc) - m + log|D| - log|Sigma|), with
        tr(D^-1 Sigma) = sum_j Sigma_jj / D_jj and log|Sigma| = 2 sum log diag(L)."""
        inv = torch.exp(-log_var)
        diff = self.loc - loc
        trace = (self.variance * inv).sum(-1)
        log_det_q = 2.0 * torch.diagonal(self.scale_tril, dim1=-2, dim2=-1).log().sum(-1)
        m = self.loc.shape[-1]
        return 0.5 * (trace + (diff.square() * inv).sum(-1) - m + log_var.sum(-1) - log_det_q)

    def marginal_kl_standard_normal(self) -> torch.Tensor:
        """KL(N(mu_j, Sigma_jj) || N(0, 1)) for each coordinate, nats, ``[B, m]``. Their sum
        falls short of the total KL by KL(q || prod_j q_j) = -log|Corr| / 2 >= 0."""
        log_var = self.variance.log()
        return 0.5 * (self.loc.square() + log_var.exp() - 1.0 - log_var)

    def kl_standard_normal_groups(self) -> torch.Tensor:
        """The KL as one group, ``[B, 1]``: a correlated q does not split it by coordinate."""
        return self.kl_standard_normal().unsqueeze(-1)


class DiagonalGaussianPosterior(nn.Module):
    """Linear heads features -> (mu, log_var); returns a :class:`DiagonalGaussian`.

    Shapes: ``features [B, feature_dim] -> q`` with batch shape ``[B]``, event ``[m]``.
    """

    config_fields: tuple[str, ...] = ()  # no model-config options

    def __init__(self, feature_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.head = nn.Linear(feature_dim, 2 * latent_dim)

    def forward(self, features: torch.Tensor) -> DiagonalGaussian:
        mu, log_var = self.head(features).chunk(2, dim=-1)
        return DiagonalGaussian(mu, log_var)


class FullCovariancePosterior(nn.Module):
    """Linear heads features -> (mu, L) with L = tril(raw, -1) + diag(exp(raw_diag)).

    ``exp`` keeps the diagonal positive, so L is a valid Cholesky factor of Sigma = L L^T
    and ``log|Sigma| = 2 sum raw_diag`` exactly. Shapes: ``features [B, feature_dim] -> q``
    with batch ``[B]``, event ``[m]``.
    """

    config_fields: tuple[str, ...] = ()  # no model-config options

    def __init__(self, feature_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        m = latent_dim
        self.head = nn.Linear(feature_dim, m + m + m * (m - 1) // 2)
        rows, cols = torch.tril_indices(m, m, offset=-1)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)

    def forward(self, features: torch.Tensor) -> FullCovarianceGaussian:
        m = self.latent_dim
        params = self.head(features)
        mu, log_diag, off = params[..., :m], params[..., m : 2 * m], params[..., 2 * m :]
        scale_tril = torch.diag_embed(log_diag.exp())  # [B, m, m], a fresh tensor
        scale_tril[..., self._rows, self._cols] = off  # strictly lower triangle
        return FullCovarianceGaussian(mu, scale_tril)


# name -> head class ``(feature_dim, latent_dim, **options)``; a class's ``config_fields``
# names the model-config fields passed as options (none for the Gaussian heads).
POSTERIORS: dict[str, type[nn.Module]] = {
    "diagonal": DiagonalGaussianPosterior,
    "full": FullCovariancePosterior,
    "iaf": IAFPosterior,
}
