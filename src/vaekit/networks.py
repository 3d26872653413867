"""Encoder and decoder bodies: plain ``nn.Module``s with a shape contract, no probability.

Contract (what :class:`vaekit.VAE` expects from any body, including a user's own):

* an encoder maps ``x [B, *data_shape]`` to features ``[B, out_features]`` and has an
  ``out_features`` attribute;
* a decoder maps ``z [*lead, latent_dim]`` (any number of leading dims, e.g. ``[K, B, m]``
  for importance samples) to the likelihood's parameters ``[*lead, *data_shape]``.
"""

from __future__ import annotations

import itertools
import math
import typing
from typing import Literal

import torch
from torch import nn

from vaekit.support.spelling import spell

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


# model.init's choices: one definition for the config fields, the flags and the check below.
Init = Literal["default", "glorot"]
INITS: tuple[str, ...] = typing.get_args(Init)


def glorot_init_(module: nn.Module, gain: float) -> None:
    """Glorot & Bengio's (2010) uniform initialisation scaled by ``gain`` (5/3 for tanh,
    sqrt(2) for the ReLU family) for every Linear, Conv2d and ConvTranspose2d layer in
    ``module``; zero biases.

    Why it is offered: PyTorch's default (weights of standard deviation 1 / sqrt(3 fan_in))
    shrinks the signal through each tanh layer. At initialisation the posterior means of
    Burda et al.'s tanh model then differ between MNIST images by about 0.05 (about 1 with
    this), the decoder learns the pixel marginals first and stays there even with the KL
    switched off, so a KL warm-up has nothing to protect (``model.init``). It is not the
    default because, without a warm-up, the larger start measured worse on the bottom-up
    VampPrior model."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            nn.init.xavier_uniform_(layer.weight, gain=gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def initialise_(module: nn.Module, init: str, activation: str) -> None:
    """Apply the initialisation named by ``model.init`` (one of :data:`INITS`) to the layers
    of ``module`` whose nonlinearity is ``activation``: ``default`` keeps PyTorch's."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if init == "glorot":
        gain = nn.init.calculate_gain("tanh" if activation == "tanh" else "relu")
        glorot_init_(module, gain=gain)


def activated(activation: str, dropout: float = 0.0) -> list[nn.Module]:
    """A hidden layer's nonlinearity, then dropout with probability ``dropout``
    (``model.dropout``) where it is > 0. With 0 no Dropout module is added, so the layers,
    their names in a model file and the random numbers drawn are those of a model built
    before dropout existed."""
    return [ACTIVATIONS[activation](), *([nn.Dropout(dropout)] if dropout > 0 else [])]


def _mlp(sizes: list[int], activation: str, dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers += activated(activation, dropout)
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Flatten ``[B, *data_shape]`` and apply Linear+activation layers of ``hidden_dims``,
    each activation followed by dropout with probability ``dropout`` in training mode.

    Output: ``[B, hidden_dims[-1]]`` (activated; the posterior head is linear on top).
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        hidden_dims: list[int],
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not hidden_dims:
            raise ValueError("MLPEncoder needs at least one hidden layer width")
        self.data_shape = tuple(data_shape)
        sizes = [math.prod(self.data_shape), *hidden_dims]
        self.body = nn.Sequential(_mlp(sizes, activation, dropout), *activated(activation, dropout))
        self.out_features = hidden_dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(start_dim=1))  # [B, D] -> [B, hidden_dims[-1]]


class MLPDecoder(nn.Module):
    """z ``[*lead, m]`` -> hidden layers (``hidden_dims`` in the given order, each activation
    followed by dropout with probability ``dropout`` in training mode) -> ``[*lead,
    *data_shape]``. Pass the encoder's widths reversed to mirror it."""

    def __init__(
        self,
        latent_dim: int,
        hidden_dims: list[int],
        data_shape: tuple[int, ...],
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        sizes = [latent_dim, *hidden_dims, math.prod(self.data_shape)]
        self.body = _mlp(sizes, activation, dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.body(z)  # Linear acts on the last dim, any leading dims pass through
        return out.unflatten(-1, self.data_shape)  # [*lead, D] -> [*lead, *data_shape]


def _check_image_shape(data_shape: tuple[int, ...]) -> None:
    if len(data_shape) != 3 or data_shape[1] % 4 or data_shape[2] % 4:
        raise ValueError(
            "the conv network needs images [C, H, W] with H and W divisible by 4 "
            f"(e.g. 1x28x28, 3x32x32); got data shape {list(data_shape)}: use "
            + spell("--network mlp", "model.network = 'mlp'")
        )


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions (H/4 x W/4 x ``channels[1]``) and a dense layer, each
    activation followed by dropout with probability ``dropout`` in training mode.

    For ``[B, C, H, W]`` with H, W divisible by 4 (28x28 and 32x32, 1 or 3 channels).
    Output: ``[B, hidden_dim]``.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        channels: tuple[int, int] = (32, 64),
        hidden_dim: int = 256,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_image_shape(data_shape)
        c, h, w = data_shape
        self.body = nn.Sequential(
            nn.Conv2d(c, channels[0], 4, stride=2, padding=1),  # -> [B, c0, H/2, W/2]
            *activated(activation, dropout),
            nn.Conv2d(channels[0], channels[1], 4, stride=2, padding=1),  # -> [B, c1, H/4, W/4]
            *activated(activation, dropout),
            nn.Flatten(),
            nn.Linear(channels[1] * (h // 4) * (w // 4), hidden_dim),
            *activated(activation, dropout),
        )
        self.out_features = hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: dense -> ``[c1, H/4, W/4]`` -> two transposed
    convolutions -> ``[*lead, C, H, W]``; each hidden activation followed by dropout with
    probability ``dropout`` in training mode."""

    def __init__(
        self,
        latent_dim: int,
        data_shape: tuple[int, ...],
        channels: tuple[int, int] = (32, 64),
        hidden_dim: int = 256,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_image_shape(data_shape)
        c, h, w = data_shape
        self.data_shape = tuple(data_shape)
        self.body = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim),
            *activated(activation, dropout),
            nn.Linear(hidden_dim, channels[1] * (h // 4) * (w // 4)),
            *activated(activation, dropout),
            nn.Unflatten(1, (channels[1], h // 4, w // 4)),
            nn.ConvTranspose2d(channels[1], channels[0], 4, stride=2, padding=1),  # H/2
            *activated(activation, dropout),
            nn.ConvTranspose2d(channels[0], c, 4, stride=2, padding=1),  # H
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        out = self.body(z.reshape(-1, z.shape[-1]))  # [prod(lead), C, H, W]
        return out.reshape(*lead, *self.data_shape)


def default_network(data_shape: tuple[int, ...]) -> str:
    """'conv' for 1- or 3-channel 28x28 / 32x32 images, 'mlp' for everything else."""
    if len(data_shape) == 3 and data_shape[0] in (1, 3) and data_shape[1:] in ((28, 28), (32, 32)):
        return "conv"
    return "mlp"


def build_networks(
    name: str,
    data_shape: tuple[int, ...],
    latent_dim: int,
    hidden_dims: list[int],
    activation: str,
    output_shape: tuple[int, ...] | None = None,
    dropout: float = 0.0,
) -> tuple[nn.Module, nn.Module]:
    """Build the (encoder, decoder) pair registered under ``name`` ('mlp' or 'conv').

    The encoder reads ``data_shape``; the decoder writes ``output_shape`` (the likelihood's
    ``param_shape``: the data shape, or twice its first dimension when the decoder also
    outputs a scale), ``data_shape`` if not given. ``dropout``: the probability of zeroing
    each hidden activation in training mode (none in evaluation mode).
    """
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of {sorted(NETWORKS)}")
    output_shape = tuple(data_shape) if output_shape is None else tuple(output_shape)
    args = data_shape, latent_dim, hidden_dims, activation, output_shape
    # Only asked of a builder when wanted: one registered without it still builds.
    return NETWORKS[name](*args, **({"dropout": dropout} if dropout > 0 else {}))


def _build_mlp(data_shape, latent_dim, hidden_dims, activation, output_shape, dropout=0.0):
    encoder = MLPEncoder(data_shape, hidden_dims, activation, dropout)
    widths = list(reversed(hidden_dims))
    decoder = MLPDecoder(latent_dim, widths, output_shape, activation, dropout)
    return encoder, decoder


def _build_conv(data_shape, latent_dim, hidden_dims, activation, output_shape, dropout=0.0):
    # hidden_dims[-1] is the dense width between the convolutions and the latent code.
    hidden = hidden_dims[-1] if hidden_dims else 256
    options = {"hidden_dim": hidden, "activation": activation, "dropout": dropout}
    encoder = ConvEncoder(data_shape, **options)
    decoder = ConvDecoder(latent_dim, output_shape, **options)
    return encoder, decoder


NETWORKS = {"mlp": _build_mlp, "conv": _build_conv}
