"""Stored rows read with explicit file reads, and the next shard read while the current one trains.

* :class:`NpyFile`: a C-order ``.npy`` file described by its header (where row 0 starts, the
  shape, the dtype). Rows are read with ``seek`` + ``readinto`` into buffers that the caller
  owns, never through a memory map: the memory a read holds is its buffer, and the file's
  pages never count in the process's resident size (a map's pages do, until the kernel takes
  them back, so a long epoch over a map looks as large as the file).
* :class:`ShardedArray`: consecutive ``.npy`` shards (a pack's split) seen as one array.
* :func:`read_rows`: sorted rows of any stored array into a fresh native-order buffer; a
  memory map that ``np.load`` opened on a whole file is read through its file, the same way.
* :class:`ReadAhead`: the results of a sequence of jobs, computed one job ahead in a thread.

Random rows (``array[rows]`` in any order, what evaluation and the pictures ask for) are read
the same way, sorted first: a few rows cost a few small reads, as a map's page faults would,
and there is one reading path to keep right.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from vaekit.data.errors import DataError

# A read of scattered rows goes through a scratch buffer of at most this many bytes (plus one
# row): the span of file rows that covers the next rows wanted.
BLOCK_BYTES = 4 << 20
# How long closing a read-ahead waits for a read in progress to finish, in seconds; after it
# the reader is left to finish alone (it is a daemon thread: it never holds up the exit).
CLOSE_WAIT_S = 60.0

T = TypeVar("T")


def native(dtype: np.dtype) -> np.dtype:
    """``dtype`` in the machine's byte order (torch reads only native order)."""
    return dtype.newbyteorder("=") if not dtype.isnative else dtype


class NpyFile:
    """The rows of a C-order ``.npy`` file ``[N, *shape]``, read with explicit reads.

    ``offset``: bytes before row 0 (the header). The file is opened for each read, so reads
    from several threads never share a file position."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.offset = Path(path), int(offset)
        self.shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        self.itemsize = self.dtype.itemsize
        self.ndim = len(self.shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.itemsize
        # The file's recorded SHA-256 (a pack's shard), checked once, before its first read:
        # a shard changed on disk is an error naming it, never rows trained on in silence.
        self.sha256: str | None = None
        self._checked = threading.Lock()

    def check_sha256(self) -> None:
        """Hash the whole file once (thread-safe) and compare with :attr:`sha256`; a
        :class:`DataError` naming the file when they differ."""
        with self._checked:
            if self.sha256 is None:
                return
            digest = hashlib.sha256()
            try:
                with open(self.path, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
            except OSError as exc:
                raise DataError(f"{self.path}: cannot read the shard ({exc})") from None
            if digest.hexdigest() != self.sha256:
                raise DataError(
                    f"{self.path}: SHA-256 does not match pack.json (the shard changed after "
                    "packing); run `vaekit pack --verify` on the pack, or pack again"
                )
            self.sha256 = None  # verified: later reads skip the hash

    def __len__(self) -> int:
        return self.shape[0]

    @classmethod
    def open(cls, path: Path) -> NpyFile:
        """The ``.npy`` file at ``path``; :class:`DataError` naming it when its header is not
        a C-order array of plain values or the file is shorter than its header says."""
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"format version {version} is not read here")
                offset = f.tell()
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable .npy shard ({exc})") from None
        if fortran or dtype.hasobject or not shape:
            raise DataError(f"{path}: not a readable .npy shard (C-order rows of values expected)")
        array = cls(path, offset, shape, dtype)
        need = offset + len(array) * array.row_bytes
        if Path(path).stat().st_size < need:
            raise DataError(f"{path}: truncated .npy shard ({need} bytes expected)")
        return array

    @classmethod
    def of_memmap(cls, array: Any) -> NpyFile | None:
        """The file behind a read-only memory map of a whole C-order array (what
        ``np.load(..., mmap_mode="r")`` and ``np.memmap`` return); None for anything else (a
        view of a map, a map opened for writing, an array in memory)."""
        if not isinstance(array, np.memmap) or not isinstance(array.base, mmap.mmap):
            return None
        if array.mode != "r" or not array.flags.c_contiguous or array.ndim == 0:
            return None
        if not isinstance(array.filename, str | os.PathLike):  # None: a map of a file object
            return None
        return cls(Path(array.filename), array.offset, array.shape, array.dtype)

    def read_into(self, rows: np.ndarray, out: np.ndarray, at: np.ndarray | None = None) -> None:
        """``out[at] = file rows rows`` (``rows`` sorted ascending, repeats allowed); ``at``
        None: ``out[:len(rows)]``. A run of consecutive rows asked in order is read straight
        into ``out``; scattered rows go through a scratch span of at most ``BLOCK_BYTES``."""
        if not len(rows) or not self.row_bytes:
            return
        self.check_sha256()
        if rows[0] < 0 or rows[-1] >= len(self):
            raise IndexError(f"{self.path}: rows outside [0, {len(self)})")
        per_block = max(1, BLOCK_BYTES // self.row_bytes)
        direct = at is None and out.dtype == self.dtype and out.flags.c_contiguous
        scratch: np.ndarray | None = None
        try:
            with open(self.path, "rb", buffering=0) as f:
                i = 0
                while i < len(rows):
                    lo = int(rows[i])
                    j = i + int(np.searchsorted(rows[i:], lo + per_block))
                    span = int(rows[j - 1]) + 1 - lo
                    # one run, each row once (sorted rows spanning as many rows as asked for
                    # may still repeat one and skip another)
                    run = span == j - i and bool(np.all(np.diff(rows[i:j]) == 1))
                    if direct and run:
                        self._read(f, lo, out[i:j])
                    else:
                        if scratch is None:
                            size = min(per_block, int(rows[-1]) + 1 - lo)
                            scratch = np.empty((size, *self.shape[1:]), dtype=self.dtype)
                        block = scratch[:span]
                        self._read(f, lo, block)
                        picked = block if run else block[rows[i:j] - lo]
                        out[slice(i, j) if at is None else at[i:j]] = picked
                    i = j
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read the shard ({exc})") from None

    def _read(self, f: Any, first: int, into: np.ndarray) -> None:
        """Fill ``into`` (C-contiguous) with the file's rows from ``first`` on."""
        view = memoryview(into.reshape(-1).view(np.uint8))
        f.seek(self.offset + first * self.row_bytes)
        got = 0
        while got < len(view):
            n = f.readinto(view[got:])
            if not n:
                raise DataError(
                    f"{self.path}: truncated .npy shard (rows from {first} cut short; "
                    f"{self.offset + first * self.row_bytes + got} bytes)"
                )
            got += n

    def __getitem__(self, rows: Any) -> np.ndarray:
        return take(self, rows)


class ShardedArray:
    """Consecutive ``.npy`` shards seen as one read-only array ``[N, *shape]``: what
    :class:`~vaekit.data.splits.MemmapSplit` reads a pack's split from. ``array[rows]`` takes
    integer rows (or a slice) in any order and reads each shard's with explicit reads."""

    def __init__(self, shards: list[NpyFile]) -> None:
        self.shards = shards
        self.offsets = np.cumsum([0] + [len(s) for s in shards])
        first = shards[0]
        self.shape = (int(self.offsets[-1]), *first.shape[1:])
        self.dtype = first.dtype
        self.itemsize = first.itemsize
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def read_into(self, rows: np.ndarray, out: np.ndarray, at: np.ndarray | None = None) -> None:
        """``out[at] = rows rows`` (sorted ascending), shard by shard (see
        :meth:`NpyFile.read_into`)."""
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        cuts = [0, *(np.flatnonzero(np.diff(which)) + 1).tolist(), len(rows)]
        for a, b in pairwise(cuts):
            if a == b:
                continue
            shard = int(which[a])
            local = rows[a:b] - self.offsets[shard]
            if at is None:
                self.shards[shard].read_into(local, out[a:b])
            else:
                self.shards[shard].read_into(local, out, at[a:b])

    def __getitem__(self, rows: Any) -> np.ndarray:
        return take(self, rows)


def take(array: NpyFile | ShardedArray, rows: Any) -> np.ndarray:
    """``array[rows]`` for integer rows in any order (or a slice), in native byte order."""
    rows = np.arange(len(array))[rows] if not isinstance(rows, np.ndarray) else rows
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    rows = np.where(rows < 0, rows + len(array), rows)
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), *array.shape[1:]), dtype=native(array.dtype))
    array.read_into(rows[order], out, order)
    return out


def reader_of(array: Any) -> NpyFile | ShardedArray | None:
    """What reads ``array``'s rows with explicit reads: itself, the file behind a whole-file
    memory map, or None (then it is indexed: tar shards, arrays in memory)."""
    if isinstance(array, NpyFile | ShardedArray):
        return array
    return NpyFile.of_memmap(array)


def read_rows(
    array: Any, rows: np.ndarray, out: np.ndarray | None = None, at: np.ndarray | None = None
) -> np.ndarray:
    """Rows ``rows`` (sorted ascending) of a stored array ``[M, *shape]``: ``out[at] =
    array[rows]`` (``at`` None: ``out[:len(rows)]``), ``out`` by default a fresh native-order
    ``[len(rows), *shape]``; returns ``out``."""
    if out is None:
        out = np.empty((len(rows), *array.shape[1:]), dtype=native(np.dtype(array.dtype)))
    reader = reader_of(array)
    if reader is not None:
        reader.read_into(rows, out, at)
    elif len(rows):
        out[slice(0, len(rows)) if at is None else at] = array[rows]
    return out


class ReadAhead(Generic[T]):
    """The results of ``jobs`` in order, each computed in one daemon thread while the
    consumer works on the one before.

    ``jobs`` itself is advanced in the consumer's thread only (so whatever a job's making
    draws from a random generator is drawn there, in order): at most ``depth`` jobs are made
    beyond the one whose result is taken now, which bounds the memory of results waiting. An
    exception a job raises is raised again, as is, where its result is taken. :meth:`close`
    (also called at the end and when this object is collected) stops the thread after the job
    it is running."""

    def __init__(self, jobs: Iterator[Callable[[], T]], depth: int = 1) -> None:
        self._jobs, self._depth = jobs, depth
        self._made = 0  # jobs made whose results are not taken yet
        self._done = False  # no job left to make
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_work,
            args=(self._inbox, self._outbox, self._stop),
            name="vaekit-read-ahead",
            daemon=True,
        )
        self._thread.start()
        self._finalizer = weakref.finalize(self, _halt, self._inbox, self._stop)

    def __iter__(self) -> ReadAhead[T]:
        return self

    def __next__(self) -> T:
        while not self._done and self._made <= self._depth:
            job = next(self._jobs, None)
            if job is None:
                self._done = True
                break
            self._inbox.put(job)
            self._made += 1
        if not self._made:
            self.close()
            raise StopIteration
        ok, value = self._outbox.get()
        self._made -= 1
        if not ok:
            self.close()
            raise value
        return value

    def close(self) -> None:
        """Stop the reader (after the job it is running) and wait for it; idempotent."""
        self._done = True
        self._finalizer()
        if self._thread is not threading.current_thread():
            self._thread.join(CLOSE_WAIT_S)


def _halt(inbox: queue.SimpleQueue, stop: threading.Event) -> None:
    stop.set()
    inbox.put(None)


def _work(inbox: queue.SimpleQueue, outbox: queue.SimpleQueue, stop: threading.Event) -> None:
    """The reader: run each job handed over, in order, until told to stop."""
    while True:
        job = inbox.get()
        if job is None or stop.is_set():
            return
        try:
            outbox.put((True, job()))
        except BaseException as exc:  # handed to the consumer, raised there
            outbox.put((False, exc))
