"""A deep top-down hierarchical VAE with residual cells, for vectors (``kind = "deep-hvae"``).

The family of models that beat one stochastic layer (Ladder VAE, Sønderby et al. 2016;
NVAE, Vahdat & Kautz 2020; VDVAE, Child 2021) share one shape, which this model follows:

* a deterministic bottom-up pass of residual cells gives features ``a_1 ... a_L`` of x (one
  per latent group, ``a_1`` nearest the data);
* one top-down path, shared by inference and generation, carries a state ``s`` of width W.
  It starts from a learned constant. At group l (top first) the prior p(z_l|z_{>l}) is a
  Gaussian read from ``s``, the posterior q(z_l|z_{>l}, x) a Gaussian read from ``s`` and
  ``a_l`` together; the draw is added into the state (``s += proj(z_l)``) and a residual
  cell follows;
* the likelihood p(x|z) reads the final state. Every group reaches the output through the
  residual stream: each is a skip connection to the likelihood.

The top group's prior comes from the prior registry (N(0, I) or the VampPrior, whose
components are q(z_L|u_k) at learned pseudo-inputs). Lower groups have closed-form KLs (q and
p of a group are Gaussians given the same state), the top one too for N(0, I). The importance
weights run over every group: log w = log p(x|z) + sum_l [log p(z_l|z_{>l}) - log q(z_l|.)],
so ``log_likelihood`` estimates log p(x) of the full model. The ELBO's KL is reported per
group (``[B, L]``), so free bits and KL warm-up act on each group.

Cells are ``residual`` (s + f(s)) or ``gated`` (s + f(s) * sigmoid(g(s)), the gated dense
layers of the VampPrior paper's hierarchical VAE). The last layer of every cell starts at
zero and every prior head at N(0, I), so the untrained network is shallow and stable at any
depth, which is what lets deep hierarchies train without the KL spikes of naive stacks.

The code (``latent_dim``) is every group concatenated, bottom first: z = [z_1, ..., z_L].
``decode(z)`` runs the top-down path with those draws: p(x|z) is exact.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from vaekit.distributions import PRIORS, DiagonalGaussian, build_likelihood
from vaekit.models.base import MOMENT_SAMPLES, ELBOTerms, LatentMoments, LikelihoodModel
from vaekit.models.bodies import check_buildable, check_top_prior
from vaekit.models.deep_cells import (
    DOWNSAMPLE,
    Cell,
    GaussianHead,
    OverLeading,
    Projection,
    conv_stem,
    conv_tail,
)
from vaekit.models.paths import Inject, Residual, TopDown
from vaekit.models.registry import register_model
from vaekit.networks import ACTIVATIONS
from vaekit.settings import ConfigError, ModelConfig, setting


@dataclass
class DeepHVAEConfig(ModelConfig):
    """The deep hierarchical VAE's ``[model]`` table (``kind = "deep-hvae"``)."""

    kind: str = dataclasses.field(default="deep-hvae", init=False)
    latent_dims: list[int] = setting(
        default_factory=lambda: [16, 16, 16, 16],
        help="deep hierarchical VAE: sizes of the latent groups z_1 (nearest x) ... z_L (top)",
    )
    network: Literal["mlp", "conv"] = setting(
        "mlp",
        help="mlp: dense cells on the flattened data; conv: 3x3 convolutional cells on feature "
        "maps at a quarter of the image's resolution (images whose sides divide by 4), each "
        "group latent_dims[l] channels there",
    )
    width: int | None = setting(
        None,
        help="W, the width of the residual stream in both passes (conv: its channels)",
        shown_default="512 (mlp), 64 (conv)",
    )
    cells: int = setting(1, help="residual cells per group in each pass")
    cell: Literal["residual", "gated"] = setting(
        "residual", help="cell type: residual s + f(s), or gated s + f(s) * sigmoid(g(s))"
    )
    activation: Literal["relu", "elu", "gelu", "tanh", "silu"] = setting(
        "silu", help="the cells' nonlinearity"
    )
    prior: str = setting("standard-normal", help="p(z_L), the top group: standard-normal or vamp")
    num_pseudo_inputs: int = setting(
        500, help="K, the VampPrior's learned pseudo-inputs (prior vamp)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.width is None:
            self.width = 64 if self.network == "conv" else 512
        if not self.latent_dims or min(self.latent_dims) < 1:
            raise ConfigError(
                f"model.latent_dims needs >= 1 positive group sizes, got {self.latent_dims}"
            )
        if self.width < 1 or self.cells < 1:
            raise ConfigError(
                f"model.width and model.cells must be >= 1, got {self.width} and {self.cells}"
            )
        check_top_prior(self.prior, self.num_pseudo_inputs)


@register_model
class DeepHierarchicalVAE(LikelihoodModel):
    """Top-down hierarchical VAE with residual or gated cells and any number of latent
    groups (module docstring). Data is flattened: dense cells."""

    name = "deep-hvae"
    description = (
        "deep top-down hierarchical VAE: residual or gated cells, any number of latent "
        "groups, a shared top-down path (Ladder VAE / NVAE / VDVAE family)"
    )
    config_class = DeepHVAEConfig
    has_continuous_latent = True
    has_posterior = False  # q(z_1..L|x) is a chain of groups, not one distribution object
    objectives = ("elbo", "iwae")

    def __init__(self, config: DeepHVAEConfig) -> None:
        super().__init__()
        self.config = config = self.own_config(config)
        check_buildable(config)
        self.likelihood = build_likelihood(config)
        dims, w, act, kind = config.latent_dims, config.width, config.activation, config.cell
        conv = config.network == "conv"
        grid = self._conv_grid(tuple(config.data_shape)) if conv else None
        self.state_shape = (w, *grid) if conv else (w,)  # the residual stream, per draw
        self.channel_dim = -3 if conv else -1
        # a group's size in numbers: its channels on the grid, or its width
        self.group_sizes = [m * grid[0] * grid[1] for m in dims] if conv else list(dims)

        def cells() -> nn.Module:
            block = nn.Sequential(*(Cell(w, kind, act, conv) for _ in range(config.cells)))
            return OverLeading(block) if conv else block

        if conv:
            self.stem = conv_stem(config.data_shape[0], w, kind, act)
        else:
            self.stem = nn.Linear(math.prod(config.data_shape), w)
        self.up = nn.ModuleList(cells() for _ in dims)  # bottom first
        self.down = nn.ModuleList(cells() for _ in dims)  # bottom first (run top first)
        self.start = nn.Parameter(torch.zeros(self.state_shape))  # the state before any group
        self.posterior_heads = nn.ModuleList(
            GaussianHead(2 * w, w, m, act, False, conv) for m in dims
        )
        # p(z_l | z_{>l}) below the top; the top group's prior comes from the registry.
        self.prior_heads = nn.ModuleList(GaussianHead(w, w, m, act, True, conv) for m in dims[:-1])
        self.project = nn.ModuleList(Projection(m, w, grid) for m in dims)
        self.act = ACTIVATIONS[act]()
        if conv:
            self.to_params = conv_tail(w, self.likelihood.param_shape[0], kind, act)
        else:
            out = math.prod(self.likelihood.param_shape)
            self.to_params = nn.Sequential(
                nn.Linear(w, out), nn.Unflatten(-1, self.likelihood.param_shape)
            )
        self.prior = PRIORS[config.prior](self, self.group_sizes[-1])  # may use the model

    @staticmethod
    def _conv_grid(data_shape: tuple[int, ...]) -> tuple[int, int]:
        """The convolutional stream's (h, w): the image's sides over DOWNSAMPLE."""
        if len(data_shape) != 3 or data_shape[1] % DOWNSAMPLE or data_shape[2] % DOWNSAMPLE:
            raise ConfigError(
                f"model.network = 'conv' needs images [C, H, W] whose sides divide by "
                f"{DOWNSAMPLE}; the data are {list(data_shape)}: use network = 'mlp'"
            )
        return data_shape[1] // DOWNSAMPLE, data_shape[2] // DOWNSAMPLE

    @property
    def latent_dim(self) -> int:
        """Every group concatenated, bottom first (conv: each group's maps flattened)."""
        return sum(self.group_sizes)

    @property
    def num_groups(self) -> int:
        return len(self.config.latent_dims)

    def network_bodies(self) -> list[nn.Module]:
        """The residual cells of both passes (the Gaussian heads and the output layer stay
        fp32 under mixed precision)."""
        return [*self.up, *self.down]

    # --- the two passes ---------------------------------------------------------------------

    def proposal(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The bottom-up features ``a_1 ... a_L`` of x, ``[B, *state_shape]`` each, bottom
        first: all that inference needs from x."""
        self.check_input(x)
        h = self.stem(x if self.channel_dim == -3 else x.flatten(1))
        features = []
        for cells in self.up:
            h = cells(h)
            features.append(h)
        return features

    def _posterior(self, g: int, s: torch.Tensor, a: torch.Tensor) -> DiagonalGaussian:
        return self.posterior_heads[g](torch.cat([s, a.expand_as(s)], dim=self.channel_dim))

    def _top_down(
        self, features: list[torch.Tensor] | None, zs: list[torch.Tensor] | None, k: int, mean=False
    ) -> tuple[torch.Tensor, list[torch.Tensor], list, list]:
        """Run the top-down path. With ``features``, draw each group from q (``k`` draws, or
        q's mean if ``mean``); else use the given draws ``zs`` (bottom first,
        ``[k, B, m_l]``). Returns the final state ``[k, B, *state_shape]`` and, bottom first, the
        draws, the posteriors (None without features) and the priors below the top."""
        L = self.num_groups
        batch = features[0].shape[0] if features is not None else zs[0].shape[-2]
        s = self.start.expand(k, batch, *self.state_shape)
        out_z: list = [None] * L
        qs: list = [None] * L
        ps: list = [None] * (L - 1)
        for g in range(L - 1, -1, -1):
            if g < L - 1:
                ps[g] = self.prior_heads[g](s)
            if features is not None:
                qs[g] = self._posterior(g, s, features[g])
                z = qs[g].loc if mean else qs[g].rsample()
            else:
                z = zs[g]
            out_z[g] = z
            s = self.down[g](s + self.project[g](z))
        return s, out_z, qs, ps

    def _params(self, s: torch.Tensor) -> torch.Tensor:
        return self.to_params(self.act(s))

    def _group_kls(self, zs: list, qs: list, ps: list) -> torch.Tensor:
        """Each group's term of KL(q(z_1..L|x) || p(z_1..L)) at the draws, ``[K, B, L]``,
        bottom first: closed form below the top (q and p share the state); the top group
        against the prior (closed form for N(0, I), Monte Carlo for the VampPrior)."""
        kls = [qs[g].kl_diagonal_gaussian(ps[g].loc, ps[g].log_var) for g in range(len(ps))]
        kls.append(self.prior.kl(qs[-1], zs[-1]).expand(zs[0].shape[:-1]))
        return torch.stack(kls, dim=-1)

    # --- the contract ----------------------------------------------------------------------

    def top_posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """q(z_L|x), batch ``[B]``: the top group's posterior depends on x alone (what a
        VampPrior over z_L mixes at its pseudo-inputs)."""
        features = self.proposal(x)
        s = self.start.expand(features[-1].shape[0], *self.state_shape)
        return self._posterior(self.num_groups - 1, s, features[-1])

    def encode(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """The mean path: each group at its posterior mean given the means above,
        ``[B, latent_dim]`` bottom first (deterministic; for pictures and codes)."""
        _, zs, _, _ = self._top_down(self.proposal(x), None, 1, mean=True)
        return torch.cat([z[0] for z in zs], dim=-1)

    def _split(self, z: torch.Tensor) -> list[torch.Tensor]:
        return list(z.split(self.group_sizes, dim=-1))

    @property
    def latent_layers(self) -> tuple[int, ...]:
        """The groups' sizes in numbers of the code, bottom first (conv: channels x grid)."""
        return tuple(self.group_sizes)

    def decode_params(self, z: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """The likelihood's parameters for ``z [B, latent_dim]`` or ``[K, B, latent_dim]``
        (groups bottom first): the top-down path with those draws."""
        lead = z.dim() == 2
        zs = self._split(z.unsqueeze(0) if lead else z)
        s, _, _, _ = self._top_down(None, zs, zs[0].shape[0])
        params = self._params(s)
        return params[0] if lead else params

    @torch.no_grad()
    def group_decoder(self, group: int) -> nn.Module:
        """Group ``group``'s decoder, ``[B, m_group] -> [B, *param_shape]``: the groups above
        it at their prior means (the top at p(z_L)'s mean, each lower one at the mean of
        p(z_l|z_{>l}) given those), which fixes the stream it enters; then its own cells, and
        every group below at the mean of its conditional prior given the stream."""
        L = self.num_groups
        if not 0 <= group < L:
            raise IndexError(f"this model has {L} latent groups, not {group}")
        s = self.start[None]  # [1, *state_shape]
        for g in range(L - 1, group, -1):
            z = self.prior.mean()[None] if g == L - 1 else self.prior_heads[g](s).loc
            s = self.down[g](s + self.project[g](z))
        steps = [Inject(0, self.group_sizes[group], self._plain_projection(group))]
        steps += self._plain_cells(group)
        for g in range(group - 1, -1, -1):
            mean = self.prior_heads[g].mean_path(self.state_shape[1:])
            steps += [Residual(nn.Sequential(*mean, self._plain_projection(g)))]
            steps += self._plain_cells(g)
        return nn.Sequential(TopDown(s[0], steps), *self._plain_tail())

    @torch.no_grad()
    def code_decoder(self) -> nn.Module:
        """The whole top-down path as plain layers: the full code ``[B, latent_dim]`` (every
        group, bottom first) to the likelihood's parameters, as ``decode_params`` (the
        explorer's decoder when the groups other than the moved one are held at given
        values)."""
        steps: list[nn.Module] = []
        for g in range(self.num_groups - 1, -1, -1):
            offset = sum(self.group_sizes[:g])
            steps.append(Inject(offset, self.group_sizes[g], self._plain_projection(g)))
            steps += self._plain_cells(g)
        return nn.Sequential(TopDown(self.start, steps), *self._plain_tail())

    # The pieces of the plain-layer decoders (the explorer's page runs them): a conv model's
    # modules, made for any leading dimensions, are taken out of their OverLeading wrappers.
    def _plain_projection(self, g: int) -> nn.Module:
        """A group's flat code ``[B, m]`` into the stream ``[B, *state_shape]``."""
        layer = self.project[g].layer
        if self.channel_dim == -1:
            return layer
        return nn.Sequential(nn.Unflatten(1, (layer.in_channels, *self.state_shape[1:])), layer)

    def _plain_cells(self, g: int) -> list[nn.Module]:
        cells = self.down[g].module if self.channel_dim == -3 else self.down[g]
        return [Residual(cell.branch()) for cell in cells]

    def _plain_tail(self) -> list[nn.Module]:
        """The nonlinearity and the output layers after the last group."""
        tail = self.to_params.module if self.channel_dim == -3 else self.to_params
        return [self.act, *(Residual(m.branch()) if isinstance(m, Cell) else m for m in tail)]

    def _ancestral(
        self, n: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """z_L ~ p(z_L), then each group from its prior given the state: the final state
        ``[n, *state_shape]`` and the draws, bottom first."""
        L = self.num_groups
        s = self.start.expand(n, *self.state_shape)
        zs: list = [None] * L
        for g in range(L - 1, -1, -1):
            if g == L - 1:
                z = self.prior.sample(n, generator=generator)
            else:
                p = self.prior_heads[g](s)
                eps = torch.randn(p.loc.shape, generator=generator, dtype=s.dtype, device=s.device)
                z = p.loc + torch.exp(0.5 * p.log_var) * eps
            zs[g] = z
            s = self.down[g](s + self.project[g](z))
        return s, zs

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Ancestral sampling: z_L ~ p(z_L), then each group from its prior given the state,
        then E[x|z], ``[n, *data_shape]``."""
        return self.likelihood.mean(self._params(self._ancestral(n, generator)[0]))

    @torch.no_grad()
    def sample_codes(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The codes of ``n`` ancestral draws, ``[n, latent_dim]`` bottom first: what
        ``sample`` decodes with the same generator."""
        return torch.cat(self._ancestral(n, generator)[1], dim=-1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z] at the mean path's z, ``[B, *data_shape]``."""
        return self.decode_mean(self.encode(x))

    def elbo(
        self, x: torch.Tensor, num_mc_samples: int = 1, *, y: torch.Tensor | None = None
    ) -> ELBOTerms:
        """ELBO = E_q[log p(x|z)] - KL(q(z_1..L|x) || p(z_1..L)), nats per example ``[B]``,
        from ``num_mc_samples`` draws; the KL per group ``[B, L]`` is what free bits clamp."""
        s, zs, qs, ps = self._top_down(self.proposal(x), None, num_mc_samples)
        log_px_z = self.likelihood.log_density(self._params(s), x).mean(dim=0)
        group_kls = self._group_kls(zs, qs, ps).mean(dim=0)  # [B, L]
        kl = group_kls.sum(dim=-1)
        return ELBOTerms(elbo=log_px_z - kl, log_px_z=log_px_z, kl=kl, group_kl=lambda: group_kls)

    def log_weight_terms_given(
        self,
        proposal: list[torch.Tensor],
        x: torch.Tensor,
        num_samples: int,
        *,
        y: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(x|z), log p(z_1..L) - log q(z_1..L|x)), ``[K, B]`` each."""
        s, zs, qs, ps = self._top_down(proposal, None, num_samples)
        log_q = sum(q.log_prob(z) for q, z in zip(qs, zs, strict=True))
        log_p = sum(p.log_prob(z) for p, z in zip(ps, zs[:-1], strict=True))
        log_p = log_p + self.prior.log_prob(zs[-1])
        return self.likelihood.log_density(self._params(s), x), log_p - log_q

    @torch.no_grad()
    def latent_moments(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> LatentMoments:
        """Mean and covariance of q(z_1..L|x) over every group, ``[B, m]`` and ``[B, m, m]``:
        Monte-Carlo estimates from ``MOMENT_SAMPLES`` draws (a lower group's marginal is a
        mixture over the draws above it)."""
        _, zs, _, _ = self._top_down(self.proposal(x), None, MOMENT_SAMPLES)
        return LatentMoments.from_draws(torch.cat(zs, dim=-1), self.group_sizes)
