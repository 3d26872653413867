"""Datasets as vaekit sees them: stored splits, a transform, and what likelihood fits them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from vaekit.data.batching import batch_indices
from vaekit.data.transforms import Transform

Support = Literal["binary", "unit-interval", "real"]


@dataclass
class Split:
    """One split in its stored form: ``x [N, *shape]`` (often uint8) and labels ``y [N]``."""

    x: torch.Tensor
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class Dataset:
    """A dataset ready for training.

    ``transform`` turns stored values into model inputs (possibly stochastically);
    ``support`` is the support of those inputs and decides which likelihoods are honest;
    ``num_levels`` is the number of discrete levels per dimension of the underlying data
    (e.g. 256 for 8-bit images), used for bits/dim; None for continuous data.
    """

    name: str
    shape: tuple[int, ...]
    train: Split
    val: Split
    test: Split
    transform: Transform
    support: Support
    default_likelihood: str
    num_levels: int | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; choose train, val or test")
        return getattr(self, name)

    def info(self) -> dict[str, Any]:
        """The preprocessing, as stored in a model's config.json."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "support": self.support,
            "num_levels": self.num_levels,
            "transform": self.transform.to_dict(),
            **self.extra,
        }

    def batches(
        self,
        split: str,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Yield ``(x, y)`` model-ready batches: ``x [b, *shape]`` float on ``device``.

        The same ``generator`` drives the order and any stochastic transform, so a seeded
        generator reproduces both.
        """
        data = self.split(split)
        for idx in batch_indices(len(data), batch_size, shuffle, generator, drop_last):
            x = self.transform(data.x[idx], generator).to(device)
            y = data.y[idx].to(device) if data.y is not None else None
            yield x, y

    def fixed(self, split: str, seed: int = 0) -> torch.Tensor:
        """The whole split transformed once with a fixed seed (a reproducible evaluation set)."""
        generator = torch.Generator().manual_seed(seed)
        return self.transform(self.split(split).x, generator)


def split_train_val(
    x: torch.Tensor, y: torch.Tensor | None, val_fraction: float, seed: int
) -> tuple[Split, Split]:
    """Hold out ``val_fraction`` of a training set as validation, with a fixed seed."""
    n = x.shape[0]
    n_val = round(n * val_fraction)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    take = lambda t, i: t[i] if t is not None else None  # noqa: E731
    return Split(x[train_idx], take(y, train_idx)), Split(x[val_idx], take(y, val_idx))
