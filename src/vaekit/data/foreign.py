"""Data written by other tools, read in place: WebDataset tar shards and Hugging Face
``datasets`` folders (``save_to_disk``). Only the reading is vaekit's.

* Tar shards (:func:`load_tar_shards`): a ``.tar`` file, a folder of them, a glob
  (``data/shard-*.tar``) or a WebDataset brace range (``data/shard-{000000..000009}.tar``).
  Each example is ``KEY.npy``, ``KEY.png`` or ``KEY.jpg`` with an optional ``KEY.cls`` label
  (:mod:`vaekit.data.tar_shards`). Every shard's member headers are walked once at the start
  (to count the examples and read the labels); values are read and decoded only when a batch
  needs them, so memory stays bounded.
* Hugging Face (:func:`load_hf`): a folder made by ``Dataset.save_to_disk`` or
  ``DatasetDict.save_to_disk``, read offline with ``datasets.load_from_disk`` (install with
  ``pip install 'vaekit[hf]'``). Its Arrow files are memory-mapped, and rows are decoded
  when a batch needs them. The values come from its first image column (else a column named
  ``image``, ``img``, ``pixel_values`` or ``x``), the labels from ``label``/``labels``.

The split, as for any file (``vaekit.data.files``): test is a fixed 10% (seed
``TEST_SPLIT_SEED``), validation ``val_fraction`` of the rest (``split_seed``); a
``DatasetDict`` with ``train``/``validation``/``test`` splits keeps its own. 8-bit images
are dequantised (256 levels); ``.npy`` values are described as a ``.npy`` file would be.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.data.datasets import Dataset
from vaekit.data.errors import DataError
from vaekit.data.splits import MemmapSplit, split_indices
from vaekit.data.stored import TEST_FRACTION, TEST_SPLIT_SEED, describe_values
from vaekit.data.tar_shards import TarArray
from vaekit.data.transforms import Dequantize

HF_INSTALL = "pip install 'vaekit[hf]'"
_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


def tar_shard_paths(spec: str) -> list[Path] | None:
    """The shards ``spec`` names, sorted (a brace range keeps its order), or None when it
    names no tar shards (not a ``.tar`` path, glob or folder of them)."""
    match = _BRACES.search(spec)
    if match and spec.endswith(".tar"):
        lo, hi = match.group(1), match.group(2)
        width = len(lo)
        return [
            Path(spec[: match.start()] + f"{i:0{width}d}" + spec[match.end() :]).expanduser()
            for i in range(int(lo), int(hi) + 1)
        ]
    path = Path(spec).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.tar"))
        return found or None
    if spec.endswith(".tar"):
        if glob.has_magic(spec):
            return [Path(p) for p in sorted(glob.glob(str(path)))] or None
        return [path]
    return None


def is_hf_folder(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``datasets``' ``save_to_disk``."""
    return path.is_dir() and any(
        (path / name).is_file() for name in ("dataset_info.json", "dataset_dict.json")
    )


def load_foreign(spec: str, val_fraction: float, split_seed: int) -> Dataset | None:
    """Tar shards or a Hugging Face folder named by ``spec``; None when it is neither."""
    if is_hf_folder(Path(spec).expanduser()):
        return load_hf(Path(spec).expanduser(), val_fraction, split_seed)
    paths = tar_shard_paths(spec)
    if paths is None:
        return None
    return load_tar_shards(spec, paths, val_fraction, split_seed)


def _split_rows(n: int, val_fraction: float, split_seed: int, where: str) -> dict[str, np.ndarray]:
    n_test = round(n * TEST_FRACTION) or (1 if n >= 3 else 0)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(TEST_SPLIT_SEED))
    test, rest = order[:n_test].sort().values, order[n_test:].sort().values
    train_pos, val_pos = split_indices(len(rest), val_fraction, split_seed)
    rows = {"train": rest[train_pos].numpy(), "val": rest[val_pos].numpy(), "test": test.numpy()}
    if len(rows["train"]) == 0 or len(rows["test"]) == 0:
        raise DataError(f"{where}: {n} examples are too few to split into train and test")
    return rows


def _describe(array: Any, rows: np.ndarray, decoded_images: bool):
    shape = tuple(int(d) for d in array.shape[1:])
    if decoded_images:  # pixels: their levels, as an image folder's
        levels = 65536 if array.dtype == np.uint16 else 256
        return Dequantize(levels), "unit-interval", "gaussian-learned", levels
    return describe_values(array, rows, shape)


def _dataset(where: str, array: Any, labels, splits: dict[str, np.ndarray], images: bool, kind):
    transform, support, likelihood, levels = _describe(array, splits["train"], images)
    made = {name: MemmapSplit(array, rows, labels) for name, rows in splits.items()}
    return Dataset(
        name=where,
        shape=tuple(int(d) for d in array.shape[1:]),
        train=made["train"],
        val=made["val"],
        test=made["test"],
        transform=transform,
        support=support,
        default_likelihood=likelihood,
        num_levels=levels,
        description=f"{where}: {kind} (streamed)",
        extra={"source": kind},
    )


def load_tar_shards(spec: str, paths: list[Path], val_fraction: float, split_seed: int) -> Dataset:
    """WebDataset tar shards as a streamed Dataset (see the module docstring)."""
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: missing shard (named by {spec!r})")
    array = TarArray(paths)  # every shard's headers walked once, nothing decoded but row 0
    rows = _split_rows(len(array), val_fraction, split_seed, spec)
    images = array.indexes[0] is not None and array.indexes[0].exts[0] != "npy"
    return _dataset(spec, array, array.labels(), rows, images, "WebDataset tar shards")


class HFArray:
    """One column of a Hugging Face dataset seen as an array ``[N, *shape]``: ``array[rows]``
    decodes those rows only (images as ``[C, H, W]``)."""

    def __init__(self, table: Any, column: str, where: str) -> None:
        self.table, self.column, self.where = table, column, where
        first = self._decode([0])
        self.shape = (len(table), *first.shape[1:])
        self.dtype = first.dtype
        self.itemsize, self.ndim = first.dtype.itemsize, len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def _decode(self, rows: list[int]) -> np.ndarray:
        values = self.table[rows][self.column]
        out = []
        for value in values:
            if hasattr(value, "mode"):  # a PIL image
                from vaekit.data.images import image_values

                pixels = image_values(Path(self.where), value)
                value = pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)
            out.append(np.asarray(value))
        try:
            return np.stack(out)
        except ValueError:
            raise DataError(f"{self.where}: column {self.column!r} rows differ in shape") from None

    def __getitem__(self, rows: Any) -> np.ndarray:
        if not isinstance(rows, np.ndarray):
            rows = np.arange(self.shape[0])[rows]
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) == 0:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        return self._decode(rows.tolist())


def _columns(table: Any, where: Path) -> tuple[str, str | None, bool]:
    features = table.features
    names = list(features)
    image = next((n for n in names if type(features[n]).__name__ == "Image"), None)
    value = image or next((n for n in ("image", "img", "pixel_values", "x") if n in names), None)
    if value is None:
        raise DataError(
            f"{where}: no image column and none named image, img, pixel_values or x "
            f"(columns: {', '.join(names)})"
        )
    label = next((n for n in ("label", "labels") if n in names), None)
    return value, label, image is not None


def load_hf(path: Path, val_fraction: float, split_seed: int) -> Dataset:
    """A Hugging Face ``save_to_disk`` folder as a streamed Dataset (module docstring)."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{path}: a Hugging Face datasets folder; reading it needs the `datasets` "
            f"package: {HF_INSTALL}"
        ) from None
    loaded = datasets.load_from_disk(str(path))
    where = str(path)
    if isinstance(loaded, datasets.DatasetDict):
        parts = {"train": "train", "val": "validation", "test": "test"}
        if "train" not in loaded:
            raise DataError(f"{path}: no 'train' split (has {', '.join(loaded)})")
        if all(name in loaded for name in parts.values()):
            return _hf_splits(loaded, parts, where)
        loaded = loaded["train"]
    value, label, images = _columns(loaded, path)
    array = HFArray(loaded, value, where)
    labels = np.asarray(loaded[label], dtype=np.int64) if label else None
    rows = _split_rows(len(array), val_fraction, split_seed, where)
    return _dataset(where, array, labels, rows, images, "Hugging Face dataset")


def _hf_splits(loaded: Any, parts: dict[str, str], where: str) -> Dataset:
    """A DatasetDict's own train/validation/test splits, concatenated into one array."""
    import datasets

    tables = [loaded[parts[name]] for name in ("train", "val", "test")]
    joined = datasets.concatenate_datasets(tables)
    value, label, images = _columns(joined, Path(where))
    array = HFArray(joined, value, where)
    labels = np.asarray(joined[label], dtype=np.int64) if label else None
    bounds = np.cumsum([0, *map(len, tables)])
    rows = {
        name: np.arange(bounds[i], bounds[i + 1]) for i, name in enumerate(("train", "val", "test"))
    }
    return _dataset(where, array, labels, rows, images, "Hugging Face dataset")
