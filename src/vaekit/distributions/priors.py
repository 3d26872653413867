"""Priors p(z). The lecture's is N(0, I); other priors fit the same slot (``log_prob``,
``sample``, ``kl``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from vaekit.distributions.functional import LOG_2PI


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I_m). Shapes: ``log_prob(z [..., m]) -> [...]``; ``sample(n) -> [n, m]``."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        # A buffer so the prior follows the model's device and dtype.
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def distribution(self) -> Distribution:
        loc = self._zero.expand(self.latent_dim)
        return Independent(Normal(loc, torch.ones_like(loc), validate_args=False), 1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, I) = -0.5 (||z||^2 + m log 2 pi) in nats, ``[..., m] -> [...]``."""
        return -0.5 * (z.square().sum(-1) + self.latent_dim * LOG_2PI)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        shape = (n, self.latent_dim)
        return torch.randn(
            shape, generator=generator, dtype=self._zero.dtype, device=self._zero.device
        )

    def kl(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(z|x) || p(z)) in nats per example: closed form for the Gaussian families."""
        return q.kl_standard_normal()

    def kl_groups(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        """The same KL split into the groups free bits clamp, nats, ``[B, G]`` summing to
        ``kl``: one per latent coordinate where q factorises, else one group."""
        return q.kl_standard_normal_groups()


PRIORS = {"standard-normal": StandardNormalPrior}
