"""Dataset registry: name -> loader. ``load_dataset`` is the one entry point."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from vaekit.data.datasets import Dataset, Split, split_train_val
from vaekit.data.transforms import Dequantize


class DataError(ValueError):
    """Data is missing, corrupt or unusable; the message names the file or dataset."""


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: how to load it and what to tell ``vaekit datasets``."""

    name: str
    loader: Callable[..., Dataset]
    shape: tuple[int, ...]
    size: str
    support: str
    default_likelihood: str
    description: str


DATASETS: dict[str, DatasetEntry] = {}


def register(entry: DatasetEntry) -> None:
    DATASETS[entry.name] = entry


def load_dataset(
    name: str, data_dir: str | None = None, val_fraction: float = 0.1, split_seed: int = 0
) -> Dataset:
    """Load a registered dataset by name."""
    if name not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}; registered: {', '.join(sorted(DATASETS))} "
            "(see `vaekit datasets`)"
        )
    return DATASETS[name].loader(
        data_dir=data_dir, val_fraction=val_fraction, split_seed=split_seed
    )


def _load_digits(data_dir: str | None, val_fraction: float, split_seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.uint8).unsqueeze(1)  # [1797, 1, 8, 8], 0..16
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    # sklearn ships no test split: hold out a fixed, seeded 300 examples (seed 1234).
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1234))
    test_idx, rest = order[:300].sort().values, order[300:].sort().values
    train, val = split_train_val(x[rest], y[rest], val_fraction, split_seed)
    return Dataset(
        name="digits",
        shape=(1, 8, 8),
        train=train,
        val=val,
        test=Split(x[test_idx], y[test_idx]),
        transform=Dequantize(levels=17),
        support="unit-interval",
        default_likelihood="gaussian-learned",
        num_levels=17,
        description="scikit-learn's 8x8 handwritten digits (17 grey levels), dequantised",
    )


register(
    DatasetEntry(
        name="digits",
        loader=_load_digits,
        shape=(1, 8, 8),
        size="1797 (1347 train / 150 val / 300 test)",
        support="unit-interval",
        default_likelihood="gaussian-learned",
        description="scikit-learn's 8x8 digits, 17 grey levels, uniformly dequantised; offline",
    )
)
