"""Statistics of a model's latent space over a data split, in nats where they are KLs.

* ``kl_per_dim``: mean over examples of the KL of each latent coordinate's *marginal*
  q(z_j|x) = N(mu_j, Sigma_jj) from N(0, 1), nats per example. For the diagonal posterior the
  coordinates are independent and these sum to ``kl`` exactly (up to Monte-Carlo-free float
  error). For the full-covariance posterior the total KL is the sum of the marginal KLs
  plus ``kl_correlation`` = KL(q(z|x) || prod_j q(z_j|x)) = -log|Corr| / 2 >= 0, reported
  separately, because p(z) = N(0, I) factorises.
* ``active_units``: the number of latent coordinates j with Var_x(E_q[z_j|x]) > 0.01
  (Burda et al. 2015, §5.2): a unit whose posterior mean ignores x carries no information.
  Where E_q[z_j|x] is a Monte-Carlo estimate from S draws (a flow posterior, a hierarchical
  model), its sampling variance mean_x Var_q(z_j|x) / S is subtracted first.
* ``aggregate_posterior``: moments of q(z) = mean_x q(z|x) against the prior N(0, I): its
  mean m = mean_x mu(x) and covariance C = Cov_x(mu(x)) + mean_x Sigma(x) (law of total
  covariance, exact, no sampling); ``mean_norm`` = ||m||, ``cov_frobenius_to_identity`` =
  ||C - I||_F, and ``kl_gaussian_fit_to_prior`` = KL(N(m, C) || N(0, I)) in nats.

``vaekit.evaluate`` puts these into ``eval.json``; the report's latent pictures use them too.
"""

from __future__ import annotations

from typing import Any

import torch

from vaekit.models import Model

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2015), §5.2


def active_units(
    mu: torch.Tensor,
    threshold: float = ACTIVE_UNIT_THRESHOLD,
    noise_variance: torch.Tensor | None = None,
) -> tuple[int, list]:
    """Burda et al.'s active units from posterior means ``mu [N, m]``.

    Returns the count of j with Var_x(E_q[z_j|x]) > ``threshold`` and those per-coordinate
    variances (population variance over the N examples). Where ``mu`` are Monte-Carlo
    estimates, ``noise_variance [m]`` is the mean over x of their sampling variance
    (Var_q(z_j|x) / S for S draws): it is subtracted, since the variance over x of a noisy
    mean is the variance of the true means plus the noise's (with S = 32 draws, a unit the
    model does not use would otherwise show 1/32 > 0.01 and count as active).
    """
    variance = mu.double().var(dim=0, unbiased=False)
    if noise_variance is not None:
        variance = (variance - noise_variance.double()).clamp_min(0.0)
    return int((variance > threshold).sum()), variance.tolist()


def gaussian_kl_to_standard_normal(mean: torch.Tensor, cov: torch.Tensor) -> float:
    """KL(N(mean, cov) || N(0, I)) = (tr C + ||m||^2 - d - log|C|) / 2 in nats (float64)."""
    mean, cov = mean.double(), cov.double()
    d = mean.numel()
    log_det = torch.linalg.slogdet(cov).logabsdet
    return float(0.5 * (torch.trace(cov) + mean.square().sum() - d - log_det))


def aggregate_posterior_stats(mu: torch.Tensor, mean_cov: torch.Tensor) -> dict[str, Any]:
    """Moments of q(z) = mean_x q(z|x) from ``mu [N, m]`` and mean_x Sigma(x) ``[m, m]``."""
    mu = mu.double()
    mean = mu.mean(dim=0)
    centred = mu - mean
    cov = centred.T @ centred / mu.shape[0] + mean_cov.double()
    eye = torch.eye(mean.numel(), dtype=torch.float64)
    return {
        "mean_norm": float(mean.norm()),
        "cov_frobenius_to_identity": float((cov - eye).norm()),
        "kl_gaussian_fit_to_prior": gaussian_kl_to_standard_normal(mean, cov),
        "mean": mean.tolist(),
        "cov_diagonal": cov.diagonal().tolist(),
    }


@torch.no_grad()
def latent_statistics(
    model: Model, x: torch.Tensor, batch_size: int = 1000, y: torch.Tensor | None = None
) -> dict[str, Any]:
    """KL per coordinate, active units and aggregate-posterior moments over ``x [N, ...]``
    (labels ``y`` for a conditional model), from the model's ``latent_moments``. The KL
    entries appear only where the model defines them (not for an AE's deterministic codes).

    Also returns the posterior means ``mu`` ``[N, m]`` (a tensor, not JSON) for plots.
    """
    device = next(model.parameters()).device
    mus, kl_dims, kls, layer_sizes, draws = [], [], [], None, None
    cov_sum = torch.zeros(model.latent_dim, model.latent_dim, dtype=torch.float64)
    for start in range(0, x.shape[0], batch_size):
        yb = y[start : start + batch_size].to(device) if y is not None else None
        moments = model.latent_moments(x[start : start + batch_size].to(device), y=yb)
        mus.append(moments.mean.double().cpu())
        layer_sizes, draws = moments.layer_sizes, moments.mean_draws
        if moments.kl_per_dim is not None:
            kl_dims.append(moments.kl_per_dim.double().cpu())
        if moments.kl is not None:
            kls.append(moments.kl.double().cpu())
        cov_sum += moments.covariance.double().sum(dim=0).cpu()
    mu = torch.cat(mus)
    n = mu.shape[0]
    # Monte-Carlo means carry sampling noise of variance mean_x Var_q(z_j|x) / S.
    noise = cov_sum.diagonal() / n / draws if draws else None
    count, variances = active_units(mu, noise_variance=noise)
    kl_stats: dict[str, Any] = {}
    if layer_sizes is not None:  # Burda et al. (2015) report active units per layer
        kl_stats["active_units_per_layer"] = [
            int((v > ACTIVE_UNIT_THRESHOLD).sum())
            for v in torch.tensor(variances).split(layer_sizes)
        ]
    if kl_dims:
        kl_per_dim = torch.cat(kl_dims).mean(dim=0)
        kl_stats["kl_per_dim"] = kl_per_dim.tolist()
        if kls:
            kl_stats["kl_correlation"] = float(torch.cat(kls).mean() - kl_per_dim.sum())
    return {
        **kl_stats,
        "active_units": count,
        "active_unit_threshold": ACTIVE_UNIT_THRESHOLD,
        "posterior_mean_variance": variances,
        "aggregate_posterior": aggregate_posterior_stats(mu, cov_sum / n),
        "mu": mu,
    }
