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

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from vaekit.distributions.functional import LOG_2PI, logsumexp


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

    def mean(self) -> torch.Tensor:
        """E[z] = 0, ``[m]``."""
        return self._zero.expand(self.latent_dim)

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

    def kl_groups(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor | None:
        """The same KL split into the groups free bits clamp, nats, ``[B, G]`` summing to
        ``kl``: one per latent coordinate where q factorises (a diagonal Gaussian), one group
        for a correlated Gaussian; None (the whole KL is one group) where the KL is a
        Monte-Carlo estimate, so that it is not estimated twice."""
        return q.kl_standard_normal_groups() if q.has_closed_form_kl else None


class VampPrior(nn.Module):
    """The VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z|u_k), the mixture of
    the model's own posteriors at K learned pseudo-inputs u_k ``[K, *data_shape]``.

    The components come from ``model.top_posterior(u)`` (the posterior over the latent this
    prior is for: q(z|x) for a VAE, the top layer's for a hierarchical VAE), so the prior
    moves with the encoder. ``log_prob`` is the exact mixture density, logsumexp over the K
    components minus log K; no KL(q || p) has a closed form, so ``kl`` is the Monte-Carlo
    estimate at the ELBO's draws. The pseudo-inputs start uniform on [0, 1] (the range of
    image data; they are learned with the rest of the model).
    """

    def __init__(self, model: nn.Module, latent_dim: int, num_pseudo_inputs: int) -> None:
        super().__init__()
        if num_pseudo_inputs < 1:
            raise ValueError(f"a VampPrior needs >= 1 pseudo-input, got {num_pseudo_inputs}")
        self.latent_dim = latent_dim
        self.pseudo_inputs = nn.Parameter(torch.rand(num_pseudo_inputs, *model.data_shape))
        # A bound method, not a submodule: the model owns the prior, not the other way round
        # (a submodule would put the model inside its own state_dict).
        self._components = model.top_posterior
        self._held: Distribution | None = None  # the components while held (held_fixed)

    @classmethod
    def for_model(cls, model: nn.Module, latent_dim: int) -> VampPrior:
        """The registry's builder: K = ``model.config.num_pseudo_inputs`` pseudo-inputs."""
        return cls(model, latent_dim, model.config.num_pseudo_inputs)

    def components(self) -> Distribution:
        """q(z|u_k) for every pseudo-input: batch ``[K]``, event ``[m]``."""
        if self._held is not None:
            return self._held
        return self._components(self.pseudo_inputs)

    @contextlib.contextmanager
    def held_fixed(self) -> Iterator[None]:
        """Within: the K components are computed once and reused. Only for inference with
        weights that do not change (an importance-sampled log p(x) asks for log p(z) once per
        chunk of draws: with K = 500 pseudo-inputs, the encoder pass over them was about a
        third of the time of a K = 5000 evaluation)."""
        self._held = self._components(self.pseudo_inputs)
        try:
            yield
        finally:
            self._held = None

    def mean(self) -> torch.Tensor:
        """E[z], the mean of the K components' means, ``[m]``."""
        return self.components().mean.mean(dim=0)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = logsumexp_k log q(z|u_k) - log K in nats, ``[..., m] -> [...]``."""
        q = self.components()
        # [..., K]: as matrix products where the family has them (diagonal), else [..., 1, m]
        # broadcast against the batch [K, m].
        each = getattr(q, "log_prob_each", None)
        log_qk = each(z) if each is not None else q.log_prob(z.unsqueeze(-2))
        return logsumexp(log_qk, dim=-1) - math.log(self.pseudo_inputs.shape[0])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws ``[n, m]``: a component k uniformly, then z = mu_k + L_k eps."""
        q = self.components()
        mean, tril = q.mean, q.scale_tril  # [K, m], [K, m, m]: every posterior family has both
        k = torch.randint(0, mean.shape[0], (n,), generator=generator, device=mean.device)  # [n]
        eps = torch.randn(
            (n, self.latent_dim), generator=generator, dtype=mean.dtype, device=mean.device
        )
        return mean[k] + (tril[k] @ eps.unsqueeze(-1)).squeeze(-1)

    def kl(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(z|x) || p(z)) by Monte Carlo at the draws ``z [L, B, m]`` (a fresh draw if
        none are given), ``[B]`` nats: a mixture has no closed form."""
        if z is None:
            z = q.rsample((1,))
        return monte_carlo_kl(q, self.log_prob(z), z)

    def kl_groups(self, q: Distribution, z: torch.Tensor | None = None) -> None:
        """None: a mixture prior does not factorise over the coordinates, so free bits
        clamp the whole (Monte-Carlo) KL as one group."""
        return None


# name -> builder(model, latent_dim): the prior sees the model it belongs to.
PRIORS = {"standard-normal": StandardNormalPrior.for_model, "vamp": VampPrior.for_model}
