"""Stored splits and how they are batched; never a per-item ``__getitem__`` or a collate function.

* in-memory splits (:class:`Split`) are batched by indexing one stored tensor with a fresh
  permutation per epoch (one gather per batch);
* on-disk splits (:class:`MemmapSplit`, for ``.npy`` files and packs larger than RAM) stream
  from contiguous shards, read with explicit file reads one shard ahead in a thread (see
  :mod:`vaekit.data.shard_reader`); see :meth:`MemmapSplit.stored_batches` for the exact
  shuffling semantics.

:func:`split_indices` and :func:`split_train_val` hold out a seeded validation split.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from vaekit.data.batching import batch_indices
from vaekit.data.shard_reader import ReadAhead, native, read_rows

# Default shard of an on-disk split, in bytes (rows = this // bytes per row): training holds
# about three shards plus a batch (the one trained on, the one read ahead, the one being read).
MEMMAP_SHARD_BYTES = 32 << 20


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
    ) -> Generator[tuple[torch.Tensor, torch.Tensor | None], None, None]:
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
    """A split that stays on disk: rows ``rows`` (sorted) of a stored array ``[M, ...]`` (a
    ``.npy`` file's memory map, a pack's :class:`~vaekit.data.shard_reader.ShardedArray`, tar
    shards).

    Training never holds the split in memory: it reads it shard by shard
    (:meth:`epoch_batches`, :meth:`stored_batches`) and validates it block by block
    (:class:`FixedSplit`). Rows are read with explicit file reads into buffers, never through
    the memory map (:func:`~vaekit.data.shard_reader.read_rows`). ``x`` and ``y`` do
    materialise the whole split, for callers that need it all at once (evaluation and report
    pictures of a split that fits in memory). ``shard_size``: rows per shard; by default
    ``MEMMAP_SHARD_BYTES`` worth of rows.
    """

    # Whether streams read the next shard in a thread while this one's batches are used; the
    # same batches either way (tests compare the two).
    read_ahead = True

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

    def _load(
        self, rows: np.ndarray, order: np.ndarray, first: int, batch_size: int, skip: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One shard's part of the stream: position ``first + i`` holds row ``rows[order[i]]``
        (``rows`` sorted). Read in file order, each row put straight where the stream wants
        it; a rank's view reads only its rows (none before position ``skip``), the others
        zeros. Runs in the read-ahead thread: it draws nothing."""
        n = len(order)
        shape = (n, *self.array.shape[1:])
        dtype = native(np.dtype(self.array.dtype))
        if self.share is None:
            want = np.arange(n)
            x = np.empty(shape, dtype=dtype)
        else:
            want = np.flatnonzero(self._mine(first, n, batch_size, skip))
            x = np.zeros(shape, dtype=dtype)
        at = want[np.argsort(order[want], kind="stable")]  # stream positions, in file order
        read = rows[order[at]]  # sorted: one forward pass over the file
        in_order = self.share is None and bool(np.all(np.diff(order) == 1))
        read_rows(self.array, read, x, None if in_order else at)
        y = None
        if self.labels is not None:
            y = np.zeros(n, dtype=native(np.dtype(self.labels.dtype)))
            y[at] = self.labels[read]
        return torch.from_numpy(x), None if y is None else torch.from_numpy(y)

    def _read(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rows ``rows`` (sorted) in memory: ``x [len(rows), *shape]`` and their labels."""
        x = torch.from_numpy(read_rows(self.array, rows))
        y = None if self.labels is None else torch.from_numpy(native_order(self.labels[rows]))
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
    ) -> Generator[tuple[torch.Tensor, torch.Tensor | None], None, None]:
        """A training epoch streamed from disk, from batch ``start`` on (see
        :meth:`stored_batches` for the shuffling). The shard order and in-shard permutations
        come from a generator seeded now with one draw from ``generator``, so the same
        ``generator`` state gives the same epoch whatever else later draws from it (the
        trainer's transforms do); resuming at ``start`` reads no shard it skips entirely.
        That generator is the epoch's own, so the next shard's permutation may be drawn early
        and the shard read and permuted in the read-ahead thread (``read_ahead``)."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        order = torch.Generator().manual_seed(seed)
        jobs = self._shard_jobs(batch_size, True, order, start)
        return self._stream(jobs, batch_size, False, self.read_ahead)

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
    ) -> Generator[tuple[torch.Tensor, torch.Tensor | None], None, None]:
        """Stream stored batches shard by shard; every row is used exactly once per call.

        Shuffling semantics: the split's rows (in file order) are cut into consecutive shards of
        ``shard_size`` rows. With ``shuffle``, the shard order is a random permutation and the
        rows inside each shard are permuted afresh (both drawn from ``generator``); shards are
        read one at a time (one sorted, mostly sequential read), and the rows are concatenated
        into one stream that is cut into batches, so a batch may span two consecutive shards.
        This is not a uniform permutation of all N rows: two rows share a batch only if they
        lie in the same shard or in shards adjacent in that epoch's shard order. With
        ``shard_size >= N`` it is a uniform random permutation, like the in-memory path.
        Without ``shuffle``: file order. Memory: about three shards plus one batch.
        ``skip_batches``: start at that batch of the same stream (the same draws are made, the
        shards wholly before it are not read).

        Without ``shuffle`` the next shard is read in a thread while this one's batches are
        used (``read_ahead``). With it, ``generator`` is the caller's, who may draw from it
        between batches (a transform's noise), so each shard's permutation is drawn when the
        stream reaches it, as the caller expects, and the shard read then.
        """
        jobs = self._shard_jobs(batch_size, shuffle, generator, skip_batches)
        return self._stream(jobs, batch_size, drop_last, self.read_ahead and not shuffle)

    def _shard_jobs(
        self, batch_size: int, shuffle: bool, generator: torch.Generator | None, skip_batches: int
    ) -> Iterator[Callable[[], tuple[torch.Tensor, torch.Tensor | None]]]:
        """The stream's shards, in stream order, as reads still to make (:meth:`_load`). Each
        draw from ``generator`` is made here, when the stream asks for that shard's read: the
        shard order first, then each shard's permutation (a shard wholly before
        ``skip_batches`` makes its draw and is not read)."""
        n = len(self.rows)
        starts = range(0, n, self.shard_size)
        order = torch.randperm(len(starts), generator=generator) if shuffle else range(len(starts))
        skip = skip_batches * batch_size  # rows of the stream still to pass over
        streamed = 0  # rows of the stream before this shard
        for s in order:
            start = starts[int(s)]
            rows = self.rows[start : start + self.shard_size]
            perm = np.arange(len(rows))
            if shuffle:
                perm = torch.randperm(len(rows), generator=generator).numpy()
            if skip < len(rows):  # else the whole shard lies before the first batch wanted
                first, wanted = streamed + skip, perm[skip:]
                yield partial(
                    self._load, rows, wanted, first, batch_size, batch_size * skip_batches
                )
                skip = 0
            else:
                skip -= len(rows)
            streamed += len(rows)

    def _stream(
        self,
        jobs: Iterator[Callable[[], tuple[torch.Tensor, torch.Tensor | None]]],
        batch_size: int,
        drop_last: bool,
        read_ahead: bool,
    ) -> Generator[tuple[torch.Tensor, torch.Tensor | None], None, None]:
        """Batches of ``batch_size`` cut from the shards ``jobs`` read, one after the other (a
        batch may span two). ``read_ahead``: each shard is read in a thread while the batches
        of the one before are used; the thread stops when the stream ends, is closed or is
        collected (an abandoned epoch), and an error reading a shard is raised here."""
        shards = ReadAhead(jobs) if read_ahead else (job() for job in jobs)
        rest: tuple[torch.Tensor, torch.Tensor | None] | None = None  # a batch begun
        try:
            for x, y in shards:
                if rest is not None:  # the batch begun in the shard before ends in this one
                    need = batch_size - rest[0].shape[0]
                    rest = _cat(rest, (x[:need], None if y is None else y[:need]))
                    x, y = x[need:], None if y is None else y[need:]
                    if rest[0].shape[0] < batch_size:
                        continue
                    yield rest
                    rest = None
                full = x.shape[0] - x.shape[0] % batch_size
                for b in range(0, full, batch_size):
                    yield x[b : b + batch_size], None if y is None else y[b : b + batch_size]
                if full < x.shape[0]:  # a copy: the shard itself is let go
                    rest = x[full:].clone(), None if y is None else y[full:].clone()
            if rest is not None and not drop_last:
                yield rest
        finally:
            if isinstance(shards, ReadAhead):
                shards.close()


def _cat(
    a: tuple[torch.Tensor, torch.Tensor | None], b: tuple[torch.Tensor, torch.Tensor | None]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rows ``a`` then rows ``b`` (values and labels)."""
    y = None if a[1] is None or b[1] is None else torch.cat([a[1], b[1]])
    return torch.cat([a[0], b[0]]), y


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
