"""Sizing the importance-sampling chunks of log p(x): the floats one decoded latent row
holds, and the draws per decoder call that a memory budget allows. ``vaekit evaluate``,
``vaekit score`` and ``vaekit compare`` size their decoder calls here.
"""

from __future__ import annotations

import math

import torch

from vaekit.models import Model

# MiB per decoder call. Small on purpose: on CPU, calls of ~1000 rows stay in cache and ran
# faster than calls of ~20,000 rows (benchmarks/RESULTS.md); raise it on a GPU.
DEFAULT_MEMORY_BUDGET_MB = 32


def decoder_floats_per_row(model: Model) -> int:
    """Floats held per decoded latent row while evaluating log p(x|z): every decoder module's
    output for one z (measured with forward hooks), plus the data-sized temporaries of the
    likelihood's ``log_prob``: four (difference, square, scaled, log-density) unless the
    likelihood states its own ``log_density_temporaries``."""
    p = next(model.parameters())
    total = 0

    def count(_module, _inputs, output) -> None:
        nonlocal total
        if torch.is_tensor(output):
            total += output.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with torch.no_grad():
            z = torch.zeros(1, model.latent_dim, dtype=p.dtype, device=p.device)
            y = torch.zeros(1, dtype=torch.long, device=p.device) if model.takes_labels else None
            model.decode_mean(z, y=y)
    finally:
        for hook in hooks:
            hook.remove()
    temporaries = getattr(model.likelihood, "log_density_temporaries", 4)
    return total + temporaries * math.prod(model.data_shape) + 4 * model.latent_dim


def choose_chunk_size(
    model: Model, batch_size: int, num_samples: int, memory_budget_mb: float
) -> int:
    """Importance samples per decoder call so that one call's ``chunk * batch_size`` rows stay
    within ``memory_budget_mb`` MiB: ``floor(budget / (batch * bytes per row))``, at least 1."""
    element = next(model.parameters()).element_size()
    bytes_per_row = decoder_floats_per_row(model) * element
    rows = int(memory_budget_mb * 2**20 // bytes_per_row)
    return max(1, min(num_samples, rows // max(1, batch_size)))
