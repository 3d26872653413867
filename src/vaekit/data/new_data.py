"""New data for a trained model: read it like ``train`` does, check it is on the training
data's scale, and write results back in the user's units.

``read_new_data(path, data_info)`` reads an image folder, a ``.npy``/``.npz`` array or a
CSV/Parquet table (the readers of :mod:`vaekit.data.files`), and returns the stored values
``x [N, *data_shape]`` on the training data's scale, ready for the run's saved transform
(``data_info`` is the ``data`` section of the run's config.json):

* arrays: any shape whose rows reshape to the model's data shape (``[N, 64]`` or
  ``[N, 8, 8]`` for a ``[1, 8, 8]`` model; a single example without the N axis); a
  channels-last image array ``[N, H, W, C]`` is refused rather than scrambled by a reshape;
* tables: columns are matched by name against the training table's, in any order; other
  columns are ignored (the out-of-distribution label column, ``ood`` by default, is read as
  labels; the training table's class-label column, if it had one, as the class labels);
  a table without the training columns is refused, naming the missing ones;
* image folders: resized like the training folder (its recorded ``image_size``), the same
  number of channels required.

The scale check (a one-line :class:`DataError` saying what was expected; never a silent guess):

* models of integer levels (``dequantize``/``binarize-dynamic`` with L levels): every value
  must be an integer in 0..L-1; floats in [0, 1] or 8-bit values for a 17-level model are
  refused. Data whose every value is 0 or 1 (binary or [0, 1]-scaled data, not levels) is
  refused too unless ``trust_scale``;
* binary models: every value 0 or 1;
* standardised models (tables, float arrays): refused unless ``trust_scale`` when a
  feature's median over the rows lies more than ``FAR_SD`` training standard deviations from
  the training mean, or (with at least ``SPREAD_MIN_ROWS`` rows) the median over features of
  (robust spread of the new data, interquartile range / 1.349, / training std; features with
  no spread in the new data skipped) is below 1/``SPREAD_RATIO`` or above
  ``SPREAD_RATIO``: the signature of data in other units. Single anomalous rows pass; the
  checks look at the typical row, so an anomaly score is not refused for being anomalous.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.data.datasets import Dataset, Split, native_order
from vaekit.data.errors import DataError
from vaekit.data.files import (
    FORMATS,
    _check_finite,
    _is_number,
    read_csv_rows,
    read_image_folder,
    take_label_column,
)
from vaekit.data.images import list_images
from vaekit.data.tables import new_table_data
from vaekit.data.transforms import Transform, transform_from_dict

FAR_SD = 10.0  # a feature's typical value this many training SDs away: other units
SPREAD_RATIO = 20.0  # new spread / training spread beyond 20x either way: other units
SPREAD_MIN_ROWS = 10  # the spread check needs this many rows
OOD_COLUMN = "ood"  # default name of the label column / .npz array: 1 = out-of-distribution


@dataclass
class NewData:
    """What :func:`read_new_data` returns.

    ``x``: stored values ``[N, *data_shape]`` (float64; integer-valued for level data).
    ``ood``: ``[N]`` int64 labels, 1 = out-of-distribution, 0 = in-distribution, or None.
    ``labels``: ``[N]`` int64 class labels (the training table's label column, a .npz's
    labels array), what a conditional model is conditioned on; or None.
    ``kind``: "table", "array" or "images"; ``suffix`` the input's suffix ("" for a folder).
    ``row_shape``: the shape of one input row as given (outputs are written in it).
    ``names``: image files relative to the folder (for PNG outputs of the same names).
    """

    path: Path
    x: torch.Tensor
    kind: str
    suffix: str
    row_shape: tuple[int, ...]
    ood: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    names: list[str] | None = None
    ignored_columns: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.x.shape[0]


def run_transform(data_info: dict[str, Any] | None) -> Transform:
    """The run's saved preprocessing (identity when the run recorded none)."""
    return transform_from_dict((data_info or {}).get("transform", {"kind": "identity"}))


def _levels(transform: Transform) -> int | None:
    return getattr(transform, "levels", None) if transform.kind != "identity" else None


def _ood_from_classes(
    path: Path, classes: list[str], y: np.ndarray | None, ood_classes: list[str] | None
) -> np.ndarray | None:
    """Folder labels -> 1 for out-of-distribution classes: the sub-folders ``ood_classes``
    name, or ``out`` when the sub-folders are exactly ``in`` and ``out``."""
    if y is None or not classes:
        if ood_classes:
            raise DataError(f"{path}: --ood-classes needs class sub-folders; found none")
        return None
    if ood_classes:
        unknown = sorted(set(ood_classes) - set(classes))
        if unknown:
            raise DataError(
                f"{path}: --ood-classes {', '.join(unknown)}: no such sub-folder "
                f"(found {', '.join(classes)})"
            )
        out = {classes.index(c) for c in ood_classes}
    elif sorted(classes) == ["in", "out"]:
        out = {classes.index("out")}
    else:
        return None
    return np.isin(np.asarray(y), sorted(out)).astype(np.int64)


def _check_ood(path: Path, values: np.ndarray, where: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or not np.isin(values, (0, 1)).all():
        raise DataError(
            f"{path}: {where} must hold 0 (in-distribution) or 1 (out-of-distribution) per row"
        )
    return values.astype(np.int64)


def _read_table(path: Path, data_info: dict, ood_column: str) -> tuple[np.ndarray, dict]:
    """Table columns matched by name to the training table's -> ``[N, D]`` and extras."""
    stored = FORMATS[path.suffix.lower()](path)
    label_column = data_info.get("label_column")  # the training table's class labels
    if label_column is not None and label_column in (stored.extra or {}).get("columns", []):
        stored = take_label_column(path, stored, label_column)
    names = list((stored.extra or {}).get("columns") or [])
    values = stored.x.numpy() if torch.is_tensor(stored.x) else np.asarray(stored.x)
    extra: dict[str, Any] = {"labels": stored.y}
    if ood_column in names and ood_column not in (data_info.get("columns") or []):
        j = names.index(ood_column)
        extra["ood"] = _check_ood(path, values[:, j], f"column {ood_column!r}")
        values = np.delete(values, j, axis=1)
        names = names[:j] + names[j + 1 :]
    wanted = data_info.get("columns")
    if wanted:
        missing = [c for c in wanted if c not in names]
        if missing:
            header = "" if any(not n.isdigit() for n in names) else " (it has no header row)"
            raise DataError(
                f"{path}: missing column(s) {', '.join(map(repr, missing))}{header}; the model "
                f"was trained on columns {', '.join(map(repr, wanted))}"
            )
        extra["ignored_columns"] = [n for n in names if n not in wanted]
        values = values[:, [names.index(c) for c in wanted]]
    return values, extra


def _read_array(path: Path, ood_column: str) -> tuple[np.ndarray, dict]:
    stored = FORMATS[path.suffix.lower()](path)
    extra: dict[str, Any] = {"labels": stored.y}  # a .npz's labels array
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if ood_column in archive.files:
                extra["ood"] = _check_ood(path, archive[ood_column], f"array {ood_column!r}")
    return np.asarray(stored.x), extra


def _fit_shape(path: Path, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``[N, ...]`` -> ``[N, *shape]`` by a reshape of each row (see the module doc)."""
    d = math.prod(shape)
    if values.ndim >= 2 and math.prod(values.shape[1:]) == d:
        if (
            len(shape) == 3
            and shape[0] > 1
            and values.ndim == 4
            and values.shape[1:] == (shape[1], shape[2], shape[0])
            and values.shape[1:] != shape
        ):
            raise DataError(
                f"{path}: array is channels-last {list(values.shape)}; the model expects "
                f"[N, {', '.join(map(str, shape))}] (channels first): transpose it "
                "with x.transpose(0, 3, 1, 2)"
            )
        return values.reshape(values.shape[0], *shape)
    if values.size == d and values.ndim >= 1 and values.shape[0] != 0:
        return values.reshape(1, *shape)
    raise DataError(
        f"{path}: expected rows of shape [{', '.join(map(str, shape))}] (or anything with "
        f"{d} values per row), got an array of shape {list(values.shape)}"
    )


def check_scale(
    path: Path, x: np.ndarray, transform: Transform, support: str | None, trust_scale: bool
) -> None:
    """Refuse data that is not on the training data's scale (see the module doc)."""
    levels = _levels(transform)
    if levels is not None:
        lo, hi = float(x.min()), float(x.max())
        if not np.all(np.floor(x) == x):
            hint = " (they look scaled to [0, 1])" if lo >= 0.0 and hi <= 1.0 else ""
            raise DataError(
                f"{path}: expected integer levels 0..{levels - 1} like the training data; got "
                f"non-integer values in [{lo:.4g}, {hi:.4g}]{hint}"
            )
        if lo < 0 or hi > levels - 1:
            raise DataError(
                f"{path}: expected integer levels 0..{levels - 1} like the training data; got "
                f"values in [{lo:.4g}, {hi:.4g}]"
            )
        if levels > 2 and hi == 1.0 and not trust_scale and np.isin(x, (0, 1)).all():
            raise DataError(
                f"{path}: expected integer levels 0..{levels - 1} like the training data; every "
                "value is 0 or 1 (binary or [0, 1]-scaled data?); pass --trust-scale if these "
                "really are levels"
            )
        return
    if support == "binary":
        if not np.isin(x, (0, 1)).all():
            raise DataError(
                f"{path}: expected binary values 0 or 1 like the training data; got values in "
                f"[{float(x.min()):.4g}, {float(x.max()):.4g}]"
            )
        return
    if transform.kind != "standardize" or trust_scale:
        return
    mean = transform.mean.numpy().reshape(-1)
    std = transform.std.numpy().reshape(-1)
    flat = x.reshape(x.shape[0], -1)
    median = np.median(flat, axis=0)
    far = np.abs(median - mean) / std
    j = int(np.argmax(far))
    if far[j] > FAR_SD:
        raise DataError(
            f"{path}: feature {j + 1}: typical value {median[j]:.4g} lies {far[j]:.1f} training "
            f"standard deviations from the training mean {mean[j]:.4g} (std {std[j]:.4g}); "
            "expected data on the training data's scale (pass --trust-scale to use it anyway)"
        )
    if flat.shape[0] >= SPREAD_MIN_ROWS:
        # a robust spread (interquartile range / 1.349, the SD of a Gaussian), so that a few
        # anomalous rows do not count; features with no spread in the new data are skipped
        q75, q25 = np.percentile(flat, [75, 25], axis=0)
        spread = (q75 - q25) / 1.349
        informative = spread > 0
        ratio = (
            float(np.median(spread[informative] / std[informative])) if informative.any() else 1.0
        )
        if ratio < 1 / SPREAD_RATIO or ratio > SPREAD_RATIO:
            raise DataError(
                f"{path}: the features spread {ratio:.3g} times as much as the training data's "
                "(median over features); expected data on the training data's scale, in the "
                "same units (pass --trust-scale to use it anyway)"
            )


def _nonempty_file(path: Path) -> None:
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")


def read_new_data(
    path: str | Path,
    data_info: dict[str, Any] | None,
    *,
    ood_column: str = OOD_COLUMN,
    ood_classes: list[str] | None = None,
    trust_scale: bool = False,
    columns: list | None = None,
) -> NewData:
    """Read new data for a model trained on ``data_info`` (see the module doc); for a model
    of a mixed-type table, ``columns`` (its ``model.columns``) encode the table's rows
    (``vaekit.data.tables``)."""
    info = data_info or {}
    if columns:
        return new_table_data(path, columns, ood_column)
    if info.get("support") == "table":
        raise DataError(f"{path}: a mixed-type table's run needs its columns to read new data")
    if "shape" not in info:
        raise DataError(f"{path}: the run's config.json records no data shape")
    shape = tuple(int(d) for d in info["shape"])
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    transform = run_transform(info)
    extra: dict[str, Any] = {}
    names = None
    if path.is_dir():
        # resized as the training folder was (its recorded --image-size), else as they are
        stored = read_image_folder(path, image_size=info.get("image_size"))
        values = stored.x.numpy()
        trained = _levels(transform)
        if trained in (256, 65536) and stored.levels != trained:  # 8-bit vs 16-bit images
            raise DataError(
                f"{path}: images have levels 0..{stored.levels - 1}; the model was trained on "
                f"levels 0..{trained - 1} ({'16' if trained == 65536 else '8'}-bit images)"
            )
        files, _, classes = list_images(path)
        names = [str(f.relative_to(path)) for f in files]
        y = None if stored.y is None else stored.y.numpy()
        ood = _ood_from_classes(path, classes, y, ood_classes)
        if ood is not None:
            extra["ood"] = ood
        kind, suffix = "images", ""
        if len(shape) == 3 and values.shape[1:] != shape:
            c, h, w = values.shape[1:]
            raise DataError(
                f"{path}: images are {c} channel(s) of {h}x{w} pixels; the model expects "
                f"{shape[0]} channel(s) of {shape[1]}x{shape[2]}"
            )
    else:
        suffix = path.suffix.lower()
        if suffix not in FORMATS:
            raise DataError(
                f"{path}: unknown format {path.suffix!r}; expected a folder of images or one of "
                f"{', '.join(sorted(FORMATS))}"
            )
        _nonempty_file(path)
        if suffix in (".csv", ".parquet", ".pq"):
            values, extra = _read_table(path, info, ood_column)
            kind = "table"
        else:
            values, extra = _read_array(path, ood_column)
            kind = "array"
        if ood_classes:
            raise DataError(f"{path}: --ood-classes applies to image folders with sub-folders")
    if values.dtype.kind not in "biuf":
        raise DataError(f"{path}: dtype {values.dtype} is not numeric")
    if values.ndim == 0 or values.shape[0] == 0:
        raise DataError(f"{path}: no rows (array of shape {list(values.shape)})")
    row_shape = tuple(values.shape[1:]) if values.ndim >= 2 else tuple(values.shape)
    x = _fit_shape(path, values, shape)
    _check_finite(x, path)
    x = x.astype(np.float64)
    check_scale(path, x, transform, info.get("support"), trust_scale)
    ood = extra.get("ood")
    if ood is not None and len(ood) != x.shape[0]:
        raise DataError(f"{path}: {len(ood)} labels for {x.shape[0]} rows")
    labels = extra.get("labels")
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)  # [N]: each reader checked the length
        numeric = labels.dtype.kind in "iub" or (
            labels.dtype.kind == "f" and np.isfinite(labels).all()
        )
        if not numeric or (labels.size and (labels != np.round(labels)).any()):
            raise DataError(f"{path}: class labels must be integers, got dtype {labels.dtype}")
        labels = torch.tensor(labels.astype(np.int64))  # a copy: the file's array may be read-only
    return NewData(
        path=path,
        x=torch.from_numpy(np.ascontiguousarray(x)),
        kind=kind,
        suffix=suffix,
        row_shape=row_shape if math.prod(row_shape) == math.prod(shape) else shape,
        ood=None if ood is None else torch.from_numpy(ood),
        labels=labels,
        names=names,
        ignored_columns=list(extra.get("ignored_columns", [])),
    )


def as_dataset(new: NewData, data_info: dict[str, Any]) -> Dataset:
    """All rows of ``new`` as the test split of a Dataset carrying the run's transform (the
    train and validation splits are empty), for :func:`vaekit.evaluate.evaluate`."""
    shape = tuple(int(d) for d in data_info["shape"])
    empty = Split(torch.empty(0, *shape, dtype=new.x.dtype))
    return Dataset(
        name=str(new.path),
        shape=shape,
        train=empty,
        val=empty,
        test=Split(new.x, new.labels),
        transform=run_transform(data_info),
        support=data_info.get("support", "real"),
        default_likelihood="",
        num_levels=data_info.get("num_levels"),
        description=f"{new.path}: new data, {len(new)} rows",
    )


# --- writing results in the user's units ------------------------------------------------------


def column_names(data_info: dict[str, Any]) -> list[str]:
    """The training table's column names, or 1..D for data that was not a table."""
    columns = data_info.get("columns")
    if columns:
        return list(columns)
    return [str(j + 1) for j in range(math.prod(int(d) for d in data_info["shape"]))]


def _atomic_bytes(path: Path, blob: bytes) -> None:
    from vaekit.rundir import atomic_write_bytes

    atomic_write_bytes(path, blob)


def printable(name: str) -> str:
    """A file name as text any UTF-8 writer accepts: the bytes of a name that is not UTF-8
    (which Python holds as surrogate escapes) are shown backslash-escaped, b"\\xff.png" as
    ``\\xff.png``; a UTF-8 name is returned as it is."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name decodes to
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def csv_bytes(rows: list[list[str]]) -> bytes:
    """Rows of cells as UTF-8 CSV (quoted where a cell needs it: commas, quotes, newlines),
    what :func:`vaekit.data.files.read_csv` reads back cell for cell."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def write_table(path: str | Path, values: np.ndarray, columns: list[str]) -> Path:
    """``values [N, D]`` as CSV (``.csv``) or Parquet (``.parquet``), written atomically.
    A CSV's header row is left out when every name is a number (the columns 1..D of data
    without a header): the reader would take such a row for data."""
    path = Path(path)
    values = np.asarray(values, dtype=np.float64).reshape(values.shape[0], -1)
    if path.suffix.lower() == ".csv":
        body = [[f"{v:.9g}" for v in row] for row in values]
        header = [] if all(_is_number(c) for c in columns) else [list(columns)]
        _atomic_bytes(path, csv_bytes(header + body))
        return path
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"-o {path}: writing Parquet needs pyarrow: pip install 'vaekit[parquet]'"
        ) from None
    buffer = io.BytesIO()
    arrays = [pa.array(values[:, j]) for j in range(values.shape[1])]
    pq.write_table(pa.table(arrays, names=list(columns)), buffer)  # repeated names kept
    _atomic_bytes(path, buffer.getvalue())
    return path


def write_npy(path: str | Path, values: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values, dtype=np.float32), allow_pickle=False)
    _atomic_bytes(Path(path), buffer.getvalue())
    return Path(path)


def to_8bit(values: np.ndarray, transform: Transform, support: str | None) -> np.ndarray:
    """Data-unit images ``[N, C, H, W]`` -> uint8 for PNG: levels 0..L-1 scaled to 0..255
    and rounded; probabilities of binary data times 255."""
    levels = _levels(transform)
    if levels is not None:
        top = float(levels - 1)
    elif support == "binary":
        top = 1.0
    else:
        raise DataError(
            "PNG output needs image data of integer levels or binary pixels; this model's data "
            f"is {transform.space}: write a .npy instead"
        )
    return np.clip(np.rint(values / top * 255.0), 0, 255).astype(np.uint8)


def write_images(folder: str | Path, images: np.ndarray, names: list[str] | None) -> Path:
    """uint8 ``[N, C, H, W]`` as one 8-bit PNG per example in ``folder`` (created whole or not
    at all; names from ``names`` with a .png suffix (see :func:`vaekit.outputs.output_names`),
    else 00000.png ...). Nothing is overwritten."""
    from PIL import Image

    from vaekit.outputs import output_names, write_folder

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise DataError(f"-o {folder}: folder exists and is not empty; choose a new folder")
    names = output_names(names or [f"{i:05d}.png" for i in range(images.shape[0])])
    files = {}
    for image, name in zip(images, names, strict=True):
        pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        files[name] = buffer.getvalue()
    return write_folder(folder, files)


OUTPUT_SUFFIXES = (".csv", ".parquet", ".npy")


def write_data(
    path: str | Path,
    values: torch.Tensor,
    data_info: dict[str, Any],
    row_shape: tuple[int, ...] | None = None,
    names: list[str] | None = None,
) -> Path:
    """Data-unit values ``[N, *data_shape]`` to ``path`` by its suffix: ``.csv``/``.parquet``
    (the training columns), ``.npy`` (float32, rows in ``row_shape``), or no suffix: a folder
    of 8-bit PNG images."""
    path = Path(path)
    array = values.detach().cpu().double().numpy()
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        return write_table(path, array, column_names(data_info))
    if suffix == ".npy":
        shape = row_shape or tuple(array.shape[1:])
        return write_npy(path, array.reshape(array.shape[0], *shape))
    if suffix == "":
        if len(data_info.get("shape", [])) != 3:
            raise DataError(f"-o {path}: a folder of PNGs needs image data; use .csv or .npy")
        transform = run_transform(data_info)
        return write_images(path, to_8bit(array, transform, data_info.get("support")), names)
    raise DataError(
        f"-o {path}: unknown output format {path.suffix!r}; use .csv, .parquet, .npy or a "
        "folder name (8-bit PNGs)"
    )


def _code_columns(path: Path, latent_dim: int) -> np.ndarray | None:
    """The z1..zm columns of a CSV or Parquet table that holds others beside them
    (``encode``'s ``row`` and ``file``), ``[N, m]``; None for any other file (then read
    whole)."""
    suffix, z = path.suffix.lower(), [f"z{j + 1}" for j in range(latent_dim)]
    if suffix not in (".csv", ".parquet") or not path.is_file():
        return None
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            return None  # read_codes says pyarrow is needed
        try:
            names = pq.read_schema(path).names
        except Exception:  # not Parquet: read_codes names the problem
            return None
        if not set(z) <= set(names) or len(names) == len(z):
            return None
        table = pq.read_table(path, columns=z)
        values = np.stack([table.column(c).to_numpy().astype(np.float64) for c in z], axis=1)
        return _checked_codes(path, values, latent_dim)
    rows = [r for r in read_csv_rows(path) if any(c.strip() for c in r)]
    header = [c.strip() for c in rows[0]] if rows else []
    if not set(z) <= set(header) or len(header) == len(z):
        return None
    where = [header.index(c) for c in z]
    values = np.empty((len(rows) - 1, latent_dim))
    for i, row in enumerate(rows[1:]):
        for j, column in enumerate(where):
            cell = row[column] if column < len(row) else ""
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise DataError(
                    f"{path}: row {i + 2}, column {z[j]!r}: {cell!r} is not a number"
                ) from None
    return _checked_codes(path, values, latent_dim)


def _checked_codes(path: Path, values: np.ndarray, latent_dim: int) -> np.ndarray:
    if values.shape[0] == 0 or not np.isfinite(values).all():
        raise DataError(f"{path}: expected finite codes z1..z{latent_dim} in at least one row")
    return values


def read_codes(path: str | Path, latent_dim: int) -> np.ndarray:
    """Codes ``[N, m]`` from a ``.npy`` or a CSV/Parquet table: its z1..zm columns where it
    names them beside others (``encode``'s ``row`` and ``file``), else its m columns."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    _nonempty_file(path)
    named = _code_columns(path, latent_dim)
    if named is not None:
        return named
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet", ".pq"):
        stored = FORMATS[suffix](path)
        array = stored.x.numpy()
    elif suffix == ".npy":
        try:
            array = native_order(np.load(path, allow_pickle=False))
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    else:
        raise DataError(f"{path}: codes must be a .npy, .csv or .parquet file")
    if array.ndim != 2 or array.shape[1] != latent_dim or array.shape[0] == 0:
        raise DataError(
            f"{path}: expected codes of shape [N, {latent_dim}] with N >= 1, got "
            f"{list(array.shape)}"
        )
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path}: dtype {array.dtype} is not numeric")
    _check_finite(array, path)
    return array
