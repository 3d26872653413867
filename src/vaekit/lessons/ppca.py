"""Probabilistic PCA, the mathematics: the one latent-variable model where everything the
lecture derives is exact.

Model (Tipping & Bishop 1999): z ~ N(0, I_m), x = W z + b + eps, eps ~ N(0, sigma^2 I_D).

* ``PPCA.log_px``: exact log p(x) = log N(x; b, W W^T + sigma^2 I) (Cholesky, float64);
* ``PPCA.posterior``: exact p(z|x) = N(M^{-1} W^T (x - b), sigma^2 M^{-1}), M = W^T W + sigma^2 I;
* ``fit_mle``: the closed-form maximum-likelihood solution (eigen-decomposition of the sample
  covariance, Tipping & Bishop 1999 §3.2);
* ``em_step`` / ``run_em``: exact EM (Tipping & Bishop 1999 App. A / Bishop PRML §12.2.2): the
  E-step takes the true posterior, so the ELBO touches log p(x) and log p(x) never decreases;
* ``gaussian_elbo`` / ``gaussian_gap``: the ELBO of any Gaussian q(z|x) in closed form and its
  gap KL(q || p(z|x)); ``log_px == gaussian_elbo + gaussian_gap`` exactly;
* ``optimal_diagonal_q``: the best fully factorised q for a Gaussian posterior
  (precisions = diag of the posterior precision) and its gap, ``diagonal_gap``.

Nothing here knows about neural networks or the CLI. Every quantity is per example in nats.
Shapes: ``x [N, D]``, ``W [D, m]``, ``b [D]``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from vaekit.distributions.functional import LOG_2PI
from vaekit.support.spelling import spell


@dataclass
class PPCA:
    """Parameters of probabilistic PCA: ``W [D, m]``, ``b [D]``, noise variance ``sigma2``."""

    W: torch.Tensor
    b: torch.Tensor
    sigma2: torch.Tensor  # 0-dim tensor

    @property
    def latent_dim(self) -> int:
        return self.W.shape[1]

    def covariance(self) -> torch.Tensor:
        """Marginal covariance of x, ``W W^T + sigma^2 I``: ``[D, D]``."""
        eye = torch.eye(self.W.shape[0], dtype=self.W.dtype, device=self.W.device)
        return self.W @ self.W.T + self.sigma2 * eye

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) = log N(x; b, W W^T + sigma^2 I) per example in nats, ``[N]``."""
        chol = torch.linalg.cholesky(self.covariance())
        diff = (x - self.b).T  # [D, N]
        white = torch.linalg.solve_triangular(chol, diff, upper=False)  # L^{-1}(x - b)
        log_det = 2.0 * torch.diagonal(chol).log().sum()
        d = x.shape[1]
        return -0.5 * (white.square().sum(dim=0) + log_det + d * LOG_2PI)

    def m_matrix(self) -> torch.Tensor:
        """M = W^T W + sigma^2 I, ``[m, m]``; the posterior precision is M / sigma^2."""
        eye = torch.eye(self.latent_dim, dtype=self.W.dtype, device=self.W.device)
        return self.W.T @ self.W + self.sigma2 * eye

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact p(z|x) = N(M^{-1} W^T (x - b), sigma^2 M^{-1}): mean ``[N, m]``, cov ``[m, m]``.

        (Tipping & Bishop 1999, eq. 6.) The covariance is the same for every x.
        """
        m_inv = torch.linalg.inv(self.m_matrix())
        mean = (x - self.b) @ self.W @ m_inv.T
        cov = self.sigma2 * m_inv
        return mean, 0.5 * (cov + cov.T)

    def to_dict(self) -> dict[str, Any]:
        return {"W": self.W.tolist(), "b": self.b.tolist(), "sigma2": float(self.sigma2)}


def fit_mle(x: torch.Tensor, latent_dim: int) -> PPCA:
    """Closed-form maximum-likelihood PPCA (Tipping & Bishop 1999, eqs. 7-8).

    b = sample mean; with S the sample covariance (divided by N) and its eigenvalues
    l_1 >= ... >= l_D: sigma^2 = mean(l_{m+1..D}), W = U_m (L_m - sigma^2 I)^{1/2} (rotation
    R = I). Needs ``latent_dim < D``.
    """
    n, d = x.shape
    if not 1 <= latent_dim < d:
        raise ValueError(
            f"{spell('--latent-dim', 'latent_dim')} must be between 1 and D - 1 = {d - 1}, "
            f"got {latent_dim}"
        )
    b = x.mean(dim=0)
    centred = x - b
    cov = centred.T @ centred / n
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals, evecs = evals.flip(0), evecs.flip(1)
    sigma2 = evals[latent_dim:].mean()
    if not sigma2 > 1e-12 * evals[0].abs().clamp_min(1e-300):
        # N examples span at most N - 1 directions: with no variance left beyond the first m,
        # sigma^2 = 0, and every posterior and EM step would divide by it.
        raise ValueError(
            f"PPCA with m = {latent_dim} needs variance beyond the first m principal "
            f"directions; these {n} examples have none (sigma^2 = 0): give at least "
            f"{latent_dim + 2} examples ({spell('--max-examples', 'max_examples')}) that vary "
            f"in more than {latent_dim} directions"
        )
    scale = (evals[:latent_dim] - sigma2).clamp_min(0.0).sqrt()
    return PPCA(W=evecs[:, :latent_dim] * scale, b=b, sigma2=sigma2)


def em_step(params: PPCA, x: torch.Tensor) -> PPCA:
    """One exact EM iteration (Tipping & Bishop 1999 App. A; Bishop PRML eqs. 12.54-12.57).

    E-step: the true posterior moments E[z_n] and E[z_n z_n^T] = sigma^2 M^{-1} + E[z_n]E[z_n]^T.
    M-step: W' = (sum_n (x_n - b) E[z_n]^T)(sum_n E[z_n z_n^T])^{-1};
    sigma'^2 = 1/(N D) sum_n (||x_n - b||^2 - 2 E[z_n]^T W'^T (x_n - b) + tr(E[z_n z_n^T] W'^T W')).
    b stays at the data mean (its MLE whatever W, sigma).
    """
    n, d = x.shape
    b = x.mean(dim=0)
    centred = x - b
    ez, cov = params.posterior(x)  # [N, m], [m, m]
    sum_ezz = n * cov + ez.T @ ez  # sum_n E[z z^T], [m, m]
    xz = centred.T @ ez  # sum_n (x_n - b) E[z_n]^T, [D, m]
    w_new = torch.linalg.solve(sum_ezz, xz.T).T  # xz @ sum_ezz^{-1} (sum_ezz is symmetric)
    sigma2 = (
        centred.square().sum()
        - 2.0 * (ez * (centred @ w_new)).sum()
        + torch.trace(sum_ezz @ (w_new.T @ w_new))
    ) / (n * d)
    return PPCA(W=w_new, b=b, sigma2=sigma2)


def gaussian_elbo(
    params: PPCA, x: torch.Tensor, q_mean: torch.Tensor, q_cov: torch.Tensor
) -> torch.Tensor:
    """ELBO of q(z|x) = N(q_mean, q_cov) under PPCA, exact (no sampling), ``[N]`` nats.

    E_q[log p(x|z)] = -D/2 log(2 pi sigma^2) - (||x - W mu - b||^2 + tr(W^T W Sigma)) / (2 sigma^2)
    (the lecture's lemma), minus KL(q || N(0, I)) = (tr Sigma + ||mu||^2 - m - log|Sigma|) / 2.
    ``q_mean [N, m]``; ``q_cov [m, m]`` or ``[N, m, m]``. Differentiable in everything.
    """
    wtw = params.W.T @ params.W
    return elbo_from_moments(
        params,
        x,
        q_mean,
        trace_wtw_sigma=(wtw * q_cov).sum(dim=(-2, -1)),  # tr(W^T W Sigma), Sigma symmetric
        trace_sigma=torch.diagonal(q_cov, dim1=-2, dim2=-1).sum(-1),
        log_det_sigma=torch.logdet(q_cov),
    )


def elbo_from_moments(
    params: PPCA,
    x: torch.Tensor,
    q_mean: torch.Tensor,
    trace_wtw_sigma: torch.Tensor,
    trace_sigma: torch.Tensor,
    log_det_sigma: torch.Tensor,
) -> torch.Tensor:
    """``gaussian_elbo`` from the covariance's three summaries (each ``[N]`` or scalar)."""
    d, m = params.W.shape
    resid = x - q_mean @ params.W.T - params.b  # [N, D]
    expected_log_px_z = (
        -0.5 * d * (LOG_2PI + params.sigma2.log())
        - 0.5 * (resid.square().sum(dim=1) + trace_wtw_sigma) / params.sigma2
    )
    kl = 0.5 * (trace_sigma + q_mean.square().sum(1) - m - log_det_sigma)
    return expected_log_px_z - kl


def gaussian_gap(
    params: PPCA, x: torch.Tensor, q_mean: torch.Tensor, q_cov: torch.Tensor
) -> torch.Tensor:
    """KL(q(z|x) || p(z|x)) in nats per example, ``[N]``, in closed form.

    KL(N(a, A) || N(c, C)) = (tr(C^{-1} A) + (c - a)^T C^{-1} (c - a) - m + log|C| - log|A|) / 2.
    """
    post_mean, post_cov = params.posterior(x)
    m = params.latent_dim
    prec = torch.linalg.inv(post_cov)
    diff = post_mean - q_mean
    return 0.5 * (
        (prec * q_cov).sum(dim=(-2, -1))
        + ((diff @ prec) * diff).sum(1)
        - m
        + torch.logdet(post_cov)
        - torch.logdet(q_cov)
    )


def optimal_diagonal_q(params: PPCA, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The diagonal Gaussian q minimising KL(q || p(z|x)): mean ``[N, m]``, cov ``[m, m]``.

    For p = N(c, C) with precision P = C^{-1}, minimising KL(q || p) over q = N(a, diag(v))
    gives a = c and v_j = 1 / P_jj (set the derivative of the KL to zero). Here P = M / sigma^2.
    """
    mean, _ = params.posterior(x)
    precision_diag = params.m_matrix().diagonal() / params.sigma2
    return mean, torch.diag(1.0 / precision_diag)


def diagonal_gap(params: PPCA) -> torch.Tensor:
    """The gap the best diagonal q leaves, the same for every x (nats per example):

    0.5 * (sum_j log P_jj - log|P|) with P = M / sigma^2 the posterior precision. It is >= 0
    (Hadamard's inequality) and 0 exactly when W^T W is diagonal (orthogonal columns of W).
    """
    precision = params.m_matrix() / params.sigma2
    return 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision))


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between the column spaces of ``a`` and ``b``."""
    qa, _ = torch.linalg.qr(a)
    qb, _ = torch.linalg.qr(b)
    # sines from the part of col(b) outside col(a): accurate for small angles (arccos of the
    # cosines is not). Needs a.shape[1] == b.shape[1].
    sines = torch.linalg.svdvals(qb - qa @ (qa.T @ qb)).clamp(0.0, 1.0)
    return torch.arcsin(sines).flip(0)


def off_diagonal_ratio(W: torch.Tensor) -> float:
    """||offdiag(W^T W)||_F / ||W^T W||_F: 0 when the columns of W are orthogonal."""
    gram = W.T @ W
    off = gram - torch.diag(gram.diagonal())
    return float(off.norm() / gram.norm())


def synthetic_ppca(
    num_examples: int = 2000,
    data_dim: int = 10,
    latent_dim: int = 3,
    sigma: float = 0.5,
    seed: int = 0,
) -> tuple[torch.Tensor, PPCA]:
    """Data from a known PPCA (float64, seeded): ``x [N, D]`` and the true parameters.

    The true W has deliberately non-orthogonal columns (a random Gaussian matrix plus a shared
    direction), so its exact posterior is correlated.
    """
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(data_dim, 1, generator=g, dtype=torch.float64)
    W = torch.randn(data_dim, latent_dim, generator=g, dtype=torch.float64) + shared
    b = torch.randn(data_dim, generator=g, dtype=torch.float64)
    true = PPCA(W=W, b=b, sigma2=torch.tensor(sigma**2, dtype=torch.float64))
    z = torch.randn(num_examples, latent_dim, generator=g, dtype=torch.float64)
    noise = sigma * torch.randn(num_examples, data_dim, generator=g, dtype=torch.float64)
    return z @ W.T + b + noise, true


def mixing_rotation(m: int) -> torch.Tensor:
    """An ``[m, m]`` rotation that mixes every pair of axes: the product of Givens rotations
    by 45 degrees in each plane (i, j), i < j. For W with orthogonal columns of different
    norms, W R has non-orthogonal columns (the (i, j) entry of R^T W^T W R is non-zero)."""
    rotation = torch.eye(m, dtype=torch.float64)
    c = s = math.sqrt(0.5)
    for i in range(m):
        for j in range(i + 1, m):
            givens = torch.eye(m, dtype=torch.float64)
            givens[i, i], givens[i, j], givens[j, i], givens[j, j] = c, -s, s, c
            rotation = rotation @ givens
    return rotation


@dataclass
class Record:
    """One row of a method's history: nats per example on the data."""

    step: int
    log_px: float
    elbo: float
    gap: float
    wtw_off_diagonal_ratio: float  # see ``off_diagonal_ratio``; 0 = orthogonal columns of W

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass
class MethodResult:
    """A method's final parameters and its history (per EM iteration or gradient step)."""

    params: PPCA
    history: list[Record] = field(default_factory=list)


@torch.no_grad()
def make_record(step: int, params: PPCA, x: torch.Tensor, q_mean, q_cov) -> Record:
    """A history row: exact log p(x), the ELBO and gap of q = N(q_mean, q_cov), means over x."""
    log_px = params.log_px(x).mean()
    elbo = gaussian_elbo(params, x, q_mean, q_cov).mean()
    gap = gaussian_gap(params, x, q_mean, q_cov).mean()
    return Record(step, float(log_px), float(elbo), float(gap), off_diagonal_ratio(params.W))


def run_em(x: torch.Tensor, latent_dim: int, iterations: int = 200, seed: int = 0) -> MethodResult:
    """Exact EM from a seeded random start. The history has, per iteration t:

    * ``log_px``: log p(x | theta_t);
    * ``elbo``/``gap``: the ELBO and KL(q || p(z|x)) of the *previous* E-step's q (the
      posterior under theta_{t-1}) evaluated at theta_t: the M-step raised this bound, the next
      E-step closes the gap to exactly 0 (``Record`` with ``step`` = t + 0.5 in ``estep``).
    """
    g = torch.Generator().manual_seed(seed)
    d = x.shape[1]
    params = PPCA(
        W=torch.randn(d, latent_dim, generator=g, dtype=x.dtype),
        b=x.mean(0),
        sigma2=x.var(0).mean().clone(),
    )
    history: list[Record] = []
    mean, cov = params.posterior(x)
    history.append(make_record(0, params, x, mean, cov))
    for t in range(1, iterations + 1):
        new = em_step(params, x)
        history.append(make_record(t, new, x, mean, cov))  # after the M-step, old q
        params = new
        mean, cov = params.posterior(x)  # E-step: q = the exact posterior, gap 0
    return MethodResult(params=params, history=history)
