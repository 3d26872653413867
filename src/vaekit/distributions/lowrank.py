"""The lecture's general decoder p(x|z) = N(mu(z), Sigma(z)) in its practical form:
Sigma(z) = W(z) W(z)^T + diag(d(z)), a rank-R factor plus a diagonal.

A diagonal decoder leaves every correlation between dimensions to the latent code; what the
code does not explain (two sensors that move together whatever the state, neighbouring pixels
of an edge) is paid for as independent noise. The rank-R factor models those residual
correlations at O(D R^2) per example (``torch.distributions.LowRankMultivariateNormal``, the
Woodbury identity and the matrix determinant lemma), where a full covariance costs O(D^3).

Parameterisation (all learned per example by the decoder):

* mu: the mean;
* d = (min_scale + softplus(r + c))^2, with c chosen so that r = 0 gives a standard deviation
  of ``init_scale`` (as the other learned Gaussians start) and the floor keeps the density
  bounded on a constant dimension;
* W = (init_scale / sqrt(R)) * w: at the start the decoder's raw w are small, so the factor
  adds a fraction of the diagonal's variance and training starts near the diagonal model;
  the same factor keeps the start independent of R.

The tables' helpers (:func:`masked_log_prob`, :func:`chain_log_probs`, :func:`condition`)
handle missing dimensions by marginalising them: a Gaussian's marginal over the observed
dimensions is the Gaussian with their rows and columns of Sigma.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, LowRankMultivariateNormal, constraints

from vaekit.distributions.functional import LOG_2PI
from vaekit.support.spelling import spell_value


def check_rank(rank: int, dims: int, what: str) -> None:
    """``rank`` must be in 1 .. dims - 1 (at rank D the factor alone spans every covariance
    and the low-rank form saves nothing); one-line error naming the flag."""
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 < rank < dims:
        raise ValueError(
            f"{spell_value('--rank', 'model.rank', rank)}: the low-rank covariance needs a "
            f"rank from 1 to {dims - 1} ({what} {dims} dimension{'s' if dims != 1 else ''})"
        )


class LowRankParameters(nn.Module):
    """Turns raw decoder outputs into the covariance's parts W and d (the module doc).
    Shapes: ``diag_raw [*, D]``, ``factor_raw [*, D, R]``."""

    def __init__(self, rank: int, min_scale: float = 1e-3, init_scale: float = 0.2) -> None:
        super().__init__()
        self.rank, self.min_scale = rank, min_scale
        self.offset = math.log(math.expm1(init_scale - min_scale))  # softplus^{-1}
        self.factor_gain = init_scale / math.sqrt(rank)

    def variance(self, diag_raw: torch.Tensor) -> torch.Tensor:
        """d, the diagonal of Sigma (a variance), ``[*, D]``."""
        return (self.min_scale + F.softplus(diag_raw + self.offset)).square()

    def factor(self, factor_raw: torch.Tensor) -> torch.Tensor:
        """W, ``[*, D, R]``."""
        return self.factor_gain * factor_raw


class LowRankGaussianLikelihood(nn.Module):
    """p(x|z) = N(x; mu(z), W(z) W(z)^T + diag(d(z))) over all data dimensions jointly.

    The decoder output is ``[*batch, (R + 2) C, ...]`` for data ``[C, ...]``: the first C
    channels (or features) are mu, the next C the diagonal's pre-activation, then R blocks of
    C the columns of W. The density is over the flattened data (D = prod(event_shape)), in
    nats per example with every constant. Support: real-valued data.
    """

    support = "real"
    discrete = False

    def __init__(
        self,
        event_shape: tuple[int, ...],
        rank: int = 1,
        min_scale: float = 1e-3,
        init_scale: float = 0.2,
    ) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.dims = math.prod(self.event_shape)
        check_rank(rank, self.dims, "the data have")
        self.rank = rank
        self.param_shape = ((rank + 2) * self.event_shape[0], *self.event_shape[1:])
        self.parts = LowRankParameters(rank, min_scale, init_scale)

    def split(
        self, decoder_output: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[*batch, *param_shape]`` -> mu ``[*batch, D]``, W ``[*batch, D, R]``, d
        ``[*batch, D]`` (flattened over the event)."""
        n = len(self.event_shape)
        if tuple(decoder_output.shape[-n:]) != self.param_shape:
            raise ValueError(
                "gaussian-lowrank reads a mean, a diagonal and a rank-"
                f"{self.rank} factor per dimension: the decoder must output "
                f"[..., {', '.join(map(str, self.param_shape))}], got "
                f"{list(decoder_output.shape)}"
            )
        batch = decoder_output.shape[:-n]
        blocks = decoder_output.reshape(*batch, self.rank + 2, self.dims)
        factor = blocks[..., 2:, :].transpose(-1, -2)
        return blocks[..., 0, :], self.parts.factor(factor), self.parts.variance(blocks[..., 1, :])

    def forward(self, decoder_output: torch.Tensor) -> Distribution:
        return LowRankGaussian(*self.split(decoder_output), self.event_shape)

    def page_mean(self) -> str | None:
        """None: the explorer's page does not compute this mean (mu among R + 2 blocks)."""
        return None

    def mean(self, decoder_output: torch.Tensor) -> torch.Tensor:
        """E[x|z] = mu(z), ``[*batch, *event]``."""
        mu = self.split(decoder_output)[0]
        return mu.reshape(*mu.shape[:-1], *self.event_shape)

    def log_density(self, decoder_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log N(x; mu, W W^T + diag(d)), ``[*batch]`` nats; ``x [*, *event]`` broadcasts."""
        return self(decoder_output).log_prob(x)


class LowRankGaussian(Distribution):
    """``LowRankMultivariateNormal`` over the flattened data, with the data's event shape:
    ``log_prob``, ``mean``, ``sample`` and ``rsample`` read and write ``[*, *event_shape]``."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        mu: torch.Tensor,
        factor: torch.Tensor,
        variance: torch.Tensor,
        event_shape: tuple[int, ...],
    ) -> None:
        self.flat = LowRankMultivariateNormal(mu, factor, variance, validate_args=False)
        super().__init__(mu.shape[:-1], torch.Size(event_shape), validate_args=False)

    def _unflatten(self, value: torch.Tensor) -> torch.Tensor:
        return value.reshape(*value.shape[:-1], *self.event_shape)

    @property
    def mean(self) -> torch.Tensor:
        return self._unflatten(self.flat.loc)

    @property
    def variance(self) -> torch.Tensor:
        return self._unflatten(self.flat.variance)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        return self._unflatten(self.flat.rsample(sample_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        n = len(self.event_shape)
        return self.flat.log_prob(value.reshape(*value.shape[:-n], -1))


# --- a joint head over some dimensions, with missing ones marginalised (tables) -----------


def _masked(
    residual: torch.Tensor, factor: torch.Tensor, variance: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A missing dimension (mask 0) becomes independent of the others, with variance 1 and
    residual 0: the observed dimensions' density is then their marginal's, times N(0; 0, 1)
    for each missing one (removed by the callers)."""
    observed = mask.bool()
    residual = torch.where(observed, residual, torch.zeros_like(residual))
    factor = torch.where(observed[..., None], factor, torch.zeros_like(factor))
    variance = torch.where(observed, variance, torch.ones_like(variance))
    return residual, factor, variance


# The capacitance K = I + W^T D^-1 W has every eigenvalue >= 1, so trace(K) bounds its
# condition number. Below this bound float32 keeps a row's log-density within about 5e-5
# nats of the dense float64 covariance's (measured on 30 columns at rank 16: 1e-5 nats up to
# a trace of 3e3, 4e-5 at 1e4, 5e-4 at 1e5; the log-determinant's rounding grows with
# cond(K), and the quadratic form, written as a minimum below, loses no digits to
# cancellation). Rows above it, or whose float32 Cholesky fails, are computed in float64.
FLOAT32_CONDITION = 1e4


def _woodbury(
    residual: torch.Tensor, factor: torch.Tensor, variance: torch.Tensor, observed: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """The masked log-density's value ``[*]`` and the parts of its gradient, in the inputs'
    dtype, with which rows need float64 (``[*]`` bool; none in float64). ``observed`` is
    the mask as 0/1 numbers; missing dimensions enter with D^-1 = 0 (no term).

    r^T Sigma^-1 r = min_u |D^-1/2 (r - W u)|^2 + |u|^2, at u = K^-1 W^T D^-1 r: a sum of
    squares, so no digits are lost to cancellation; log det Sigma = log det K + sum log d."""
    eye = torch.eye(factor.shape[-1], dtype=factor.dtype, device=factor.device)
    inv_d = observed / variance  # D^-1, 0 at missing dimensions
    scaled = factor * inv_d[..., None]  # D^-1 W [*, G, R]
    capacitance = scaled.mT @ factor  # (baddbmm with the identity takes a slow path)
    capacitance.diagonal(dim1=-2, dim2=-1).add_(1.0)
    if factor.dtype == torch.float64:
        tril = torch.linalg.cholesky(capacitance)
        redo = torch.zeros(capacitance.shape[:-2], dtype=torch.bool, device=factor.device)
    else:
        tril, info = torch.linalg.cholesky_ex(capacitance)
        trace = torch.diagonal(capacitance, dim1=-2, dim2=-1).sum(-1)
        redo = (info != 0) | ~(trace <= FLOAT32_CONDITION)
        if redo.any():  # finite stand-ins on the rows computed again (no NaN in the parts)
            tril = torch.where(redo[..., None, None], eye, tril)
    inverse = torch.cholesky_inverse(tril)  # K^-1 [*, R, R]
    u = (inverse @ (scaled.mT @ residual[..., None]))[..., 0]  # [*, R]
    fit = residual - (factor @ u[..., None])[..., 0]
    alpha = inv_d * fit  # Sigma^-1 r (0 at missing dimensions)
    quadratic = (alpha * fit).sum(-1) + u.square().sum(-1)
    log_det = 2 * torch.diagonal(tril, dim1=-2, dim2=-1).log().sum(-1)
    log_det = log_det + (observed * variance.log()).sum(-1)
    log_p = -0.5 * (quadratic + log_det + observed.sum(-1) * LOG_2PI)
    solved = scaled @ inverse  # Sigma^-1 W = D^-1 W K^-1 [*, G, R]
    inv_sigma_diag = inv_d - inv_d * (solved * factor).sum(-1)  # diag(Sigma^-1)
    return log_p, alpha, u, solved, inv_sigma_diag, redo


class _MaskedLogProb(torch.autograd.Function):
    """log N(r; 0, Sigma) over the observed dimensions with its gradient written out, so
    that autograd keeps no graph of the Cholesky and its solves (on a CPU, a Cholesky's
    backward over a [B, 16, 16] batch cost more than the rest of a table's training step).
    With a = Sigma^-1 r and u = W^T a: d/dr = -a, d/dW = a u^T - Sigma^-1 W, and
    d/dd = (a^2 - diag(Sigma^-1)) / 2. First derivatives only."""

    @staticmethod
    def forward(ctx, residual, factor, variance, observed):
        parts = list(_woodbury(residual, factor, variance, observed))
        redo = parts.pop()
        if redo.any():  # badly conditioned float32 rows: float64 (at 30 columns, rank 16,
            # a variance floor of 1e-4 and nearly collinear rows of W, float32 fails)
            rows = (residual[redo], factor[redo], variance[redo], observed[redo])
            again = _woodbury(*(t.double() for t in rows))[:-1]
            for part, value in zip(parts, again, strict=True):
                part[redo] = value.to(part.dtype)
        log_p, alpha, u, solved, inv_sigma_diag = parts
        ctx.save_for_backward(alpha, u, solved, inv_sigma_diag)
        return log_p

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        alpha, u, solved, inv_sigma_diag = ctx.saved_tensors
        g = grad[..., None]
        d_factor = g[..., None] * (alpha[..., :, None] * u[..., None, :] - solved)
        d_variance = 0.5 * g * (alpha.square() - inv_sigma_diag)
        return -g * alpha, d_factor, d_variance, None


def masked_log_prob(
    residual: torch.Tensor, factor: torch.Tensor, variance: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """log N(r_O; 0, (W W^T + diag d)_OO) over the observed dimensions O, ``[*]`` nats, at
    O(G R^2), in ``residual``'s dtype. Shapes: ``residual, variance, mask [*, G]``,
    ``factor [*, G, R]`` (batch shapes broadcast). First derivatives only."""
    batch = torch.broadcast_shapes(
        residual.shape[:-1], factor.shape[:-2], variance.shape[:-1], mask.shape[:-1]
    )
    g, r = factor.shape[-2:]
    dtype = torch.promote_types(residual.dtype, torch.promote_types(factor.dtype, variance.dtype))
    if dtype != torch.float64:
        dtype = torch.float32  # half precision: a Cholesky needs float32 at least
    log_p = _MaskedLogProb.apply(
        residual.to(dtype).expand(*batch, g),
        factor.to(dtype).expand(*batch, g, r),
        variance.to(dtype).expand(*batch, g),
        mask.to(dtype).expand(*batch, g),
    )
    return log_p.to(residual.dtype)


def _covariance(factor: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    return factor @ factor.transpose(-1, -2) + torch.diag_embed(variance)


def chain_log_probs(
    residual: torch.Tensor, factor: torch.Tensor, variance: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Each observed dimension's log p(r_j | the observed r_i, i < j), ``[*, G]`` nats (0 at
    missing ones): the chain rule in column order, so the terms sum to
    :func:`masked_log_prob`. With Sigma = L L^T and e = L^{-1} r, term j is
    -e_j^2 / 2 - log L_jj - log(2 pi) / 2. Dense, O(G^3): for per-column reports."""
    r, w, d = _masked(residual.double(), factor.double(), variance.double(), mask)
    tril = torch.linalg.cholesky(_covariance(w, d))  # float64: reports, not training
    white = torch.linalg.solve_triangular(tril, r[..., None], upper=False)[..., 0]
    log_diag = torch.diagonal(tril, dim1=-2, dim2=-1).log()
    terms = (-0.5 * white.square() - log_diag - 0.5 * LOG_2PI) * mask
    return terms.to(residual.dtype)


def condition(
    mean: torch.Tensor,
    factor: torch.Tensor,
    variance: torch.Tensor,
    x: torch.Tensor,
    mask: torch.Tensor,
    draw: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian N(mean, W W^T + diag d) given its observed dimensions x_O: returns the
    conditional mean (``draw`` False) or one draw (``draw`` True, torch's global generator)
    of every dimension, ``[*, G]`` (x itself where observed), and the conditional variance
    ``[*, G]`` (0 where observed). A draw is Matheron's rule: y ~ N(mean, Sigma), then
    y + Sigma_.O Sigma_OO^{-1} (x_O - y_O) is distributed as the conditional."""
    y = mean
    if draw:
        options = {"dtype": mean.dtype, "device": mean.device}
        shared = torch.randn((*factor.shape[:-2], factor.shape[-1], 1), **options)  # [*, R, 1]
        own = torch.randn(variance.shape, **options)
        y = mean + (factor @ shared)[..., 0] + variance.sqrt() * own
    sigma = _covariance(factor, variance)
    outer = mask[..., :, None] * mask[..., None, :]
    # Sigma_OO with identity rows and columns at the missing dimensions: its inverse is
    # Sigma_OO^{-1} on O, and zero between O and the rest.
    inner = sigma * outer + torch.diag_embed(1 - mask)
    tril = torch.linalg.cholesky(inner)
    gap = ((x - y) * mask)[..., None]
    filled = y + (sigma @ torch.cholesky_solve(gap, tril))[..., 0]
    filled = torch.where(mask.bool(), x, filled)  # exact where observed, not x + rounding
    precision = torch.cholesky_inverse(tril) * outer
    cond_var = torch.diagonal(sigma - sigma @ precision @ sigma, dim1=-2, dim2=-1)
    return filled, cond_var.clamp_min(0.0) * (1 - mask)
