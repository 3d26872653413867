"""Plain layers that spell a generative path as a sequence, for ``Model.group_decoder``.

A hierarchical model's decoder for one latent group is its own modules run in order, plus
three small steps that a flat ``nn.Sequential`` of linear layers and activations lacks. The
explorer turns such a sequence into the program its page runs
(``vaekit.explore.decoder_spec``), so each step here has a twin in the page's interpreter.
"""

from __future__ import annotations

import torch
from torch import nn


class TakeFirst(nn.Module):
    """The first ``k`` features of ``[B, n]`` rows, ``[B, k]``: the mean half of a Gaussian
    head's output ``[mu, log_var]``, when a generative path follows the conditional means."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h[..., : self.k]


class Residual(nn.Module):
    """``h + body(h)``, ``[B, n] -> [B, n]``: a residual cell, or a state plus what a group
    drawn from it adds back."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.body(h)


class Gate(nn.Module):
    """``[B, 2n] -> [B, n]``: the first half times sigmoid(the second half + ``offset``), a
    gated cell's output (an ``offset`` above 0 starts the gates mostly open)."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = float(offset)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        value, gate = h.chunk(2, dim=-1)
        return value * torch.sigmoid(gate + self.offset)
