"""Fast batching for in-memory data: index one tensor with a permutation per epoch.

No per-item ``__getitem__`` and no collate: a batch is ``x[indices]``, one gather.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def batch_indices(
    n: int,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield index tensors covering ``range(n)`` in batches (a fresh permutation if shuffled)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]
