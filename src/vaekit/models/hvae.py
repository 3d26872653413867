"""A VAE with L >= 2 stochastic layers z_1 (next to x) ... z_L (top).

Generative model (Burda et al. 2015, §5): p(z_L) p(z_{L-1}|z_L) ... p(z_1|z_2) p(x|z_1), each
conditional a diagonal Gaussian whose mean and log-variance come from an MLP of its parent,
p(z_L) from the prior registry (N(0, I) or a VampPrior), p(x|z_1) from the likelihood
registry. Inference, chosen by ``inference``:

* ``"bottom-up"`` (Burda et al. 2015): q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1}), each a diagonal
  Gaussian from an MLP of the layer below.
* ``"top-down"`` (Ladder VAE, Sønderby et al. 2016, eqs. 17-19): a deterministic bottom-up
  pass d_l = f_l(d_{i-1}) gives a Gaussian estimate N(mu^_l, s^_l) per layer; the posterior is
  sampled top-down, q(z_L|x) = N(mu^_L, s^_L) and q(z_l|z_{i+1}, x) = the precision-weighted
  combination of N(mu^_l, s^_l) with the generative p(z_l|z_{i+1}).

The importance weights run over all layers: log w = log p(x|z_1) + sum_l log p(z_l|z_{i+1})
+ log p(z_L) - log q(z_1..L|x), so ``log_likelihood`` estimates log p(x) of the full model.
In the ELBO a layer's KL is in closed form when q and p of that layer are Gaussians of the
same parent sample (every layer top-down; the top layer bottom-up, for an N(0, I) prior), and
the Monte-Carlo estimate log q - log p at the ELBO's draws otherwise.

The continuous code of this model (``latent_dim``) is all layers concatenated, bottom first:
z = [z_1, ..., z_L] (``latent_layers``). ``decode(z)`` is p(x|z_1), which is exact: x
depends on z only through z_1.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from vaekit.distributions import PRIORS, DiagonalGaussian, build_likelihood
from vaekit.models.base import MOMENT_SAMPLES, ELBOTerms, LatentMoments, LikelihoodModel
from vaekit.models.bodies import check_buildable, check_top_prior, init_setting
from vaekit.models.paths import TakeFirst
from vaekit.models.registry import register_model
from vaekit.networks import ACTIVATIONS, Init, initialise_
from vaekit.settings import ConfigError, ModelConfig, setting


@dataclass
class HVAEConfig(ModelConfig):
    """The hierarchical VAE's ``[model]`` table (``kind = "hvae"``). The defaults are the
    two-layer architecture of Burda et al. (2015): latents 100 and 50, deterministic layers
    200-200 (x <-> z_1) and 100-100 (z_1 <-> z_2), tanh."""

    kind: str = dataclasses.field(default="hvae", init=False)
    latent_dims: list[int] = setting(
        default_factory=lambda: [100, 50],
        help="hierarchical VAE: sizes of z_1 (next to x) ... z_L (top); at least two layers",
    )
    # Deterministic widths between layer i-1 (x for i = 1) and z_l, one list per stochastic
    # layer; the generative direction uses the same widths. A list of lists: reached with
    # --set model.hidden_dims=[[200,200],[100,100]] (the --hidden-dims flag is one list).
    hidden_dims: list[list[int]] = setting(
        default_factory=lambda: [[200, 200], [100, 100]],
        flag="",
        help="deterministic widths per stochastic layer",
    )
    activation: Literal["relu", "elu", "gelu", "tanh", "silu"] = setting(
        "tanh", help="the hidden layers' nonlinearity"
    )
    inference: Literal["bottom-up", "top-down"] = setting(
        "bottom-up",
        help="hierarchical VAE: bottom-up inference (Burda et al. 2015) or top-down (the "
        "Ladder VAE, Sønderby et al. 2016)",
    )
    init: Init = init_setting()
    prior: str = setting("standard-normal", help="p(z_L): standard-normal or vamp")
    num_pseudo_inputs: int = setting(
        500, help="K, the VampPrior's learned pseudo-inputs (prior vamp)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.latent_dims) < 2 or min(self.latent_dims) < 1:
            raise ConfigError(
                f"model.latent_dims needs >= 2 positive sizes (z_1 ... z_L), got {self.latent_dims}"
            )
        if len(self.hidden_dims) != len(self.latent_dims):
            raise ConfigError(
                f"model.hidden_dims needs one list of widths per stochastic layer "
                f"({len(self.latent_dims)}), got {self.hidden_dims}"
            )
        if any(not widths or min(widths) < 1 for widths in self.hidden_dims):
            raise ConfigError(
                f"model.hidden_dims must be non-empty positive widths, got {self.hidden_dims}"
            )
        check_top_prior(self.prior, self.num_pseudo_inputs)


@dataclass
class _Chain:
    """One draw of the posterior chain: the layers ``zs`` ``[K, B, m_l]`` (bottom first), the
    posterior ``qs`` each was drawn from, the generative ``ps`` p(z_l|z_{l+1}) below the top,
    and whether each layer's KL has a closed form (its q and p share their parent sample)."""

    zs: list[torch.Tensor]
    qs: list[DiagonalGaussian]
    ps: list[DiagonalGaussian]
    closed: list[bool]


def _mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear + activation after every layer (the heads on top are linear)."""
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


class GaussianLayer(nn.Module):
    """An MLP then a linear head: ``[*lead, n_in] -> DiagonalGaussian`` over ``[*lead, m]``."""

    def __init__(self, n_in: int, widths: list[int], latent_dim: int, activation: str) -> None:
        super().__init__()
        self.body = _mlp([n_in, *widths], activation)
        self.head = nn.Linear(widths[-1], 2 * latent_dim)

    def forward(self, h: torch.Tensor) -> DiagonalGaussian:
        mu, log_var = self.head(self.body(h)).chunk(2, dim=-1)
        return DiagonalGaussian(mu, log_var)


def precision_weighted(up: DiagonalGaussian, prior: DiagonalGaussian) -> DiagonalGaussian:
    """The Ladder VAE's posterior (Sønderby et al. 2016, eqs. 18-19): the product of the
    bottom-up Gaussian and the top-down prior, normalised. Variance 1 / (1/s^ + 1/s_p); mean
    the precision-weighted average, written with w = s_p / (s^ + s_p) = sigmoid(v_p - v^)."""
    log_var = -torch.logaddexp(-up.log_var, -prior.log_var)
    w = torch.sigmoid(prior.log_var - up.log_var)
    return DiagonalGaussian(w * up.loc + (1.0 - w) * prior.loc, log_var)


@register_model
class HierarchicalVAE(LikelihoodModel):
    """A VAE with ``len(latent_dims)`` stochastic layers, bottom-up or top-down inference
    (module docstring). Data is flattened: MLP bodies only."""

    name = "hvae"
    description = (
        "hierarchical VAE with L >= 2 stochastic layers (Burda et al. 2015), bottom-up or "
        "top-down (Ladder VAE) inference"
    )
    config_class = HVAEConfig
    has_continuous_latent = True
    has_posterior = False  # q(z_1..L|x) is a chain, not one distribution object
    objectives = ("elbo", "iwae")

    def __init__(self, config: HVAEConfig) -> None:
        super().__init__()
        self.config = config = self.own_config(config)
        check_buildable(config)
        self.likelihood = build_likelihood(config)
        dims, widths, act = config.latent_dims, config.hidden_dims, config.activation
        d = math.prod(config.data_shape)
        top_down = config.inference == "top-down"
        # Inference: layer i reads z_{i-1} (bottom-up) or the deterministic d_{i-1} (top-down).
        self.up_bodies = nn.ModuleList()
        self.up_heads = nn.ModuleList()
        for i, (m, w) in enumerate(zip(dims, widths, strict=True)):
            n_in = d if i == 0 else (widths[i - 1][-1] if top_down else dims[i - 1])
            self.up_bodies.append(_mlp([n_in, *w], act))
            self.up_heads.append(nn.Linear(w[-1], 2 * m))
        # Generation: p(z_l|z_{i+1}) for i = 1..L-1 with the widths mirrored, p(x|z_1).
        self.down = nn.ModuleList(
            GaussianLayer(dims[i + 1], list(reversed(widths[i + 1])), dims[i], act)
            for i in range(len(dims) - 1)
        )
        out = math.prod(self.likelihood.param_shape)
        self.decoder = nn.Sequential(
            _mlp([dims[0], *reversed(widths[0])], act),
            nn.Linear(widths[0][0], out),
            nn.Unflatten(-1, self.likelihood.param_shape),
        )
        initialise_(self, config.init, act)
        self.prior = PRIORS[config.prior](self, dims[-1])  # p(z_L); may use the model

    @property
    def latent_dim(self) -> int:
        """All layers concatenated, bottom first."""
        return sum(self.config.latent_dims)

    @property
    def num_layers(self) -> int:
        return len(self.config.latent_dims)

    def network_bodies(self) -> list[nn.Module]:
        """The MLP bodies (the Gaussian heads and the x decoder's last layer stay fp32)."""
        return [*self.up_bodies, *(layer.body for layer in self.down), self.decoder[0]]

    # --- inference ------------------------------------------------------------------------

    def _up(self, i: int, h: torch.Tensor) -> tuple[torch.Tensor, DiagonalGaussian]:
        features = self.up_bodies[i](h)
        mu, log_var = self.up_heads[i](features).chunk(2, dim=-1)
        return features, DiagonalGaussian(mu, log_var)

    def proposal(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> list:
        """What depends on x alone: q(z_1|x) (bottom-up) or the bottom-up estimates
        N(mu^_l, s^_l) of every layer (top-down). Lists of ``DiagonalGaussian`` over ``[B]``."""
        self.check_input(x)
        h = x.flatten(1)
        if self.config.inference == "bottom-up":
            return [self._up(0, h)[1]]
        estimates = []
        for i in range(self.num_layers):
            h, q_hat = self._up(i, h)
            estimates.append(q_hat)
        return estimates

    def _chain(self, proposal: list, num_samples: int, mean: bool = False) -> _Chain:
        """Draw z_1..L ~ q (``num_samples`` draws, or the mean path if ``mean``): the layers
        ``[K, B, m_l]`` (bottom first) with the q and p each was drawn against."""
        L = self.num_layers

        def draw(q: DiagonalGaussian) -> torch.Tensor:
            if mean:
                return q.loc.expand(num_samples, *q.loc.shape) if q.loc.dim() == 2 else q.loc
            return q.rsample((num_samples,)) if q.loc.dim() == 2 else q.rsample()

        zs: list[torch.Tensor] = [None] * L  # type: ignore[list-item]
        qs: list[DiagonalGaussian] = [None] * L  # type: ignore[list-item]
        if self.config.inference == "bottom-up":
            qs[0] = proposal[0]
            zs[0] = draw(qs[0])
            for i in range(1, L):
                qs[i] = self._up(i, zs[i - 1])[1]
                zs[i] = draw(qs[i])
            ps = [self.down[i](zs[i + 1]) for i in range(L - 1)]
            # Only the top layer's q and p share their parent sample: closed form there.
            closed = [False] * (L - 1) + [True]
        else:
            qs[-1] = proposal[-1]
            zs[-1] = draw(qs[-1])
            ps = [None] * (L - 1)
            for i in range(L - 2, -1, -1):
                ps[i] = self.down[i](zs[i + 1])
                qs[i] = precision_weighted(proposal[i], ps[i])
                zs[i] = draw(qs[i])
            closed = [True] * L
        return _Chain(zs, qs, ps, closed)

    def _log_q_and_p(self, chain: _Chain) -> tuple[torch.Tensor, torch.Tensor]:
        """log q(z_1..L|x) and log p(z_1..L) at the chain's draws, ``[K, B]`` each: what the
        importance weights need (no KL terms)."""
        log_q = sum(q.log_prob(z) for q, z in zip(chain.qs, chain.zs, strict=True))
        log_p = sum(p.log_prob(z) for p, z in zip(chain.ps, chain.zs[:-1], strict=True))
        return log_q, log_p + self.prior.log_prob(chain.zs[-1])

    def _layer_kls(self, chain: _Chain) -> list[torch.Tensor]:
        """Each layer's term of the ELBO's KL(q(z_1..L|x) || p(z_1..L)) at the chain's draws,
        ``[K, B]`` each, bottom first: in closed form where q and p share their parent
        sample, else log q - log p. Their sum is the KL."""
        zs, qs, ps = chain.zs, chain.qs, chain.ps
        kls = [
            qs[i].kl_diagonal_gaussian(ps[i].loc, ps[i].log_var)
            if chain.closed[i]
            else qs[i].log_prob(zs[i]) - ps[i].log_prob(zs[i])
            for i in range(self.num_layers - 1)
        ]
        # the top layer against the prior: the prior decides (closed form or Monte Carlo)
        top = self.prior.kl(qs[-1], zs[-1].unsqueeze(0) if zs[-1].dim() == 2 else zs[-1])
        return [*kls, top.expand(zs[0].shape[:-1])]

    # --- the contract ----------------------------------------------------------------------

    def encode(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """The mean path: z_l = the mean of q(z_l | the layer below at its mean), all layers
        concatenated ``[B, sum(latent_dims)]`` (deterministic; for pictures)."""
        zs = self._chain(self.proposal(x), 1, mean=True).zs
        return torch.cat([z[0] for z in zs], dim=-1)

    def top_posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """The top layer's posterior at ``x``, batch ``[B]``: q(z_L|x) from the bottom-up
        pass (top-down), or q(z_L|z_{L-1}) along the mean path below it (bottom-up). A
        VampPrior over z_L mixes these at its pseudo-inputs (a deterministic function of the
        pseudo-inputs, so the mixture is an exact density either way)."""
        proposal = self.proposal(x)
        if self.config.inference == "top-down":
            return proposal[-1]
        z = proposal[0].loc
        for i in range(1, self.num_layers):
            q = self._up(i, z)[1]
            z = q.loc
        return q

    @property
    def latent_layers(self) -> tuple[int, ...]:
        """The stochastic layers' sizes, bottom first."""
        return tuple(self.config.latent_dims)

    def decode_params(self, z: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """The likelihood's parameters from z_1 alone, for ``z [*lead, sum(latent_dims)]``
        (bottom layer first): x depends on z only through z_1."""
        return self.decoder(z[..., : self.config.latent_dims[0]])

    def group_decoder(self, group: int) -> nn.Module:
        """Layer ``group``'s decoder: each conditional p(z_{l-1}|z_l) replaced by its mean,
        down to z_1, then the decoder of x. The layers above play no part (x depends on them
        only through z_{group})."""
        if not 0 <= group < self.num_layers:
            raise IndexError(f"this model has {self.num_layers} latent layers, not {group}")
        steps: list[nn.Module] = []
        for i in range(group - 1, -1, -1):
            down = self.down[i]  # an MLP body, then a linear head [mu, log_var]
            steps += [down.body, down.head, TakeFirst(self.config.latent_dims[i])]
        return nn.Sequential(*steps, self.decoder)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Ancestral sampling: z_L ~ p(z_L), z_l ~ p(z_l|z_{i+1}) down to z_1, then E[x|z_1]."""
        z = self.prior.sample(n, generator=generator)
        for i in range(self.num_layers - 2, -1, -1):
            p = self.down[i](z)
            eps = torch.randn(p.loc.shape, generator=generator, dtype=z.dtype, device=z.device)
            z = p.loc + torch.exp(0.5 * p.log_var) * eps
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z_1] at the mean path's z_1, ``[B, *data_shape]``."""
        return self.decode_mean(self.encode(x))

    def elbo(
        self, x: torch.Tensor, num_mc_samples: int = 1, *, y: torch.Tensor | None = None
    ) -> ELBOTerms:
        """ELBO = E_q[log p(x|z_1)] - KL(q(z_1..L|x) || p(z_1..L)), nats per example ``[B]``,
        with L = ``num_mc_samples`` draws (the KL per layer as in the module docstring; the
        layers' KLs ``[B, number of layers]`` are the groups free bits clamp)."""
        chain = self._chain(self.proposal(x), num_mc_samples)
        log_px_z = self.likelihood.log_density(self.decoder(chain.zs[0]), x).mean(dim=0)
        layer_kls = torch.stack(self._layer_kls(chain), dim=-1).mean(dim=0)  # [B, L]
        kl = layer_kls.sum(dim=-1)
        # Free bits act per stochastic layer: each layer's KL is one group.
        return ELBOTerms(elbo=log_px_z - kl, log_px_z=log_px_z, kl=kl, group_kl=lambda: layer_kls)

    def log_weight_terms_given(
        self, proposal: list, x: torch.Tensor, num_samples: int, *, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(x|z_1), log p(z_1..L) - log q(z_1..L|x)), ``[K, B]`` each."""
        chain = self._chain(proposal, num_samples)
        log_q, log_p = self._log_q_and_p(chain)
        return self.likelihood.log_density(self.decoder(chain.zs[0]), x), log_p - log_q

    @torch.no_grad()
    def latent_moments(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> LatentMoments:
        """Mean and covariance of q(z_1..L|x) over all layers, ``[B, m]`` and ``[B, m, m]``,
        Monte-Carlo estimates from ``MOMENT_SAMPLES`` draws (the upper layers' marginals are
        not Gaussian); no per-coordinate KL (the prior of a lower layer is conditional)."""
        zs = self._chain(self.proposal(x), MOMENT_SAMPLES).zs
        return LatentMoments.from_draws(torch.cat(zs, dim=-1), list(self.config.latent_dims))
