"""Results written in the user's units: tables (CSV, Parquet), ``.npy`` arrays and folders of
8-bit PNG images, each written atomically; a folder whole or not at all."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.data.errors import DataError
from vaekit.data.files import is_number
from vaekit.data.transforms import Transform, integer_levels, run_transform
from vaekit.outputs import output_names, write_folder
from vaekit.rundir import atomic_write_bytes


def column_names(data_info: dict[str, Any]) -> list[str]:
    """The training table's column names, or 1..D for data that was not a table."""
    columns = data_info.get("columns")
    if columns:
        return list(columns)
    return [str(j + 1) for j in range(math.prod(int(d) for d in data_info["shape"]))]


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
        header = [] if all(is_number(c) for c in columns) else [list(columns)]
        atomic_write_bytes(path, csv_bytes(header + body))
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
    atomic_write_bytes(path, buffer.getvalue())
    return path


def write_npy(path: str | Path, values: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values, dtype=np.float32), allow_pickle=False)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def to_8bit(values: np.ndarray, transform: Transform, support: str | None) -> np.ndarray:
    """Data-unit images ``[N, C, H, W]`` -> uint8 for PNG: levels 0..L-1 scaled to 0..255
    and rounded; probabilities of binary data times 255."""
    levels = integer_levels(transform)
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
