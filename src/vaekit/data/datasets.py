"""Datasets as vaekit sees them: stored splits, a transform, and what likelihood fits them.

Batching (``Dataset.batches``) never calls a per-item ``__getitem__`` or a collate function:

* in-memory splits (:class:`Split`) are batched by indexing one stored tensor with a fresh
  permutation per epoch (one gather per batch);
* on a GPU, an in-memory split whose stored tensor is small (at most
  ``DEVICE_RESIDENT_MAX_BYTES`` and a quarter of the free device memory) is moved to the device
  once and then gathered there, so an epoch copies nothing from the host;
* memory-mapped splits (:class:`MemmapSplit`, for ``.npy`` files larger than RAM) stream from
  contiguous shards; see :meth:`MemmapSplit.stored_batches` for the exact shuffling semantics.

Stochastic transforms (dequantisation, dynamic binarisation) run on the batch's device. On the
CPU they draw from the caller's generator; on a GPU from a device generator seeded once per
``batches`` call from the caller's generator, so a seeded generator reproduces the epoch on
either device (the two devices give different, equally valid draws).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from vaekit.data.batching import batch_indices
from vaekit.data.errors import DataError
from vaekit.data.transforms import Levels, Transform

Support = Literal["binary", "unit-interval", "real", "table"]

# Largest stored split (bytes) that is copied to a GPU once and batched there.
DEVICE_RESIDENT_MAX_BYTES = 1 << 30
# Default shard of a memory-mapped split, in bytes (rows = this // bytes per row): training
# holds about two shards plus a batch.
MEMMAP_SHARD_BYTES = 32 << 20
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


def _torch_dtype(array: Any) -> torch.dtype:
    """The torch dtype of ``array``'s rows (any array with a NumPy ``dtype``)."""
    return torch.from_numpy(np.zeros(1, dtype=np.dtype(array.dtype).newbyteorder("="))).dtype


def native_order(array: np.ndarray) -> np.ndarray:
    """``array`` in the machine's byte order: a big-endian ``.npy`` is valid data, and torch
    reads only native order. A copy only when the order differs."""
    if array.dtype.isnative:
        return array
    return array.astype(array.dtype.newbyteorder("="))


@dataclass
class Split:
    """One split in its stored form: ``x [N, *shape]`` (often uint8) and labels ``y [N]``."""

    x: torch.Tensor
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def nbytes(self) -> int:
        return self.x.numel() * self.x.element_size()

    def to(self, device: torch.device) -> Split:
        return Split(self.x.to(device), self.y.to(device) if self.y is not None else None)

    def stored_batches(
        self,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Stored ``(x [b, *shape], y [b])`` batches: one permutation of all N rows per call
        (drawn on the CPU from ``generator``), batch i = rows ``perm[i*b:(i+1)*b]``."""
        for idx in batch_indices(len(self), batch_size, shuffle, generator, drop_last):
            idx = idx.to(self.x.device)
            yield self.x[idx], self.y[idx] if self.y is not None else None

    def epoch_batches(
        self, batch_size: int, generator: torch.Generator, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """A training epoch's stored batches from batch ``start`` on: one permutation of all N
        rows, drawn now from ``generator`` (so the same generator state gives the same epoch,
        which is how a run resumes mid-epoch); batch i = rows ``perm[i*b:(i+1)*b]``."""
        order = torch.randperm(len(self), generator=generator)

        def batches():
            for begin in range(start * batch_size, len(self), batch_size):
                idx = order[begin : begin + batch_size]
                yield self.x[idx], self.y[idx] if self.y is not None else None

        return batches()

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Stored rows ``[start, stop)`` of the split, ``[stop - start, *shape]``."""
        return self.x[start:stop]

    def for_rank(self, rank: int, world_size: int) -> Split:
        """The split as rank ``rank`` of ``world_size`` trains on it: in memory, all of it."""
        return self


class MemmapSplit:
    """A split that stays on disk: rows ``rows`` (sorted) of a memory-mapped array ``[M, ...]``.

    Training never holds the split in memory: it reads it shard by shard
    (:meth:`epoch_batches`, :meth:`stored_batches`) and validates it block by block
    (:class:`FixedSplit`). ``x`` and ``y`` do materialise the whole split, for callers that
    need it all at once (evaluation and report pictures of a split that fits in memory).
    ``shard_size``: rows per shard; by default ``MEMMAP_SHARD_BYTES`` worth of rows.
    """

    def __init__(
        self,
        array: np.ndarray,
        rows: np.ndarray,
        labels: np.ndarray | None = None,
        shard_size: int | None = None,
    ) -> None:
        self.array = array
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = labels
        if shard_size is None:
            row_bytes = max(1, int(np.prod(array.shape[1:])) * array.itemsize)
            shard_size = max(1, MEMMAP_SHARD_BYTES // row_bytes)
        self.shard_size = int(shard_size)
        self.share: tuple[int, int] | None = None  # (rank, world size): see for_rank

    def __len__(self) -> int:
        return len(self.rows)

    def for_rank(self, rank: int, world_size: int) -> MemmapSplit:
        """This split as rank ``rank`` of ``world_size`` trains on it: the same epochs (the
        same global permutation and batches, whatever the world size), but of each global
        batch only the rows this rank trains on (``DistContext.shard``'s contiguous slice) are
        read from disk; the other ranks' rows are zeros. Each rank thus reads about
        1/``world_size`` of the data per epoch, from every shard."""
        view = copy.copy(self)
        view.share = (rank, world_size) if world_size > 1 else None
        return view

    def _mine(self, first: int, count: int, batch_size: int, skip: int) -> np.ndarray:
        """Which of stream positions ``[first, first + count)`` this rank trains on (none
        before position ``skip``, where a resumed epoch starts)."""
        rank, world = self.share  # type: ignore[misc]
        pos = np.arange(first, first + count)
        batch = pos // batch_size
        size = np.minimum(batch_size, len(self.rows) - batch * batch_size)
        base, extra = size // world, size % world
        lo = rank * base + np.minimum(rank, extra)
        hi = lo + base + (rank < extra)
        offset = pos - batch * batch_size
        return (offset >= lo) & (offset < hi) & (pos >= skip)

    @property
    def nbytes(self) -> int:
        return len(self.rows) * int(np.prod(self.array.shape[1:])) * self.array.itemsize

    def _read(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = torch.from_numpy(np.ascontiguousarray(native_order(self.array[rows])))
        y = None if self.labels is None else torch.from_numpy(native_order(self.labels[rows]))
        return x, y

    def _read_mine(
        self, rows: np.ndarray, first: int, batch_size: int, skip: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Stream rows ``rows`` (at positions ``first...``): this rank's read, in file order,
        the others zeros."""
        mine = np.flatnonzero(self._mine(first, len(rows), batch_size, skip))
        order = mine[np.argsort(rows[mine], kind="stable")]
        x = torch.zeros((len(rows), *self.array.shape[1:]), dtype=_torch_dtype(self.array))
        y = None if self.labels is None else torch.zeros(len(rows), dtype=_torch_dtype(self.labels))
        if len(order):
            got_x, got_y = self._read(rows[order])
            x[torch.from_numpy(order)] = got_x
            if y is not None and got_y is not None:
                y[torch.from_numpy(order)] = got_y
        return x, y

    @property
    def x(self) -> torch.Tensor:
        """The whole split in memory, ``[N, *shape]`` (training never calls this)."""
        return self._read(self.rows)[0]

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Stored rows ``[start, stop)`` of the split, ``[stop - start, *shape]``: one read."""
        return self._read(self.rows[start:stop])[0]

    def epoch_batches(
        self, batch_size: int, generator: torch.Generator, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """A training epoch streamed from disk, from batch ``start`` on (see
        :meth:`stored_batches` for the shuffling). The shard order and in-shard permutations
        come from a generator seeded now with one draw from ``generator``, so the same
        ``generator`` state gives the same epoch whatever else later draws from it (the
        trainer's transforms do); resuming at ``start`` reads no shard it skips entirely."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        order = torch.Generator().manual_seed(seed)
        return self.stored_batches(batch_size, True, order, skip_batches=start)

    @property
    def y(self) -> torch.Tensor | None:
        if self.labels is None:
            return None
        return torch.from_numpy(native_order(np.asarray(self.labels[self.rows])))

    def stored_batches(
        self,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        skip_batches: int = 0,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Stream stored batches shard by shard; every row is used exactly once per call.

        Shuffling semantics: the split's rows (in file order) are cut into consecutive shards of
        ``shard_size`` rows. With ``shuffle``, the shard order is a random permutation and the
        rows inside each shard are permuted afresh (both drawn from ``generator``); shards are
        read one at a time (one sorted, mostly sequential read), and the rows are concatenated
        into one stream that is cut into batches, so a batch may span two consecutive shards.
        This is not a uniform permutation of all N rows: two rows share a batch only if they
        lie in the same shard or in shards adjacent in that epoch's shard order. With
        ``shard_size >= N`` it is a uniform random permutation, like the in-memory path.
        Without ``shuffle``: file order. Memory: about two shards plus one batch.
        ``skip_batches``: start at that batch of the same stream (the same draws are made, the
        shards wholly before it are not read).
        """
        n = len(self.rows)
        starts = range(0, n, self.shard_size)
        order = torch.randperm(len(starts), generator=generator) if shuffle else range(len(starts))
        buf_x: list[torch.Tensor] = []
        buf_y: list[torch.Tensor] = []
        have = 0
        skip = skip_batches * batch_size  # rows of the stream still to pass over
        streamed = 0  # rows of the stream before this shard
        for s in order:
            start = starts[int(s)]
            rows = self.rows[start : start + self.shard_size]
            if skip >= len(rows):  # the whole shard lies before the first batch wanted
                if shuffle:
                    torch.randperm(len(rows), generator=generator)  # the draw it would make
                skip -= len(rows)
                streamed += len(rows)
                continue
            if self.share is None:
                x, y = self._read(rows)
                if shuffle:
                    perm = torch.randperm(x.shape[0], generator=generator)
                    x, y = x[perm], (y[perm] if y is not None else None)
            else:  # the same stream, but only this rank's rows read
                if shuffle:
                    rows = rows[torch.randperm(len(rows), generator=generator).numpy()]
                x, y = self._read_mine(rows, streamed, batch_size, skip_batches * batch_size)
            streamed += len(rows)
            if skip:
                x, y = x[skip:], (y[skip:] if y is not None else None)
                skip = 0
            buf_x.append(x)
            if y is not None:
                buf_y.append(y)
            have += x.shape[0]
            if have < batch_size:
                continue
            xs = torch.cat(buf_x)
            ys = torch.cat(buf_y) if buf_y else None
            full = have - have % batch_size
            for b in range(0, full, batch_size):
                yield xs[b : b + batch_size], ys[b : b + batch_size] if ys is not None else None
            buf_x = [xs[full:]]
            buf_y = [ys[full:]] if ys is not None else []
            have -= full
        if have and not drop_last:
            yield torch.cat(buf_x), torch.cat(buf_y) if buf_y else None


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


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (train, val) row indices: ``round(n * val_fraction)`` rows held out at random
    with ``torch.Generator().manual_seed(seed)``."""
    n_val = round(n * val_fraction)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_val:].sort().values, order[:n_val].sort().values


def split_train_val(
    x: torch.Tensor, y: torch.Tensor | None, val_fraction: float, seed: int
) -> tuple[Split, Split]:
    """Hold out ``val_fraction`` of a training set as validation, with a fixed seed."""
    train_idx, val_idx = split_indices(x.shape[0], val_fraction, seed)
    take = lambda t, i: t[i] if t is not None else None  # noqa: E731
    return Split(x[train_idx], take(y, train_idx)), Split(x[val_idx], take(y, val_idx))
