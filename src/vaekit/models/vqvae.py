"""VQ-VAE (van den Oord et al. 2017): a deterministic encoder, a codebook of K vectors, and a
decoder of the quantised codes.

The encoder maps x to ``num_latents`` vectors z_e ``[B, n, d]``; each is replaced by its
nearest codebook vector e_k (the code k is the latent, a discrete index); the decoder reads
the quantised vectors z_q. Training minimises -log p(x|z_q) + beta ||z_e - sg(z_q)||^2 (the
reconstruction and commitment terms, eq. 3), with the straight-through gradient z_e + sg(z_q
- z_e) into the encoder. The codebook is not trained by gradient but as an exponential moving
average of the encoder outputs assigned to each code (App. A.1):

    N_k <- g N_k + (1 - g) n_k,   m_k <- g m_k + (1 - g) sum_{j: k(j) = k} z_e,j,   e_k = m_k / N_k

(n_k: assignments in the batch, g = ``ema_decay``). A code whose usage N_k falls below
``dead_code_threshold`` is restarted at a random encoder output of the batch.

It is not a VAE: it defines no likelihood p(x) and no ELBO (``has_likelihood`` is False), and
vaekit reports none. What it reports: log p(x|z_q(x)) (the reconstruction term, nats per
example), the commitment term, and the codebook's usage and perplexity. ``sample`` decodes
codes drawn independently per position from the codebook's usage frequencies N_k / sum N:
a simple prior over codes, not a fitted autoregressive one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from vaekit.distributions import build_likelihood
from vaekit.models.base import DecodesThroughLikelihood, LatentMoments, Model
from vaekit.models.bodies import check_buildable
from vaekit.models.registry import register_model
from vaekit.networks import MLPDecoder, MLPEncoder
from vaekit.settings import ConfigError, ModelConfig, setting


@dataclass
class VQVAEConfig(ModelConfig):
    """The VQ-VAE's ``[model]`` table (``kind = "vqvae"``)."""

    kind: str = dataclasses.field(default="vqvae", init=False)
    # n code vectors per example, each of size d, each one of K codebook entries.
    num_latents: int = setting(8, help="VQ-VAE: n, code vectors per example")
    code_dim: int = setting(16, help="VQ-VAE: d, the size of each code vector")
    codebook_size: int = setting(128, help="VQ-VAE: K, the codebook's entries")
    hidden_dims: list[int] = setting(
        default_factory=lambda: [512, 256], help="MLP widths, e.g. 512,256 (mirrored)"
    )
    activation: Literal["relu", "elu", "gelu", "tanh", "silu"] = setting(
        "relu", help="the hidden layers' nonlinearity"
    )
    commitment: float = setting(
        0.25, help="VQ-VAE: beta of the commitment term (van den Oord et al. 2017 use 0.25)"
    )
    ema_decay: float = setting(
        0.99,
        flag="codebook-decay",
        help="VQ-VAE: decay of the codebook's moving averages (0.99 in the paper)",
    )
    dead_code_threshold: float = setting(
        0.01,
        help="VQ-VAE: restart a code whose moving-average usage (assignments per batch) falls "
        "below this",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_latents", "code_dim", "codebook_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if any(h < 1 for h in self.hidden_dims) or not self.hidden_dims:
            raise ConfigError(f"model.hidden_dims must be positive widths, got {self.hidden_dims}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"model.ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.commitment < 0 or self.dead_code_threshold < 0:
            raise ConfigError("model.commitment and model.dead_code_threshold must be >= 0")


class EMACodebook(nn.Module):
    """K code vectors ``[K, d]`` kept as moving averages (module docstring). Buffers, not
    parameters: the optimiser never touches them; checkpoints save them."""

    def __init__(self, codebook_size: int, code_dim: int, decay: float, threshold: float):
        super().__init__()
        self.decay, self.threshold = decay, threshold
        init = torch.randn(codebook_size, code_dim)
        self.register_buffer("vectors", init.clone())
        self.register_buffer("usage", torch.ones(codebook_size))  # N_k
        self.register_buffer("sums", init.clone())  # m_k = N_k e_k

    def assign(self, z_e: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared Euclidean distance) for each row ``[..., d]``."""
        distances = (
            z_e.square().sum(-1, keepdim=True)
            - 2 * z_e @ self.vectors.T
            + self.vectors.square().sum(-1)
        )  # [..., K]
        return distances.argmin(-1)

    @torch.no_grad()
    def update(self, z_e: torch.Tensor, codes: torch.Tensor) -> None:
        """One moving-average step from encoder outputs ``z_e [N, d]`` assigned to ``codes
        [N]``, then the restart of dead codes at random rows of ``z_e``."""
        one_hot = torch.nn.functional.one_hot(codes, self.vectors.shape[0]).to(z_e.dtype)
        counts, sums = one_hot.sum(0), one_hot.T @ z_e  # n_k [K], sum of assigned z_e [K, d]
        distributed = dist.is_available() and dist.is_initialized()
        if distributed:  # under torchrun: the statistics of the global batch on every rank
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        g = self.decay
        self.usage.mul_(g).add_(counts, alpha=1 - g)  # N_k
        self.sums.mul_(g).add_(sums, alpha=1 - g)  # m_k
        self.vectors.copy_(self.sums / self.usage.unsqueeze(-1))  # e_k = m_k / N_k
        dead = self.usage < self.threshold
        if dead.any():
            rows = torch.randint(0, z_e.shape[0], (int(dead.sum()),), device=z_e.device)
            self.vectors[dead] = z_e[rows]
            self.sums[dead] = z_e[rows]
            self.usage[dead] = 1.0
        if distributed:  # restarts draw from each rank's own rows: rank 0's copy wins
            for buffer in (self.vectors, self.sums, self.usage):
                dist.broadcast(buffer, src=0)


def code_statistics(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Usage and perplexity of the code assignments ``codes [...]``: ``codebook_usage`` is
    the fraction of the K codes used at least once; ``codebook_perplexity`` = exp(H(p)) of the
    empirical code frequencies p (K if all codes are used equally, 1 if one code is)."""
    counts = torch.bincount(codes.flatten(), minlength=codebook_size).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {
        "codebook_usage": float((counts > 0).double().mean()),
        "codebook_perplexity": float(entropy.exp()),
    }


@register_model
class VQVAE(DecodesThroughLikelihood, Model):
    """VQ-VAE with MLP bodies and an EMA codebook (module docstring)."""

    name = "vqvae"
    description = "VQ-VAE: discrete codes with an EMA codebook (no likelihood p(x), no ELBO)"
    config_class = VQVAEConfig
    has_continuous_latent = False
    has_posterior = False
    has_codebook = True
    discrete = True
    objectives = ("vq",)

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        self.config = config = self.own_config(config)
        check_buildable(config)
        self.likelihood = build_likelihood(config)
        n, d = config.num_latents, config.code_dim
        self.encoder = MLPEncoder(tuple(config.data_shape), config.hidden_dims, config.activation)
        self.to_codes = nn.Linear(self.encoder.out_features, n * d)
        self.decoder = MLPDecoder(
            n * d,
            list(reversed(config.hidden_dims)),
            self.likelihood.param_shape,
            config.activation,
        )
        self.codebook = EMACodebook(
            config.codebook_size, d, config.ema_decay, config.dead_code_threshold
        )

    @property
    def latent_dim(self) -> int:
        """n * d: the width of the quantised code vector the decoder reads."""
        return self.config.num_latents * self.config.code_dim

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def network_bodies(self) -> list[nn.Module]:
        return [self.encoder, self.decoder]

    def _z_e(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder outputs ``[B, n, d]``."""
        self.check_input(x)
        return self.to_codes(self.encoder(x)).unflatten(-1, (self.config.num_latents, -1))

    def encode(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """The codes, integer indices ``[B, n]`` into the codebook."""
        return self.codebook.assign(self._z_e(x))

    def quantise(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of ``codes [*, n]``, flattened: ``[*, n * d]``."""
        return self.codebook.vectors[codes].flatten(-2)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """E[x|z_q] for codes drawn independently per position with probabilities
        N_k / sum N (the codebook's usage), ``[n, *data_shape]``."""
        p = self.codebook.usage / self.codebook.usage.sum()
        draws = n * self.config.num_latents
        codes = torch.multinomial(p, draws, replacement=True, generator=generator)
        return self.decode_mean(self.quantise(codes.view(n, -1)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z_q(x)], ``[B, *data_shape]``."""
        return self.decode_mean(self.quantise(self.encode(x)))

    def latent_moments(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> LatentMoments:
        raise ValueError("a VQ-VAE's latent is a discrete code: it has no latent moments")

    def vq_terms(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log p(x|z_q) ``[B]`` nats, commitment ||z_e - sg(z_q)||^2 ``[B]``, codes
        ``[B, n]``, z_e ``[B, n, d]``), with the straight-through gradient from the decoder
        into the encoder."""
        z_e = self._z_e(x)  # [B, n, d]
        codes = self.codebook.assign(z_e.detach())
        z_q = self.codebook.vectors[codes]  # [B, n, d], no gradient (EMA codebook)
        straight_through = z_e + (z_q - z_e).detach()
        log_px_z = self.likelihood.log_density(self.decoder(straight_through.flatten(-2)), x)
        commitment = (z_e - z_q).square().sum(dim=(-2, -1))
        return log_px_z, commitment, codes, z_e

    def training_loss(
        self, x: torch.Tensor, *, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-log p(x|z_q) + beta * commitment per example ``[B]`` and batch metrics; in
        training mode also one moving-average step of the codebook (van den Oord et al. 2017,
        eq. 3 and App. A.1)."""
        log_px_z, commitment, codes, z_e = self.vq_terms(x)
        if self.training:
            self.codebook.update(z_e.detach().flatten(0, 1), codes.flatten())
        stats = code_statistics(codes, self.config.codebook_size)
        metrics = {
            "log_px_z": log_px_z.mean().detach(),
            "commitment": commitment.mean().detach(),
            "codebook_perplexity": log_px_z.new_tensor(stats["codebook_perplexity"]),
        }
        return -log_px_z + self.config.commitment * commitment, metrics

    def per_example_metrics(
        self, x: torch.Tensor, *, y: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """log p(x|z_q(x)) (nats) and the commitment term (squared code units), ``[B]``."""
        log_px_z, commitment, _, _ = self.vq_terms(x)
        return {"log_px_z": log_px_z, "commitment": commitment}

    @torch.no_grad()
    def codebook_statistics(self, x: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
        """Usage and perplexity of the codes of ``x [N, ...]`` (see :func:`code_statistics`)."""
        device = next(self.parameters()).device
        codes = torch.cat(
            [self.encode(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
        )
        return code_statistics(codes, self.config.codebook_size) | {
            "codebook_size": self.config.codebook_size
        }
