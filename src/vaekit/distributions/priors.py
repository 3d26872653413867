"""Priors p(z). The lecture's is N(0, I); other priors fit the same slot (``log_prob``,
``sample``, ``kl``).

A prior is built with access to the model it belongs to (``PRIORS[name](model, latent_dim)``,
a prior over ``latent_dim`` coordinates of that model's code): a
VampPrior, for one, is a mixture of the model's own posteriors at learned pseudo-inputs. The
KL term is in closed form where the posterior family has one against this prior
(``q.has_closed_form_kl``), a Monte-Carlo estimate log q(z|x) - log p(z) at the ELBO's own
draws otherwise: the families choose, not the trainer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from vaekit.distributions.functional import LOG_2PI


def monte_carlo_kl(q: Distribution, log_pz: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """KL(q || p) estimated at draws ``z [L, B, m]`` from q: mean_L (log q(z) - log p(z)),
    ``[B]`` nats. ``log_pz [L, B]`` is log p at the same draws. Unbiased; it is the form of
    the ELBO used when no closed form exists (Kingma & Welling 2014, eq. 6)."""
    return (q.log_prob(z) - log_pz).mean(dim=0)


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I_m). Shapes: ``log_prob(z [..., m]) -> [...]``; ``sample(n) -> [n, m]``."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        # A buffer so the prior follows the model's device and dtype.
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    @classmethod
    def for_model(cls, model: nn.Module, latent_dim: int) -> StandardNormalPrior:
        """The registry's builder: N(0, I) over ``latent_dim`` coordinates (it needs nothing
        else from the model)."""
        return cls(latent_dim)

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
        """KL(q(z|x) || N(0, I)) in nats per example, ``[B]``: closed form where the family
        has one, else the Monte-Carlo estimate at the draws ``z [L, B, m]`` (one fresh draw
        if none are given)."""
        if q.has_closed_form_kl:  # every posterior family declares it
            return q.kl_standard_normal()
        if z is None:
            z = q.rsample((1,))
        return monte_carlo_kl(q, self.log_prob(z), z)


# name -> builder(model, latent_dim): the prior sees the model it belongs to.
PRIORS = {"standard-normal": StandardNormalPrior.for_model}
