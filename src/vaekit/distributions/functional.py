"""Small pure math used across vaekit. Every formula cites where it comes from.

All functions work in float32 and float64 and reduce only the dimensions they say.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def log_mean_exp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log(mean(exp(x))) along ``dim``, computed stably with ``logsumexp``."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


# exp(-80) is 2e-35: a term that far below the largest adds nothing to a float32 or float64
# sum that already holds 1 (the largest's own term).
_NEGLIGIBLE_LOG = -80.0


def logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """log(sum(exp(x))) along ``dim``: ``torch.logsumexp``'s number (max, then exp of the
    differences), with each difference floored at -80 before its exp. The floor moves the
    sum (at least 1, the largest's own term) by less than its rounding; it keeps the CPU's
    vectorised float32 exp off its slow path for arguments below about -87 (20-100 times
    slower), where most of a mixture's far components land (a trained VampPrior's 500, for
    one). ``[..., n, ...] -> [...]`` without ``dim``; rows of -inf give -inf, as torch's."""
    top = x.amax(dim=dim, keepdim=True)
    shift = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = torch.exp(torch.clamp(x - shift, min=_NEGLIGIBLE_LOG)).sum(dim=dim)
    result = torch.log(total) + shift.squeeze(dim)
    return torch.where(top.squeeze(dim) == -math.inf, top.squeeze(dim), result)


def kl_diagonal_gaussian_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag(exp(log_var))) || N(0, I) ) in nats, summed over the last dimension.

    Kingma & Welling (2014), App. B; the lecture's regulariser is twice this:
    ``sum_j mu_j^2 + exp(s_j) - (1 + s_j)``.  Shapes: ``[..., m] -> [...]``.
    """
    return 0.5 * (mu.square() + log_var.exp() - 1.0 - log_var).sum(dim=-1)


def kl_full_gaussian_standard_normal(mu: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, L L^T) || N(0, I) ) in nats, the lecture's general closed form.

    ``0.5 * (tr(Sigma) + ||mu||^2 - m - log|Sigma|)`` with ``log|Sigma| = 2 sum log diag(L)``.
    Shapes: ``mu [..., m]``, ``scale_tril [..., m, m]`` (lower triangular, positive diagonal)
    ``-> [...]``.
    """
    m = mu.shape[-1]
    trace = scale_tril.square().sum(dim=(-2, -1))
    log_det = 2.0 * torch.diagonal(scale_tril, dim1=-2, dim2=-1).log().sum(dim=-1)
    return 0.5 * (trace + mu.square().sum(dim=-1) - m - log_det)


def expected_gaussian_log_density(
    mu_tilde: torch.Tensor, sigma_tilde: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """The lecture's lemma: E_{xi ~ N(mu~, Sigma~)} [ log N(xi; mu, Sigma) ] in nats.

    ``= log N(mu~; mu, Sigma) - tr(Sigma~ Sigma^{-1}) / 2``.
    Shapes: means ``[..., m]``, covariances ``[..., m, m]`` -> ``[...]``.
    """
    gaussian = torch.distributions.MultivariateNormal(mu, covariance_matrix=sigma)
    trace = torch.linalg.solve(sigma, sigma_tilde).diagonal(dim1=-2, dim2=-1).sum(-1)
    return gaussian.log_prob(mu_tilde) - 0.5 * trace


def slide_loss(
    x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor
) -> torch.Tensor:
    """The lecture's per-example loss, exactly as on the slide (no constants dropped or added).

    ``||x - x_hat||^2 + sum_j ( mu_j^2 + exp(s_j) - (1 + s_j) )``, with ``s = log_var``.
    Shapes: ``x, x_hat [B, *event]`` (``x_hat`` may carry leading sample dims ``[L, B, *event]``,
    which are averaged: the slide's "approx. expectation by sample mean"); ``mu, log_var [B, m]``
    ``-> [B]``.
    """
    event_dims = tuple(range(-(x.dim() - 1), 0))
    squared_error = (x - x_hat).square().sum(dim=event_dims)
    if squared_error.dim() > 1:  # [L, B]: Monte-Carlo mean over the L samples
        squared_error = squared_error.mean(dim=0)
    regulariser = (mu.square() + log_var.exp() - (1.0 + log_var)).sum(dim=-1)
    return squared_error + regulariser
