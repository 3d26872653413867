"""Datasets as vaekit sees them: stored splits (:mod:`vaekit.data.splits`), a transform, and
what likelihood fits them.

* on a GPU, an in-memory split whose stored tensor is small (at most
  ``DEVICE_RESIDENT_MAX_BYTES`` and a quarter of the free device memory) is moved to the device
  once and then gathered there, so an epoch copies nothing from the host;
* stochastic transforms (dequantisation, dynamic binarisation) run on the batch's device. On
  the CPU they draw from the caller's generator; on a GPU from a device generator seeded once
  per ``batches`` call from the caller's generator, so a seeded generator reproduces the epoch
  on either device (the two devices give different, equally valid draws).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from vaekit.data.errors import DataError
from vaekit.data.splits import MemmapSplit, Split
from vaekit.data.transforms import Levels, Transform

Support = Literal["binary", "unit-interval", "real", "table"]

# Largest stored split (bytes) that is copied to a GPU once and batched there.
DEVICE_RESIDENT_MAX_BYTES = 1 << 30
# Stored bytes of a memory-mapped split read and transformed together, with one seed, by
# ``FixedSplit`` (its float copy and noise are several times larger).
FIXED_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: how to load it and what ``vaekit datasets`` says about it.

    ``loader(data_dir=..., val_fraction=..., split_seed=..., **options)`` builds the Dataset;
    ``locate(data_dir)`` says where its files were found locally (None: not found), without
    downloading anything.
    """

    name: str
    loader: Callable[..., Dataset]
    shape: tuple[int, ...]
    size: str
    support: str
    default_likelihood: str
    description: str
    locate: Callable[[str | None], str | None] | None = None


@dataclass
class Dataset:
    """A dataset ready for training.

    ``transform`` turns stored values into model inputs (possibly stochastically);
    ``support`` is the support of those inputs and decides which likelihoods are honest;
    ``num_levels`` is the number of discrete levels per dimension of the underlying data
    (e.g. 256 for 8-bit images), used for bits/dim; None for continuous data. ``schema``:
    a mixed-type table's columns (``vaekit.settings.TableColumn``), which training copies
    into the model config (``model.columns``); None for other data.
    """

    name: str
    shape: tuple[int, ...]
    train: Split | MemmapSplit
    val: Split | MemmapSplit
    test: Split | MemmapSplit
    transform: Transform
    support: Support
    default_likelihood: str
    num_levels: int | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    schema: list[Any] | None = None
    _resident: dict[tuple[str, str], Split] = field(default_factory=dict, repr=False, compare=False)

    def split(self, name: str) -> Split | MemmapSplit:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; choose train, val or test")
        return getattr(self, name)

    def info(self) -> dict[str, Any]:
        """The preprocessing, as stored in a model's config.json (transform with its
        statistics, e.g. Standardize's per-column mean and std)."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "support": self.support,
            "num_levels": self.num_levels,
            "transform": self.transform.to_dict(),
            **self.extra,
        }

    def as_levels(self, flag: str) -> Dataset:
        """This dataset as a discrete likelihood must see it: the stored levels on the grid
        v / (levels - 1) instead of dequantised values (binary data is already its 2 levels).
        ``flag`` names the option that asked, for the error on continuous data."""
        if self.transform.kind == "dequantize":
            levels = self.transform.levels
            return dataclasses.replace(
                self,
                transform=Levels(levels),
                num_levels=levels,
                description=f"{self.description}; the {levels} levels, not dequantised",
            )
        if self.transform.kind == "levels" or self.support == "binary":
            return self
        raise DataError(
            f"{flag} models discrete levels, but {self.name!r} has continuous values "
            f"(transform {self.transform.kind!r}); use a Gaussian likelihood"
        )

    def on_device(self, split: str, device: torch.device | str) -> Split | MemmapSplit:
        """The split as batched on ``device``: moved there once if it is an in-memory split
        small enough to live on an accelerator, else the host copy."""
        device = torch.device(device)
        data = self.split(split)
        if device.type == "cpu" or not isinstance(data, Split):
            return data
        key = (split, str(device))
        if key not in self._resident:
            limit = DEVICE_RESIDENT_MAX_BYTES
            if device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(device)
                limit = min(limit, free // 4)
            if data.nbytes > limit:
                return data
            self._resident[key] = data.to(device)
        return self._resident[key]

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
        generator reproduces both (see the module docstring for accelerators).
        """
        device = torch.device(device)
        data = self.on_device(split, device)
        noise = generator
        if device.type != "cpu" and self.transform.stochastic:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            noise = torch.Generator(device=device).manual_seed(seed)
        for xs, ys in data.stored_batches(batch_size, shuffle, generator, drop_last):
            xs = xs.to(device, non_blocking=True)  # stored dtype (uint8): the cheapest copy
            y = ys.to(device, non_blocking=True) if ys is not None else None
            yield self.transform(xs, noise), y

    def fixed(self, split: str, seed: int = 0) -> torch.Tensor:
        """The whole split transformed once with a fixed seed (a reproducible evaluation set)."""
        generator = torch.Generator().manual_seed(seed)
        return self.transform(self.split(split).x, generator)


class FixedSplit:
    """A split transformed once with fixed noise, read in row ranges (the validation set).

    An in-memory split is :meth:`Dataset.fixed` computed once and sliced. A memory-mapped
    split is never held whole: rows are read and transformed in blocks of
    ``FIXED_BLOCK_BYTES`` worth of rows, block i with its own generator seeded from
    (``seed``, i), so every pass, every batch size and every rank's range see the same values
    for a row.
    """

    def __init__(self, dataset: Dataset, split: str, seed: int = 0) -> None:
        self.dataset, self.seed = dataset, seed
        self.data = dataset.split(split)
        self._x = dataset.fixed(split, seed) if not isinstance(self.data, MemmapSplit) else None
        row_bytes = (
            max(1, math.prod(dataset.shape) * self.data.array.itemsize) if self._x is None else 1
        )
        self.block_rows = max(1, FIXED_BLOCK_BYTES // row_bytes)

    def __len__(self) -> int:
        return len(self.data)

    def batches(
        self, batch_size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[torch.Tensor]:
        """Model-ready rows ``[start, stop)`` in batches of ``batch_size`` (the last smaller)."""
        stop = len(self) if stop is None else min(stop, len(self))
        if self._x is not None:
            for begin in range(start, stop, batch_size):
                yield self._x[begin : min(begin + batch_size, stop)]
            return
        pending: list[torch.Tensor] = []
        have = 0
        block = self.block_rows
        for first in range(start - start % block, stop, block):
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + first // block)
            rows = self.dataset.transform(self.data.read(first, first + block), generator)
            rows = rows[max(start - first, 0) : stop - first]
            pending.append(rows)
            have += rows.shape[0]
            while have >= batch_size or (have and first + block >= stop):
                xs = torch.cat(pending)
                yield xs[:batch_size]
                pending, have = [xs[batch_size:]], xs.shape[0] - min(batch_size, xs.shape[0])
