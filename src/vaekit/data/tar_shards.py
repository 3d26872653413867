"""WebDataset tar shards: written by ``vaekit pack --format webdataset``, read from any tool.

Layout (the WebDataset convention, which ``webdataset``, ``torchdata`` and Hugging Face's
``webdataset`` builder read): plain (uncompressed) POSIX tar files; one example is the run of
consecutive members sharing a key (the member name up to its first dot), one member per field:

* ``KEY.npy``: the stored values of one example, a NumPy array ``[*shape]`` (uint8 images
  ``[C, H, W]``, float table rows, ...), written by vaekit;
* ``KEY.png`` / ``KEY.jpg`` / ``KEY.jpeg``: an image (``[H, W]`` grey or ``[H, W, 3]`` RGB
  once decoded, stored as ``[C, H, W]``), accepted from other tools;
* ``KEY.cls``: the integer class label as ASCII text (optional).

Reading never loads a shard whole. :func:`index_tar` walks a shard's member headers once
(seeking past the data) and keeps, per example, the offset and size of its value member;
:class:`TarArray` presents consecutive shards as one read-only array ``[N, *shape]`` (the
interface :class:`~vaekit.data.splits.MemmapSplit` indexes, like ``shard_reader.ShardedArray``)
that reads and decodes only the rows asked for, one positioned read per row, shard by shard.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.data.errors import DataError

VALUE_EXTENSIONS = ("npy", "png", "jpg", "jpeg")


def tar_bytes(samples: Iterable[tuple[str, dict[str, bytes]]]) -> bytes:
    """One tar shard in memory: for each ``(key, {extension: payload})`` the members
    ``KEY.EXT`` in the order given. Members carry a fixed time, owner and mode, so the same
    samples always make the same bytes (a resumed pack's checksums match)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, fields in samples:
            for ext, payload in fields.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mode, info.mtime = len(payload), 0o644, 0
                tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def npy_bytes(values: np.ndarray) -> bytes:
    """``values`` as the bytes of a ``.npy`` file (no pickles)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(values), allow_pickle=False)
    return buffer.getvalue()


@dataclass
class TarIndex:
    """Where one shard's examples lie: ``offsets``/``sizes`` of each example's value member
    (bytes from the start of the file), its extension, and the labels of ``.cls`` members
    (None when the shard has none)."""

    path: Path
    offsets: np.ndarray
    sizes: np.ndarray
    exts: list[str]
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.offsets)


def index_tar(path: Path, read_labels: bool = True) -> TarIndex:
    """Walk ``path``'s member headers once. Raises a one-line DataError naming the shard when
    it is not a tar file, is truncated, or holds an example without a value member."""
    path = Path(path)
    try:
        size = path.stat().st_size
        tar = tarfile.open(path, mode="r:")  # noqa: SIM115 (closed by the with below)
    except FileNotFoundError:
        raise DataError(f"{path}: missing shard") from None
    except (OSError, tarfile.TarError) as exc:
        raise DataError(f"{path}: not a readable (uncompressed) tar shard ({exc})") from None
    keys: list[str] = []
    values: dict[str, tuple[int, int, str]] = {}
    labels: dict[str, int] = {}
    with tar:
        try:
            for member in tar:
                if not member.isfile():
                    continue
                if member.offset_data + member.size > size:
                    raise DataError(
                        f"{path}: truncated tar shard (member {member.name} ends at byte "
                        f"{member.offset_data + member.size}, the file has {size})"
                    )
                name = member.name.rsplit("/", 1)[-1]
                stem = member.name[: len(member.name) - len(name)]
                key, _, ext = name.partition(".")
                key, ext = stem + key, ext.lower()
                if not keys or keys[-1] != key:
                    keys.append(key)
                if ext in VALUE_EXTENSIONS and key not in values:
                    values[key] = (member.offset_data, member.size, ext)
                elif ext == "cls" and read_labels:
                    labels[key] = _label(tar, member, path)
        except tarfile.TarError as exc:  # a header cut short or damaged
            raise DataError(f"{path}: truncated or damaged tar shard ({exc})") from None
    missing = [key for key in keys if key not in values]
    if missing:
        raise DataError(
            f"{path}: example {missing[0]!r} has no value member (.{', .'.join(VALUE_EXTENSIONS)})"
        )
    if labels and len(labels) != len(keys):
        unlabelled = next(key for key in keys if key not in labels)
        raise DataError(f"{path}: example {unlabelled!r} has no .cls label, others do")
    return TarIndex(
        path=path,
        offsets=np.array([values[k][0] for k in keys], dtype=np.int64),
        sizes=np.array([values[k][1] for k in keys], dtype=np.int64),
        exts=[values[k][2] for k in keys],
        labels=np.array([labels[k] for k in keys], dtype=np.int64) if labels else None,
    )


def _label(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> int:
    handle = tar.extractfile(member)
    text = handle.read().decode("ascii", "replace").strip() if handle is not None else ""
    try:
        return int(text)
    except ValueError:
        raise DataError(
            f"{path}: {member.name} holds {text[:20]!r}, not an integer label"
        ) from None


def decode_value(payload: bytes, ext: str, where: str) -> np.ndarray:
    """One example's stored values from its member's bytes: a ``.npy`` array as saved, an
    image as ``[C, H, W]`` (uint8, or uint16 for 16-bit grey). ``where`` names it in errors."""
    if ext == "npy":
        try:
            return np.load(io.BytesIO(payload), allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{where}: not a readable .npy member ({exc})") from None
    from PIL import Image, UnidentifiedImageError

    from vaekit.data.images import image_values

    try:
        with Image.open(io.BytesIO(payload)) as image:
            image.load()
            values = image_values(Path(where), image)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"{where}: unreadable or truncated image ({exc})") from None
    return values[None] if values.ndim == 2 else np.moveaxis(values, -1, 0)


class TarArray:
    """Consecutive tar shards seen as one read-only array ``[N, *shape]``.

    ``shards``: the shard files in order; ``rows``: their example counts when known (a pack
    records them; then a shard is indexed only when a row of it is first read), else every
    shard is indexed now (``read_labels``: with its ``.cls`` labels). ``array[rows]`` reads
    the rows asked for (integers, in any order, or a slice), each shard's in file order, and
    returns them in the order given. Decoded rows are never kept: memory is the indexes (16
    bytes per example) and the rows returned.
    ``opened`` counts, per shard, the reads that touched it (what tests look at).
    """

    def __init__(
        self,
        shards: Sequence[Path],
        rows: Sequence[int] | None = None,
        shape: tuple[int, ...] | None = None,
        dtype: np.dtype | str | None = None,
        check: Callable[[int, TarIndex], None] | None = None,
        read_labels: bool = True,
    ) -> None:
        if not shards:
            raise DataError("no tar shards given")
        self.paths = [Path(p) for p in shards]
        self.check, self.read_labels = check, read_labels
        self.indexes: list[TarIndex | None] = [None] * len(self.paths)
        self.opened = [0] * len(self.paths)
        if rows is None:
            for i in range(len(self.paths)):
                self._index(i)
            rows = [len(index) for index in self.indexes]  # type: ignore[arg-type]
        self.offsets = np.cumsum([0, *[int(r) for r in rows]])
        if shape is None or dtype is None:
            first = self._read_shard(int(np.searchsorted(self.offsets, 0, side="right") - 1), [0])
            shape, dtype = first.shape[1:], first.dtype
        self.shape = (int(self.offsets[-1]), *[int(d) for d in shape])
        self.dtype = np.dtype(dtype)
        self.itemsize = self.dtype.itemsize
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def _index(self, shard: int) -> TarIndex:
        index = self.indexes[shard]
        if index is None:
            index = index_tar(self.paths[shard], self.read_labels)
            if self.check is not None:
                self.check(shard, index)
            self.indexes[shard] = index
        return index

    def labels(self) -> np.ndarray | None:
        """Every example's ``.cls`` label ``[N]`` (int64), or None when no shard has any."""
        found = [self._index(i).labels for i in range(len(self.paths))]
        if all(labels is None for labels in found):
            return None
        for i, labels in enumerate(found):
            if labels is None:
                raise DataError(f"{self.paths[i]}: no .cls labels, other shards have them")
        return np.concatenate(found)  # type: ignore[arg-type]

    def _read_shard(self, shard: int, local: Sequence[int]) -> np.ndarray:
        index = self._index(shard)
        self.opened[shard] += 1
        path = index.path
        out: list[np.ndarray] = []
        with open(path, "rb") as handle:
            fd = handle.fileno()
            for row in local:
                size = int(index.sizes[row])
                payload = os.pread(fd, size, int(index.offsets[row]))
                if len(payload) != size:
                    raise DataError(f"{path}: truncated tar shard (example {row} cut short)")
                out.append(decode_value(payload, index.exts[row], f"{path} example {row}"))
        first = out[0]
        for row, values in zip(local, out, strict=True):
            if values.shape != first.shape or values.dtype != first.dtype:
                raise DataError(
                    f"{path}: example {row} is {list(values.shape)} {values.dtype}, earlier "
                    f"ones {list(first.shape)} {first.dtype}; give examples of one size"
                )
        return np.stack(out)

    def __getitem__(self, rows: Any) -> np.ndarray:
        if not isinstance(rows, np.ndarray):
            rows = np.arange(self.shape[0])[rows]
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        for shard in np.unique(which):
            pick = np.flatnonzero(which == shard)
            local = rows[pick] - self.offsets[shard]
            order = np.argsort(local, kind="stable")  # in file order: mostly forward reads
            values = self._read_shard(int(shard), local[order].tolist())
            if values.shape[1:] != self.shape[1:] or values.dtype != self.dtype:
                raise DataError(
                    f"{self.paths[shard]}: examples are {list(values.shape[1:])} "
                    f"{values.dtype}, the first shard's {list(self.shape[1:])} {self.dtype}"
                )
            out[pick[order]] = values
        return out
