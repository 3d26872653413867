"""Plain layers that spell a generative path as a sequence, for ``Model.group_decoder``.

A hierarchical model's decoder for one latent group is its own modules run in order, plus
the small steps that a flat ``nn.Sequential`` of linear layers and activations lacks. The
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
    """``[B, 2n] -> [B, n]`` (or ``[B, 2c, h, w] -> [B, c, h, w]`` over channels, ``dim =
    -3``): the first half times sigmoid(the second half + ``offset``), a gated cell's output
    (an ``offset`` above 0 starts the gates mostly open). Either way the halves are the two
    halves of each row flattened channel first, which is how the page splits them."""

    def __init__(self, offset: float, dim: int = -1) -> None:
        super().__init__()
        self.offset = float(offset)
        self.dim = dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        value, gate = h.chunk(2, dim=self.dim)
        return value * torch.sigmoid(gate + self.offset)


class Inject(nn.Module):
    """One latent group entering a top-down path: ``body`` reads the group's coordinates of
    the full code, ``z[:, offset : offset + size]``, and its output is added to the stream.
    Only :class:`TopDown` runs it (it needs the code beside the stream)."""

    def __init__(self, offset: int, size: int, body: nn.Module) -> None:
        super().__init__()
        self.offset, self.size = offset, size
        self.body = body


class TopDown(nn.Module):
    """A top-down path from the full code ``z [B, m]`` (every group) to the final stream
    ``[B, *start.shape]``: the stream starts at ``start``, then ``steps`` run in order, each
    an :class:`Inject` (a group's draw added in) or a plain layer on the stream."""

    def __init__(self, start: torch.Tensor, steps: list[nn.Module]) -> None:
        super().__init__()
        self.register_buffer("start", start.detach().clone())
        self.steps = nn.ModuleList(steps)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.start.expand(z.shape[0], *self.start.shape)
        for step in self.steps:
            if isinstance(step, Inject):
                h = h + step.body(z[:, step.offset : step.offset + step.size])
            else:
                h = step(h)
        return h
