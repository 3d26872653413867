"""User data read directly: image folders, ``.npy`` / ``.npz`` arrays, CSV and Parquet tables.

``FORMATS`` maps a suffix to its reader (a folder is an image folder, :func:`read_image_folder`).
Every reader returns a :class:`vaekit.data.stored.Stored`, the values and a description of what
they are; :func:`vaekit.data.stored.make_dataset` makes the splits and the Dataset from it, and
:func:`vaekit.data.registry.load_path` chooses between these readers and the mixed-type tables
of :mod:`vaekit.data.tables`.

Bad input is a :class:`DataError` naming the file (and the row/column of a table cell, counted
from 1 as a spreadsheet shows them, header included).
"""

from __future__ import annotations

import csv
import math
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vaekit.data.errors import DataError
from vaekit.data.images import read_images
from vaekit.data.stored import Stored
from vaekit.support.spelling import spell

# --- image folders --------------------------------------------------------------------------


def _image_size() -> str:
    return spell("--image-size", "image_size")


def parse_image_size(text: str) -> list[int]:
    """'28x28' or '28' -> [H, W] (pixels)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        size = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"{_image_size()} {text!r}: expected HxW, e.g. 28x28") from None
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{_image_size()} {text!r}: expected HxW with positive sizes, e.g. 28x28")
    return size


def read_image_folder(path: Path, image_size: list[int] | None = None) -> Stored:
    """A folder's images (:func:`vaekit.data.images.read_images`) as levels ``[N, C, H, W]``
    with their class labels."""
    images = read_images(path, image_size)
    y = torch.tensor(images.labels, dtype=torch.int64) if images.labels is not None else None
    extra = {"classes": images.classes} if images.classes else {}
    if image_size is not None:
        extra["image_size"] = list(image_size)
    kind = f"image folder, {len(images.x)} images, {images.mode}"
    kind += ", 16-bit" if images.levels == 65536 else ""
    return Stored(torch.from_numpy(images.x), y, kind, extra, levels=images.levels)


# --- arrays ---------------------------------------------------------------------------------


def _npz_member_memmap(path: Path, member: str) -> np.ndarray | None:
    """Memory-map an uncompressed (stored) ``.npy`` member of a ``.npz`` archive; None if the
    member is compressed (it must then be read into memory)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)  # the zip local file header
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        handle.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(handle)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }[version]
        shape, fortran, dtype = read_header(handle)
        offset = handle.tell()
    if dtype.hasobject:
        raise DataError(f"{path}:{member}: object arrays are not supported (they need pickle)")
    return np.memmap(
        path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
    )


NPZ_DATA_KEYS = ("x", "data", "images", "X", "arr_0")
NPZ_LABEL_KEYS = ("y", "labels", "targets", "Y")


def read_npz(path: Path, image_size: list[int] | None = None) -> Stored:
    """Arrays from a ``.npz``: data under x/data/images/arr_0 (or its only array), labels
    under y/labels/targets. Stored (uncompressed) members are memory-mapped."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
    if not keys:
        raise DataError(f"{path}: .npz archive holds no arrays")
    data_key = next((k for k in NPZ_DATA_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
    if data_key is None:
        raise DataError(f"{path}: cannot tell the data array among {keys}; name it 'x'")
    label_key = next((k for k in NPZ_LABEL_KEYS if k in keys and k != data_key), None)

    def member(key: str) -> np.ndarray:
        mapped = _npz_member_memmap(path, f"{key}.npy")
        if mapped is not None:
            return mapped
        with np.load(path, allow_pickle=False) as archive:
            return archive[key]

    x = member(data_key)
    y = member(label_key) if label_key else None
    if y is not None and (y.ndim != 1 or len(y) != len(x)):
        raise DataError(f"{path}: labels {label_key!r} must be [N] = [{len(x)}], got {y.shape}")
    return Stored(
        x, y, f"arrays {data_key!r}" + (f" + labels {label_key!r}" if y is not None else "")
    )


def read_npy(path: Path, image_size: list[int] | None = None) -> Stored:
    """A ``.npy`` array ``[N, ...]``, memory-mapped (never unpickled)."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    return Stored(x, None, ".npy array")


# --- tables ---------------------------------------------------------------------------------


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_unique_columns(path: Path, names: list[str]) -> None:
    """Refuse a table whose header repeats a name: columns are matched by name (new data,
    labels), so a repeated one would be matched to whichever comes first."""
    seen: set[str] = set()
    for j, name in enumerate(names):
        if name in seen:
            raise DataError(
                f"{path}: column {j + 1} repeats the name {name!r} of column "
                f"{names.index(name) + 1}; column names must be unique"
            )
        seen.add(name)


def read_csv_rows(path: Path) -> list[list[str]]:
    """A CSV file's rows of cells, read by the csv module (quoted commas, quotes and
    newlines kept in their cell) as UTF-8; a leading byte-order mark (Excel's "CSV UTF-8")
    is dropped, not read into the first cell."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return list(csv.reader(handle))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text CSV file ({exc})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None


def read_csv(path: Path, image_size: list[int] | None = None) -> Stored:
    """A numeric CSV table ``[N rows, D columns]`` (:func:`read_csv_rows`); a first row that
    is not all numbers is the header, whose names must be unique. Empty cells, words, NaN and
    inf are errors naming row and column."""
    rows = [(i + 1, r) for i, r in enumerate(read_csv_rows(path)) if any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path}: empty CSV file")
    header = None
    if not all(is_number(cell) for cell in rows[0][1]):
        header = [cell.strip() for cell in rows[0][1]]
        check_unique_columns(path, header)
        rows = rows[1:]
    if not rows:
        raise DataError(f"{path}: CSV file has a header but no data rows")
    width = len(header) if header else len(rows[0][1])
    names = header or [str(j + 1) for j in range(width)]
    values = np.empty((len(rows), width), dtype=np.float64)
    for i, (line, row) in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{path}: row {line} has {len(row)} columns, expected {width}")
        for j, cell in enumerate(row):
            try:
                v = float(cell)
            except ValueError:
                raise DataError(
                    f"{path}: row {line}, column {j + 1} ({names[j]!r}): {cell!r} is not a number"
                ) from None
            if not math.isfinite(v):
                raise DataError(
                    f"{path}: row {line}, column {j + 1} ({names[j]!r}): {cell!r} is not finite"
                )
            values[i, j] = v
    return Stored(torch.from_numpy(values), None, f"CSV table, {width} columns", {"columns": names})


def read_parquet_table(path: Path):
    """A Parquet file as a ``pyarrow.Table`` with at least one row and uniquely named
    columns (needs the optional ``pyarrow``); every failure a one-line DataError."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow: pip install 'vaekit[parquet]'"
        ) from None
    try:  # the file's own reader: the dataset reader fails on repeated names
        with pq.ParquetFile(path) as parquet:
            table = parquet.read()
    except (OSError, pa.ArrowException) as exc:
        reason = " ".join(str(exc).split())  # one line
        raise DataError(f"{path}: not a readable Parquet file ({reason})") from None
    if table.num_columns == 0:
        raise DataError(f"{path}: empty Parquet table (no columns)")
    if table.num_rows == 0:
        raise DataError(f"{path}: Parquet table has columns but no rows")
    check_unique_columns(path, list(table.column_names))
    return table


def read_parquet(path: Path, image_size: list[int] | None = None) -> Stored:
    """A Parquet table of numeric columns (:func:`read_parquet_table`)."""
    import pyarrow as pa

    table = read_parquet_table(path)
    columns = []
    for j, (name, column) in enumerate(zip(table.column_names, table.columns, strict=True)):
        where = f"{path}: column {j + 1} ({name!r})"
        if not (
            pa.types.is_integer(column.type)
            or pa.types.is_floating(column.type)
            or pa.types.is_boolean(column.type)
        ):
            raise DataError(f"{where}: type {column.type} is not numeric")
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0]) + 1
            raise DataError(f"{where}, row {row}: missing value")
        values = column.to_numpy().astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise DataError(f"{where}, row {bad[0] + 1}: {values[bad[0]]} is not finite")
        columns.append(values)
    x = torch.from_numpy(np.stack(columns, axis=1))
    return Stored(
        x, None, f"Parquet table, {len(columns)} columns", {"columns": list(table.column_names)}
    )


def _label_column() -> str:
    return spell("--label-column", "label_column")


def take_label_column(path: Path, stored: Stored, name: str) -> Stored:
    """A table's column ``name`` as the integer class labels ``y [N]`` (0, 1, ...), taken out
    of the features; the rest of the columns stay the features ``[N, D - 1]``. The column is
    found by its header name (by its number from 1 in a table without a header row)."""
    names = list((stored.extra or {}).get("columns") or [])
    if name not in names:
        raise DataError(
            f"{path}: no column {name!r} for {_label_column()}; the columns are "
            f"{', '.join(map(repr, names))}"
        )
    if len(names) < 2:
        raise DataError(f"{path}: {_label_column()} {name!r} leaves no feature columns")
    j = names.index(name)
    x = stored.x.numpy() if torch.is_tensor(stored.x) else np.asarray(stored.x)
    labels = x[:, j]
    bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0))
    if bad.size:
        raise DataError(
            f"{path}: row {bad[0] + 1}, column {name!r}: {labels[bad[0]]:g} is not a class label "
            "(an integer >= 0)"
        )
    features = np.delete(x, j, axis=1)
    extra = dict(stored.extra or {}) | {
        "columns": names[:j] + names[j + 1 :],
        "label_column": name,
    }
    kind = f"{stored.kind.split(',')[0]}, {features.shape[1]} feature columns + labels {name!r}"
    y = torch.from_numpy(labels.astype(np.int64))
    return Stored(torch.from_numpy(np.ascontiguousarray(features)), y, kind, extra)


FORMATS: dict[str, Callable[..., Stored]] = {
    ".npy": read_npy,
    ".npz": read_npz,
    ".csv": read_csv,
    ".parquet": read_parquet,
    ".pq": read_parquet,
}
