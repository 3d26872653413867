"""Stored splits and how they are batched; never a per-item ``__getitem__`` or a collate function.

* in-memory splits (:class:`Split`) are batched by indexing one stored tensor with a fresh
  permutation per epoch (one gather per batch);
* memory-mapped splits (:class:`MemmapSplit`, for ``.npy`` files larger than RAM) stream from
  contiguous shards; see :meth:`MemmapSplit.stored_batches` for the exact shuffling semantics.

:func:`split_indices` and :func:`split_train_val` hold out a seeded validation split.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vaekit.data.batching import batch_indices

# Default shard of a memory-mapped split, in bytes (rows = this // bytes per row): training
# holds about two shards plus a batch.
MEMMAP_SHARD_BYTES = 32 << 20


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
