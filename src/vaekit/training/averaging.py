"""Polyak averaging: an exponential moving average of the trained weights.

After every applied optimiser step, ``average <- d * average + (1 - d) * weights`` with
``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates: the warm-up keeps the first
averages from being dominated by the random initial weights. The averaged weights are
the model that validation, checkpoints and the final run directory see; the optimiser keeps
working on the raw weights (Polyak and Juditsky 1992; used for the IWAE and NVAE results).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class PolyakAverage:
    """EMA of ``params`` (the trainable parameters, in a fixed order), same dtype and device."""

    def __init__(self, params: list[nn.Parameter], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"optim.ema_decay must be in (0, 1), got {decay}")
        self.params = params
        self.decay = decay
        self.updates = 0
        self.averages = [p.detach().clone() for p in params]

    def current_decay(self) -> float:
        """The decay the next update uses (warm-up: small while few updates were averaged)."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average (call after each applied step)."""
        weight = 1.0 - self.current_decay()
        torch._foreach_lerp_(self.averages, [p.detach() for p in self.params], weight)
        self.updates += 1

    @torch.no_grad()
    def reset_to_weights(self) -> None:
        """Start the average afresh from the current weights (zero updates)."""
        torch._foreach_copy_(self.averages, [p.detach() for p in self.params])
        self.updates = 0

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Temporarily put the averaged weights into the parameters; restore the raw ones."""
        with torch.no_grad():
            raw = [p.detach().clone() for p in self.params]
            torch._foreach_copy_([p.detach() for p in self.params], self.averages)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.detach() for p in self.params], raw)

    @torch.no_grad()
    def apply_permanently(self) -> None:
        """Replace the weights with their average (the end of training)."""
        torch._foreach_copy_([p.detach() for p in self.params], self.averages)
