"""An inverse autoregressive flow posterior (Kingma et al. 2016) on MADE-style layers.

q(z|x): z_0 = mu_0 + sigma_0 * eps (a diagonal Gaussian from the encoder's features), then T
steps z_t = sigma_t * z_{t-1} + (1 - sigma_t) * m_t with [m_t, s_t] = MADE(z_{t-1}, h) and
sigma_t = sigmoid(s_t) (Kingma et al. 2016, eqs. 14-15). Each step is autoregressive (m_t,i and
s_t,i see only z_{t-1,<i}), so its Jacobian is triangular with diagonal sigma_t and

    log q(z_T|x) = log N(z_0; mu_0, sigma_0^2) - sum_t sum_i log sigma_t,i

exactly (eq. 16). The variable order is reversed between steps so every coordinate can depend
on every other. The density is known exactly at the flow's own draws (the log-determinant is
recorded with each draw); evaluating it at an arbitrary z would mean inverting the flow, which
vaekit never needs, so ``log_prob`` of any other tensor raises.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, constraints

from vaekit.distributions.functional import LOG_2PI

# Draws behind the Monte-Carlo moments (mean, covariance) of an IAF posterior, which have no
# closed form.
MOMENT_SAMPLES = 64
MOMENT_SEED = 0  # the moments' own draws (see InverseAutoregressiveFlow._moments)
# sigma_t = sigmoid(s_t + GATE_BIAS): starts near 0.88, so each step starts close to the
# identity (Kingma et al. 2016 initialise the gate this way for a stable start).
GATE_BIAS = 2.0


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask ``[out, in]`` (MADE,
    Germain et al. 2015)."""

    def __init__(self, n_in: int, n_out: int, mask: torch.Tensor) -> None:
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Autoregressive map ``z [*, m]`` (+ context ``h [*, c]``) -> ``(m_t, s_t)``, each
    ``[*, m]``, where output i depends only on z_{<i} (in the given order) and on h.

    Degrees (Germain et al. 2015): input i has degree i (1..m), hidden unit k a degree in
    1..m-1; a hidden unit sees inputs of degree <= its own, output i sees hidden units of
    degree < i. So output 1 sees no z at all, only the context.
    """

    def __init__(self, latent_dim: int, context_dim: int, hidden_dim: int) -> None:
        super().__init__()
        m = latent_dim
        in_degree = torch.arange(1, m + 1)
        hidden_degree = torch.arange(hidden_dim) % max(1, m - 1) + 1
        mask_in = (hidden_degree[:, None] >= in_degree[None, :]).float()  # [H, m]
        mask_out = (in_degree[:, None] > hidden_degree[None, :]).float()  # [m, H]
        self.hidden = MaskedLinear(m, hidden_dim, mask_in)
        self.context = nn.Linear(context_dim, hidden_dim)  # the context reaches every unit
        self.shift = MaskedLinear(hidden_dim, m, mask_out)
        self.gate = MaskedLinear(hidden_dim, m, mask_out)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = F.elu(self.hidden(z) + self.context(h))
        return self.shift(a), self.gate(a)


def iaf_transform(
    steps: nn.ModuleList, z0: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the T steps to ``z0 [*, m]`` with context ``h [*, c]`` (broadcast): returns z_T
    and log|det dz_T/dz_0| = sum_t sum_i log sigma_t,i, ``[*]``."""
    z, log_det = z0, 0.0
    for t, made in enumerate(steps):
        if t % 2:  # reverse the order on every other step (a permutation: |det| = 1)
            z = z.flip(-1)
        shift, gate = made(z, h)
        log_sigma = F.logsigmoid(gate + GATE_BIAS)
        sigma = log_sigma.exp()
        z = sigma * z + (1.0 - sigma) * shift  # Kingma et al. 2016, eq. 14
        log_det = log_det + log_sigma.sum(-1)
        if t % 2:
            z = z.flip(-1)
    return z, log_det


class InverseAutoregressiveFlow(Distribution):
    """q(z|x) of an IAF: batch ``[B]``, event ``[m]``. ``rsample`` draws z_T and records its
    exact log q; ``log_prob`` returns it for those very draws (see the module docstring)."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True
    # No closed-form KL against any prior: priors estimate it by Monte Carlo.
    has_closed_form_kl = False
    # ``moments()`` are Monte-Carlo estimates from this many draws (statistics built on the
    # mean, such as active units, correct for its sampling noise).
    moment_draws: int | None = MOMENT_SAMPLES
    # Its mean and covariance are Monte-Carlo estimates (fixed draws), not closed forms.
    exact_moments = False

    def __init__(
        self, loc: torch.Tensor, log_var: torch.Tensor, context: torch.Tensor, steps: nn.ModuleList
    ) -> None:
        self.loc0, self.log_var0, self.context, self.steps = loc, log_var, context, steps
        self._draws: list[tuple[torch.Tensor, torch.Tensor]] = []
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """z_T ``[*sample_shape, B, m]``, reparameterised through eps ~ N(0, I)."""
        z, log_q = self._draw(torch.Size(sample_shape) + self.loc0.shape)
        # Remember the last two draws: enough for every caller (ELBO, importance weights).
        self._draws = [*self._draws[-1:], (z, log_q)]
        return z

    def _draw(
        self, shape: torch.Size, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """z_T ``[*shape]`` and log q(z_T|x) ``[*shape[:-1]]`` (nats) from fresh eps."""
        eps = torch.randn(
            shape, dtype=self.loc0.dtype, device=self.loc0.device, generator=generator
        )
        z0 = self.loc0 + torch.exp(0.5 * self.log_var0) * eps
        log_q0 = -0.5 * (eps.square() + self.log_var0 + LOG_2PI).sum(-1)
        z, log_det = iaf_transform(self.steps, z0, self.context)
        return z, log_q0 - log_det

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log q(z|x) in nats ``[*, B]`` at a draw of this distribution: the base density
        minus the flow's log-determinant (exact)."""
        for z, log_q in self._draws:
            if value is z:
                return log_q
        raise ValueError(
            "an IAF posterior knows log q(z|x) exactly at its own draws only (rsample); "
            "it is not defined here for other points"
        )

    def _moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Draws of their own, with a fixed seed: the same estimate on every call (pictures and
        # latent statistics are reproducible), and the model's random stream is left alone.
        generator = torch.Generator(device=self.loc0.device).manual_seed(MOMENT_SEED)
        with torch.no_grad():
            shape = torch.Size((MOMENT_SAMPLES,)) + self.loc0.shape
            z, _ = self._draw(shape, generator)  # [S, B, m]
        mean = z.mean(0)
        centred = z - mean
        return mean, torch.einsum("sbi,sbj->bij", centred, centred) / (MOMENT_SAMPLES - 1)

    @property
    def mean(self) -> torch.Tensor:
        """E_q[z|x] ``[B, m]``: a Monte-Carlo estimate from ``MOMENT_SAMPLES`` draws."""
        return self._moments()[0]

    @property
    def covariance_matrix(self) -> torch.Tensor:
        """Cov_q[z|x] ``[B, m, m]``: a Monte-Carlo estimate from ``MOMENT_SAMPLES`` draws."""
        return self._moments()[1]

    @property
    def variance(self) -> torch.Tensor:
        return self.covariance_matrix.diagonal(dim1=-2, dim2=-1)

    @property
    def scale_tril(self) -> torch.Tensor:
        """Cholesky factor of the Monte-Carlo covariance, ``[B, m, m]``."""
        return torch.linalg.cholesky(self.covariance_matrix)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean ``[B, m]``, covariance ``[B, m, m]``) from one set of Monte-Carlo draws."""
        return self._moments()


class IAFPosterior(nn.Module):
    """Encoder features -> an :class:`InverseAutoregressiveFlow` with ``flow_steps`` steps.

    A linear head gives mu_0, log sigma_0^2 and the context h (size ``hidden_dim``, default
    max(2m, 32)); each step is a MADE with one hidden layer of ``hidden_dim`` units.
    """

    # The VAE config fields this family reads (passed by name when the VAE builds it).
    config_fields: ClassVar[tuple[str, ...]] = ("flow_steps",)

    def __init__(
        self, feature_dim: int, latent_dim: int, flow_steps: int = 2, hidden_dim: int | None = None
    ) -> None:
        super().__init__()
        if flow_steps < 1:
            raise ValueError(f"an IAF posterior needs >= 1 flow step, got {flow_steps}")
        self.latent_dim = latent_dim
        hidden = hidden_dim or max(2 * latent_dim, 32)
        self.context_dim = hidden
        self.head = nn.Linear(feature_dim, 2 * latent_dim + hidden)
        self.steps = nn.ModuleList(MADE(latent_dim, hidden, hidden) for _ in range(flow_steps))

    def forward(self, features: torch.Tensor) -> InverseAutoregressiveFlow:
        m = self.latent_dim
        params = self.head(features)
        loc, log_var, h = params[..., :m], params[..., m : 2 * m], params[..., 2 * m :]
        return InverseAutoregressiveFlow(loc, log_var, F.elu(h), self.steps)
