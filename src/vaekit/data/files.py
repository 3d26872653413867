"""User data read directly: image folders, ``.npy`` / ``.npz`` arrays, CSV and Parquet tables.

``load_path(path, ...)`` picks a reader from ``FORMATS`` (suffix -> reader; a folder is an
image folder). Every reader returns stored values and a description of what they are; the
splits and the Dataset are made in one place (:func:`make_dataset`):

* test: a fixed 10% held out with seed ``TEST_SPLIT_SEED`` (at least one row when N >= 3), as
  the built-in ``digits`` does; validation: ``val_fraction`` of the rest with ``split_seed``;
* arrays whose every value is 0 or 1 (any dtype): support binary, Bernoulli by default;
* other uint8 arrays and images: 8-bit levels, ``Dequantize(256)``, support unit-interval
  (16-bit grey images: levels 0..65535, ``Dequantize(65536)``);
* any other numbers (tables, float arrays): ``Standardize`` with the training split's per-column
  mean and standard deviation, support real. The statistics are part of the transform, so they
  are saved in the model's config.json (``data.transform``) and applied again to new data.

Bad input is a :class:`DataError` naming the file (and the row/column of a table cell, counted
from 1 as a spreadsheet shows them, header included).
"""

from __future__ import annotations

import csv
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaekit.data.datasets import Dataset, MemmapSplit, Split, native_order, split_indices
from vaekit.data.errors import DataError
from vaekit.data.images import read_images
from vaekit.data.transforms import Dequantize, Standardize, Transform
from vaekit.support.spelling import spell

TEST_FRACTION = 0.1
TEST_SPLIT_SEED = 1234
# .npy/.npz arrays larger than this many bytes stay memory-mapped on disk (unless in_memory=True).
IN_MEMORY_MAX_BYTES = 2 << 30


@dataclass
class Stored:
    """What a reader returns: values ``x [N, *shape]`` (tensor, or a memory-mapped array) and
    optional integer labels ``y [N]``."""

    x: torch.Tensor | np.ndarray
    y: torch.Tensor | np.ndarray | None = None
    kind: str = ""  # a few words for the description
    extra: dict | None = None
    levels: int | None = None  # integer levels 0..levels-1 (images); None: judged by dtype


# --- image folders --------------------------------------------------------------------------


def _image_size() -> str:
    return spell("--image-size", "image_size")


def _data() -> str:
    return spell("--data", "dataset")


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


def _is_number(text: str) -> bool:
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
    if not all(_is_number(cell) for cell in rows[0][1]):
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


# --- from stored values to a Dataset --------------------------------------------------------


def _check_finite(x: np.ndarray, path: Path) -> None:
    """NaN/inf in a float array: a DataError naming the first bad row and column (from 1)."""
    if x.dtype.kind != "f":
        return
    for start in range(0, x.shape[0], 65536):
        chunk = np.asarray(x[start : start + 65536]).reshape(min(65536, x.shape[0] - start), -1)
        bad = np.argwhere(~np.isfinite(chunk))
        if bad.size:
            r, c = bad[0]
            raise DataError(
                f"{path}: row {start + r + 1}, column {c + 1}: {chunk[r, c]} is not finite"
            )


def _column_stats(x: np.ndarray | torch.Tensor, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation over ``rows`` (float64, in row chunks).

    Each feature is first divided by its largest magnitude, so no square can overflow (values
    near 1e200 squared would be inf in float64, and the std NaN), and chunks are combined with
    the pairwise update of Chan, Golub & LeVeque (1979), so a large common offset does not
    cancel the spread. A constant feature gets std 1 (it is then only centred), stated here.
    """
    chunks = range(0, len(rows), 65536)

    def chunk(start: int) -> np.ndarray:
        values = np.asarray(x[rows[start : start + 65536]], dtype=np.float64)
        return values.reshape(values.shape[0], -1)

    scale = None
    for start in chunks:
        largest = np.abs(chunk(start)).max(0)
        scale = largest if scale is None else np.maximum(scale, largest)
    scale[scale == 0] = 1.0
    n, mean, m2 = 0, np.zeros_like(scale), np.zeros_like(scale)
    for start in chunks:
        c = chunk(start) / scale  # every value in [-1, 1]
        k, c_mean = c.shape[0], c.mean(0)
        c_m2 = np.square(c - c_mean).sum(0)
        delta, total = c_mean - mean, n + k
        mean = mean + delta * (k / total)
        m2 = m2 + c_m2 + np.square(delta) * (n * k / total)
        n = total
    std = np.sqrt(m2 / n) * scale
    std[std == 0] = 1.0
    return mean * scale, std


def check_representable(
    x: np.ndarray | torch.Tensor,
    mean: np.ndarray,
    std: np.ndarray,
    path: Path,
    names: list[str] | None = None,
) -> None:
    """Every standardised value (v - mean) / std, over all rows, must be finite in torch's
    default dtype (the training dtype); else a DataError naming the first such column
    (from 1, with its name where the table has one)."""
    dtype = torch.get_default_dtype()
    limit = torch.finfo(dtype).max
    for start in range(0, x.shape[0], 65536):
        values = np.asarray(x[start : start + 65536], dtype=np.float64)
        z = (values.reshape(values.shape[0], -1) - mean) / std
        bad = np.flatnonzero((np.abs(z) > limit).any(0) | ~np.isfinite(z).all(0))
        if bad.size:
            j = int(bad[0])
            name = f" ({names[j]!r})" if names and j < len(names) else ""
            raise DataError(
                f"{path}: column {j + 1}{name}: values are not representable in "
                f"{str(dtype).removeprefix('torch.')} after standardising with the training "
                f"split's mean {mean[j]:.3g} and std {std[j]:.3g}"
            )


def describe_values(
    x: np.ndarray | torch.Tensor,
    rows: np.ndarray,
    shape: tuple[int, ...],
    levels: int | None = None,
):
    """(transform, support, default likelihood, num_levels) that fit the stored values;
    ``levels``: the reader's count of integer levels (None: 256 for uint8 values)."""
    binary = True
    for start in range(0, x.shape[0], 65536):
        chunk = np.asarray(x[start : start + 65536])
        if not np.isin(chunk, (0, 1)).all():
            binary = False
            break
    if binary:
        return Transform(), "binary", "bernoulli", 2
    if levels is None and x.dtype in (np.uint8, torch.uint8):
        levels = 256
    if levels is not None:
        return Dequantize(levels), "unit-interval", "gaussian-learned", levels
    mean, std = _column_stats(x, rows)
    return (
        Standardize(mean.reshape(shape).tolist(), std.reshape(shape).tolist()),
        "real",
        "gaussian-learned",
        None,
    )


def make_dataset(
    path: Path,
    stored: Stored,
    val_fraction: float,
    split_seed: int,
    in_memory: bool | None,
) -> Dataset:
    x = stored.x
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(
            f"{path}: expected an array [N, ...] with N >= 1 rows, got shape {list(x.shape)}"
        )
    if 0 in x.shape[1:]:
        raise DataError(f"{path}: rows hold no values (shape {list(x.shape)})")
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise DataError(f"{path}: dtype {x.dtype} is not numeric")
        if x.ndim == 3:  # [N, H, W] greyscale images -> [N, 1, H, W] (a view, no copy)
            x = x.reshape(x.shape[0], 1, *x.shape[1:])
        _check_finite(x, path)
    n = x.shape[0]
    n_test = round(n * TEST_FRACTION) or (1 if n >= 3 else 0)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(TEST_SPLIT_SEED))
    test_rows, rest = order[:n_test].sort().values, order[n_test:].sort().values
    train_pos, val_pos = split_indices(len(rest), val_fraction, split_seed)
    rows = {
        "train": rest[train_pos].numpy(),
        "val": rest[val_pos].numpy(),
        "test": test_rows.numpy(),
    }
    empty = [name for name in ("train", "val", "test") if len(rows[name]) == 0]
    if empty and not (empty == ["val"] and val_fraction == 0):
        raise DataError(
            f"{path}: {n} rows are too few to split into train, validation and test (the "
            f"{' and '.join(empty)} split would be empty; {TEST_FRACTION:.0%} is held out for "
            f"test and {val_fraction:.0%} of the rest for validation)"
        )
    shape = tuple(int(d) for d in x.shape[1:])
    transform, support, likelihood, levels = describe_values(x, rows["train"], shape, stored.levels)
    if isinstance(transform, Standardize):  # a data error now, not a NaN loss later
        flat = (-1,)
        mean, std = transform.mean.reshape(flat).numpy(), transform.std.reshape(flat).numpy()
        check_representable(x, mean, std, path, (stored.extra or {}).get("columns"))

    if isinstance(x, np.ndarray):
        nbytes = x.size * x.itemsize
        keep = in_memory if in_memory is not None else nbytes <= IN_MEMORY_MAX_BYTES
        if keep:
            x = torch.from_numpy(np.array(native_order(x)))
    y = stored.y
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(np.asarray(y).astype(np.int64))

    def make(name: str) -> Split | MemmapSplit:
        r = rows[name]
        if isinstance(x, np.ndarray):
            if name != "test":  # training and validation stream from disk; test is read
                return MemmapSplit(x, r, None if y is None else y.numpy())
            test = np.ascontiguousarray(native_order(x[r]))
            return Split(torch.from_numpy(test), None if y is None else y[r])
        idx = torch.from_numpy(r)
        return Split(x[idx], None if y is None else y[idx])

    streamed = isinstance(x, np.ndarray)
    extra = dict(stored.extra or {})
    extra["source"] = stored.kind
    return Dataset(
        name=str(path),
        shape=shape,
        train=make("train"),
        val=make("val"),
        test=make("test"),
        transform=transform,
        support=support,
        default_likelihood=likelihood,
        num_levels=levels,
        description=f"{path}: {stored.kind}" + (" (memory-mapped, streamed)" if streamed else ""),
        extra=extra,
    )


def load_path(
    path: str | Path,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    image_size: list[int] | None = None,
    in_memory: bool | None = None,
    label_column: str | None = None,
    columns: dict[str, str] | None = None,
) -> Dataset:
    """A Dataset from a user file or folder (see the module docstring). A table with words
    or missing cells, or given ``columns`` types, is a mixed-type table
    (``vaekit.data.tables``)."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise DataError(f"{_data()} {path}: no such file or folder")
    if path.is_dir():
        reader = read_image_folder
    else:
        reader = FORMATS.get(path.suffix.lower())
        if reader is None:
            raise DataError(
                f"{_data()} {path}: unknown format {path.suffix!r}; expected a folder of images or "
                f"one of {', '.join(sorted(FORMATS))}"
            )
        if image_size is not None:
            raise DataError(f"{_image_size()} applies to image folders, not {path.name}")
    if label_column is not None and reader not in (read_csv, read_parquet):
        raise DataError(f"{_label_column()} applies to CSV/Parquet tables, not {path.name}")
    table = reader in (read_csv, read_parquet)
    if columns and not table:
        raise DataError(f"{spell('--column-type', 'columns')} applies to CSV/Parquet tables")

    def mixed() -> Dataset | None:
        from vaekit.data.tables import load_table  # it builds on this module

        return load_table(path, columns, val_fraction, split_seed, label_column)

    if columns:  # typed columns: the mixed-type path, whatever the cells hold
        return mixed()
    try:
        stored = reader(path, image_size=image_size)
    except DataError:
        # Words or missing cells: a mixed-type table. One the numeric reader refused for
        # another reason (a ragged row, an empty file) is refused by that path too, or is
        # all numbers after all (None): the numeric reader's error stands.
        dataset = mixed() if table else None
        if dataset is None:
            raise
        return dataset
    if label_column is not None:
        stored = take_label_column(path, stored, label_column)
    return make_dataset(path, stored, val_fraction, split_seed, in_memory)
