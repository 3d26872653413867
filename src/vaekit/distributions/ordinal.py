"""The cumulative-link (ordered logit) head of a table's ordinal columns.

An ordinal column has K levels (its sorted distinct training values) and the decoder gives
one location eta per row. K - 1 learned cut points c_0 < c_1 < ... < c_{K-2} split the
logistic around eta into the levels:

    P(v <= level k | z) = sigmoid(c_k - eta),   P(v = level k) = the difference of two,

with c_{-1} = -inf and c_{K-1} = +inf. The cuts stay increasing by construction: the first
is free and each later one is the one before plus softplus(a gap's parameter) plus
``MIN_GAP``. For a middle level, with a = c_k - eta and b = c_{k-1} - eta (a - b the gap),

    sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(-(a - b))),

so log P(v = k) = logsigmoid(a) + logsigmoid(-b) + log(-expm1(-gap)), finite and exact even
where the two sigmoids are both near 1 or both near 0. Each level's probability is an exact
probability (counting measure).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# The smallest distance between two cuts: keeps each level's probability above 0 (and its
# log finite) even where a gap's parameter has run far negative.
MIN_GAP = 1e-4


class OrdinalCuts(nn.Module):
    """The cut points of O ordinal columns with ``levels[o]`` levels each (at least 2);
    stored padded to the most levels, as the first cut and the gaps' pre-activations over
    ``gain`` (``vaekit.distributions.tabular.SCALAR_GAIN``: Adam then moves them ``gain``
    times faster). They start one unit apart, centred on 0."""

    def __init__(self, levels: list[int], gain: float) -> None:
        super().__init__()
        self.levels, self.gain = list(levels), gain
        k_max = max(levels)
        init = torch.zeros(len(levels), k_max - 1)
        for o, k in enumerate(levels):
            init[o, 0] = -(k - 2) / 2
        init[:, 1:] = math.log(math.expm1(1.0 - MIN_GAP))  # softplus^{-1}: gaps of 1
        self.raw_cuts_over_gain = nn.Parameter(init / gain)
        index = torch.arange(k_max)
        counts = torch.tensor(levels)[:, None]
        # [O, K_max] masks: level k has an upper cut (k < K - 1), a lower cut (k >= 1), both
        self.register_buffer("has_upper", index < counts - 1, persistent=False)
        self.register_buffer("has_lower", (index >= 1) & (index < counts), persistent=False)
        self.register_buffer("pad", index >= counts, persistent=False)

    def gaps(self) -> torch.Tensor:
        """c_k - c_{k-1} for k = 1 .. K_max - 2, ``[O, K_max - 2]`` (> 0)."""
        return MIN_GAP + F.softplus(self.gain * self.raw_cuts_over_gain[:, 1:])

    def cuts(self) -> torch.Tensor:
        """The cut points ``[O, K_max - 1]``, increasing along each row (a column's entries
        past its own K - 1 are padding)."""
        first = self.gain * self.raw_cuts_over_gain[:, :1]
        return torch.cat([first, first + self.gaps().cumsum(-1)], -1)

    def level_log_probs(self, eta: torch.Tensor) -> torch.Tensor:
        """log P(v = level k | eta) for locations ``eta [*, O]``: ``[*, O, K_max]`` nats,
        -inf at a column's padding levels; each column's exp sums to 1 over its levels."""
        cuts = self.cuts().to(eta.dtype)
        zero = eta.new_zeros(())
        upper_cut = F.pad(cuts, (0, 1))  # c_k for level k (0 where it has none)
        lower_cut = F.pad(cuts, (1, 0))  # c_{k-1}
        gap = F.pad(self.gaps().to(eta.dtype), (1, 1), value=1.0)
        eta = eta[..., None]
        upper = torch.where(self.has_upper, F.logsigmoid(upper_cut - eta), zero)
        lower = torch.where(self.has_lower, F.logsigmoid(eta - lower_cut), zero)
        middle = self.has_upper & self.has_lower
        between = torch.where(middle, torch.log(-torch.expm1(-gap)), zero)
        return (upper + lower + between).masked_fill(self.pad, -math.inf)
