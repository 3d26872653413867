"""The IDX file format (LeCun's MNIST format), read and validated; gzip or raw.

An IDX file is a 4-byte magic number ``0x00 0x00 TYPE NDIM``, NDIM big-endian uint32 sizes,
then the values in C order (big-endian for multi-byte types). Every check names the file.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from vaekit.data.errors import DataError

# IDX type byte -> numpy dtype (big-endian as stored).
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_bytes(path: str | Path, compressed: bool | None = None) -> bytes:
    """The file's content, gunzipped if ``compressed`` (default: the name ends in ``.gz``);
    a damaged gzip stream is a DataError naming the file."""
    path = Path(path)
    if compressed is None:
        compressed = path.suffix == ".gz"
    try:
        if compressed:
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip file ({exc})") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_idx(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array of the stored shape; the header must match the size."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    kind, ndim = data[2], data[3]
    if kind not in IDX_TYPES or ndim == 0:
        raise DataError(f"{path}: unsupported IDX type 0x{kind:02x} or {ndim} dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX file (header needs {header} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[kind]
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {what} IDX file: header says shape {list(shape)} ({expected} bytes), "
            f"file has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def read_idx(
    path: str | Path,
    sha256: str | None = None,
    shape: tuple[int, ...] | None = None,
    max_value: int | None = None,
    compressed: bool | None = None,
) -> np.ndarray:
    """Read and validate one IDX(.gz) file.

    ``sha256`` is the expected hash of the decompressed bytes; ``shape`` the expected array
    shape; ``max_value`` the largest allowed value (e.g. 9 for digit labels). Any mismatch is a
    :class:`DataError` naming ``path``. ``compressed`` as in :func:`read_bytes`.
    """
    data = read_bytes(path, compressed)
    array = parse_idx(data, path)
    if shape is not None and array.shape != tuple(shape):
        raise DataError(
            f"{path}: expected shape {list(shape)}, IDX header says {list(array.shape)}"
        )
    if sha256 is not None:
        actual = sha256_hex(data)
        if actual != sha256:
            raise DataError(
                f"{path}: checksum mismatch: decompressed SHA-256 {actual}, expected {sha256}"
            )
    if max_value is not None and array.size and int(array.max()) > max_value:
        raise DataError(f"{path}: value {int(array.max())} out of range 0..{max_value}")
    return array


def write_idx(array: np.ndarray) -> bytes:
    """IDX bytes for ``array`` (the inverse of :func:`parse_idx`; used for tests and caches)."""
    codes = {dt: code for code, dt in IDX_TYPES.items()}
    dtype = np.dtype(array.dtype).newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, codes[dtype], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()
