"""The building blocks of the deep hierarchical VAE, dense and convolutional.

Both families share one shape, so the model's two passes are written once:

* a cell maps the residual stream to itself (``s + f(s)``, or gated) and starts as the
  identity (its last layer is zero);
* a Gaussian head reads the stream (or the stream and the bottom-up features) and gives a
  diagonal Gaussian over one latent group, flattened to ``[*, m]``;
* a projection adds a group's draw ``[*, m]`` back into the stream.

Dense streams are ``[*, W]``. Convolutional streams are feature maps ``[*, C, h, w]`` at a
quarter of the image's resolution (28x28 -> 7x7, 32x32 -> 8x8), as in VDVAE's low-resolution
stages: a group of ``c`` channels is ``m = c * h * w`` numbers. The image is brought down to
that resolution by a stem (a convolution, then a residual cell and 2x average pooling, twice)
and back up by a tail (2x nearest upsampling and a residual cell, twice, then a 1x1
convolution to the likelihood's parameters). Convolutions take any leading dimensions (the
K importance draws and the batch): they are folded into one batch dimension and back.
"""

from __future__ import annotations

import torch
from torch import nn

from vaekit.distributions import DiagonalGaussian
from vaekit.models.paths import Gate, TakeFirst
from vaekit.networks import ACTIVATIONS

DOWNSAMPLE = 4  # the convolutional stream's resolution is the image's over this


class OverLeading(nn.Module):
    """Apply ``module`` (made for ``[N, C, h, w]``) to ``[*lead, C, h, w]``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        y = self.module(x.reshape(-1, *x.shape[-3:]))
        return y.reshape(*lead, *y.shape[-3:])


def _layer(n_in: int, n_out: int, conv: bool, kernel: int = 3) -> nn.Module:
    if conv:
        return nn.Conv2d(n_in, n_out, kernel, padding=kernel // 2)
    return nn.Linear(n_in, n_out)


class Cell(nn.Module):
    """``[*, W] -> [*, W]`` (dense) or ``[N, W, h, w] -> [N, W, h, w]`` (conv, 3x3): s + f(s)
    (residual) or s + f(s) * sigmoid(g(s)) (gated), with f two layers after the
    nonlinearity. The last layer starts at zero: a new cell is the identity."""

    def __init__(self, width: int, kind: str, activation: str, conv: bool = False) -> None:
        super().__init__()
        self.gated = kind == "gated"
        self.conv = conv
        self.act = ACTIVATIONS[activation]()
        self.inner = _layer(width, width, conv)
        self.outer = _layer(width, 2 * width if self.gated else width, conv)
        self.gate = Gate(2.0, dim=-3 if conv else -1)  # gates start mostly open
        nn.init.zeros_(self.outer.weight)
        nn.init.zeros_(self.outer.bias)

    def branch(self) -> nn.Sequential:
        """f(s), or f(s) * sigmoid(g(s)): what the cell adds to its input, as plain layers
        (the explorer's page runs them; conv: on one ``[N, W, h, w]`` batch)."""
        steps = [self.act, self.inner, self.act, self.outer]
        return nn.Sequential(*steps, *([self.gate] if self.gated else []))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        h = self.outer(self.act(self.inner(self.act(s))))
        return s + self.gate(h) if self.gated else s + h


class GaussianHead(nn.Module):
    """``[*, n_in] -> DiagonalGaussian [*, m]`` through one hidden layer (dense), or
    ``[*, n_in, h, w] -> DiagonalGaussian [*, m * h * w]`` with 3x3 convolutions (conv, ``m``
    channels, flattened channel-major); ``zero`` starts it at N(0, I)."""

    def __init__(
        self, n_in: int, width: int, m: int, activation: str, zero: bool, conv: bool = False
    ) -> None:
        super().__init__()
        self.conv = conv
        self.act = ACTIVATIONS[activation]()
        self.hidden = _layer(n_in, width, conv)
        self.out = _layer(width, 2 * m, conv)
        if zero:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor) -> DiagonalGaussian:
        if not self.conv:
            mu, log_var = self.out(self.act(self.hidden(self.act(h)))).chunk(2, dim=-1)
            return DiagonalGaussian(mu, log_var)
        lead = h.shape[:-3]
        out = self.out(self.act(self.hidden(self.act(h.reshape(-1, *h.shape[-3:])))))
        mu, log_var = out.chunk(2, dim=1)
        return DiagonalGaussian(mu.reshape(*lead, -1), log_var.reshape(*lead, -1))

    def mean_path(self, grid: tuple[int, ...] = ()) -> nn.Sequential:
        """The mean ``[*, m]`` of the head's Gaussian, as plain layers; a conv head's on one
        ``[N, n_in, h, w]`` batch, ``grid = (h, w)``: its first ``m`` channels, flattened
        (channel first, the first ``m * h * w`` numbers)."""
        steps = [self.act, self.hidden, self.act, self.out]
        if not self.conv:
            return nn.Sequential(*steps, TakeFirst(self.out.out_features // 2))
        (h, w) = grid
        return nn.Sequential(*steps, nn.Flatten(1), TakeFirst(self.out.out_channels // 2 * h * w))


class Projection(nn.Module):
    """A group's draw into the stream: ``[*, m] -> [*, W]`` (dense), or ``[*, c*h*w] ->
    [*, W, h, w]`` through a 1x1 convolution (conv)."""

    def __init__(self, m: int, width: int, conv_grid: tuple[int, int] | None) -> None:
        super().__init__()
        self.grid = conv_grid
        self.layer = nn.Linear(m, width) if conv_grid is None else nn.Conv2d(m, width, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.grid is None:
            return self.layer(z)
        lead = z.shape[:-1]
        maps = z.reshape(-1, z.shape[-1] // (self.grid[0] * self.grid[1]), *self.grid)
        y = self.layer(maps)
        return y.reshape(*lead, *y.shape[1:])


def conv_stem(channels_in: int, width: int, kind: str, activation: str) -> nn.Module:
    """``[N, C, H, W] -> [N, width, H/4, W/4]``: a 3x3 convolution, then (a residual cell,
    2x average pooling) twice."""
    layers: list[nn.Module] = [nn.Conv2d(channels_in, width, 3, padding=1)]
    for _ in range(2):
        layers += [Cell(width, kind, activation, conv=True), nn.AvgPool2d(2)]
    return OverLeading(nn.Sequential(*layers))


def conv_tail(width: int, channels_out: int, kind: str, activation: str) -> nn.Module:
    """``[*, width, h, w] -> [*, channels_out, 4h, 4w]``: (2x nearest upsampling, a residual
    cell) twice, the nonlinearity, then a 1x1 convolution."""
    layers: list[nn.Module] = []
    for _ in range(2):
        layers += [nn.Upsample(scale_factor=2.0, mode="nearest")]
        layers += [Cell(width, kind, activation, conv=True)]
    layers += [ACTIVATIONS[activation](), nn.Conv2d(width, channels_out, 1)]
    return OverLeading(nn.Sequential(*layers))
