"""New data for a trained model: read like ``train`` reads it, and checked to be on the
training data's scale (:mod:`vaekit.data.scale`); results go back in the user's units through
:mod:`vaekit.data.writers`.

``read_new_data(path, data_info)`` reads an image folder, a ``.npy``/``.npz`` array or a
CSV/Parquet table (the readers of :mod:`vaekit.data.files`; a model of a mixed-type table
reads it through :mod:`vaekit.data.tables`), and returns the stored values
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
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.data.datasets import Dataset
from vaekit.data.errors import DataError
from vaekit.data.files import FORMATS, read_csv_rows, read_image_folder, take_label_column
from vaekit.data.images import list_images
from vaekit.data.scale import check_scale
from vaekit.data.splits import Split, native_order
from vaekit.data.stored import check_finite
from vaekit.data.tables import label_cells, read_new_table
from vaekit.data.transforms import integer_levels, run_transform
from vaekit.distributions.tabular import as_columns

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
    unknown_categories: str = "error",
) -> NewData:
    """Read new data for a model trained on ``data_info`` (see the module doc); for a model
    of a mixed-type table, ``columns`` (its ``model.columns``) encode the table's rows
    (``vaekit.data.tables``; ``unknown_categories``: what a category training never saw
    becomes, an error or a missing cell)."""
    info = data_info or {}
    if columns:
        return new_table_data(path, columns, ood_column, info, unknown_categories)
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
        trained = integer_levels(transform)
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
    check_finite(x, path)
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


def new_table_data(
    path: str | Path,
    schema: list,
    ood_column: str = OOD_COLUMN,
    data_info: dict | None = None,
    unknown_categories: str = "error",
) -> NewData:
    """A mixed-type table's encoded rows (:func:`vaekit.data.tables.read_new_table`) as
    :class:`NewData`, under the run's ``schema``; a column ``ood_column`` of 0/1 that the
    schema does not model gives the out-of-distribution labels, and the training table's
    label column (``data_info``'s ``label_column``), where present, the class labels."""
    table, x = read_new_table(path, schema, unknown_categories)
    info = data_info or {}
    label_column, labels = info.get("label_column"), None
    if label_column is not None and label_column in table.names:
        labels = label_cells(table, label_column, info.get("label_classes"))
    ood = None
    if ood_column in table.names and ood_column not in {c.name for c in as_columns(schema)}:
        j = table.names.index(ood_column)
        bad = next((i for i, c in enumerate(table.cells[j]) if c not in ("0", "1")), None)
        if bad is not None:
            raise DataError(
                f"{table.path}: row {table.lines[bad]}, column {ood_column!r}: "
                f"{table.cells[j][bad]!r} is not a label 0 or 1"
            )
        ood = torch.tensor([int(c) for c in table.cells[j]])
    return NewData(
        table.path,
        torch.from_numpy(x),
        "table",
        table.path.suffix,
        (x.shape[1],),
        ood=ood,
        labels=labels,
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
    check_finite(array, path)
    return array
