"""Dataset registry: name -> loader. ``load_dataset`` is the one entry point for names and paths.

A path is a pack (:mod:`vaekit.data.pack`), or user data (:func:`load_path`): read by the
numeric readers of :mod:`vaekit.data.files`, or, for a table with words or missing cells, as a
mixed-type table (:mod:`vaekit.data.tables`). ``vaekit datasets`` prints :func:`dataset_table`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vaekit.data.builtin import builtin_entries
from vaekit.data.datasets import Dataset, DatasetEntry
from vaekit.data.errors import DataError
from vaekit.data.files import FORMATS, read_csv, read_image_folder, read_parquet, take_label_column
from vaekit.data.foreign import load_foreign
from vaekit.data.pack import is_pack, read_pack
from vaekit.data.splits import Split, split_train_val
from vaekit.data.stored import make_dataset
from vaekit.data.tables import load_table
from vaekit.data.transforms import Dequantize
from vaekit.support.spelling import spell

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetEntry",
    "dataset_table",
    "load_dataset",
    "load_path",
    "register",
]

DATASETS: dict[str, DatasetEntry] = {}


def register(entry: DatasetEntry) -> None:
    DATASETS[entry.name] = entry


def _looks_like_path(name: str) -> bool:
    return Path(name).suffix.lower() in (*FORMATS, ".tar") or "/" in name or Path(name).exists()


def load_dataset(
    name_or_path: str,
    data_dir: str | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    image_size: list[int] | None = None,
    *,
    mirrors: list[str] | None = None,
    progress: bool = True,
    in_memory: bool | None = None,
    label_column: str | None = None,
    columns: dict[str, str] | None = None,
) -> Dataset:
    """Load a registered dataset by name, or user data from a path.

    ``name_or_path``: a name from ``DATASETS`` (see ``vaekit datasets``), or a folder of
    images, a ``.npy``/``.npz`` array file, a ``.csv``/``.parquet`` table.
    ``data_dir``: where a built-in set's files are looked for first.
    ``val_fraction``/``split_seed``: the validation split held out from the training split.
    ``image_size``: [H, W] to resize/crop an image folder to (pixels).
    ``label_column``: a table's column of integer class labels (taken out of the features).
    ``columns``: a table's column types that replace the inferred ones (name -> type).
    ``mirrors``: base URLs replacing a built-in set's download mirrors (also ``$VAEKIT_MIRROR``).
    ``in_memory``: for arrays, force (True) or forbid (False) reading them into memory; by
    default files over ``vaekit.data.stored.IN_MEMORY_MAX_BYTES`` are streamed from disk.
    """
    if name_or_path in DATASETS:
        for given, flag, field, what in (
            (image_size, "--image-size", "image_size", "image folders"),
            (label_column, "--label-column", "label_column", "CSV/Parquet tables"),
            (columns or None, "--column-type", "columns", "CSV/Parquet tables"),
        ):
            if given is not None:
                raise DataError(f"{spell(flag, field)} applies to {what}, not to {name_or_path!r}")
        options = {"mirrors": mirrors, "progress": progress} if name_or_path != "digits" else {}
        return DATASETS[name_or_path].loader(
            data_dir=data_dir, val_fraction=val_fraction, split_seed=split_seed, **options
        )
    if _looks_like_path(name_or_path):
        if is_pack(Path(name_or_path).expanduser()):  # the split was made when it was packed
            return read_pack(Path(name_or_path).expanduser())
        if (other := load_foreign(name_or_path, val_fraction, split_seed)) is not None:
            return other  # tar shards or a Hugging Face folder, written by other tools
        return load_path(
            name_or_path, val_fraction, split_seed, image_size, in_memory, label_column, columns
        )
    raise DataError(
        f"{spell('--data', 'dataset')} {name_or_path!r}: not a registered dataset "
        f"({', '.join(sorted(DATASETS))}; see "
        "`vaekit datasets`) and no such file or folder"
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
    """A Dataset from a user file or folder (:mod:`vaekit.data.files`, splits and transform
    as :mod:`vaekit.data.stored` makes them). A table with words or missing cells, or given
    ``columns`` types, is a mixed-type table (:mod:`vaekit.data.tables`)."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise DataError(f"{spell('--data', 'dataset')} {path}: no such file or folder")
    if path.is_dir():
        reader = read_image_folder
    else:
        reader = FORMATS.get(path.suffix.lower())
        if reader is None:
            raise DataError(
                f"{spell('--data', 'dataset')} {path}: unknown format {path.suffix!r}; expected "
                f"a folder of images or one of {', '.join(sorted(FORMATS))}"
            )
        if image_size is not None:
            raise DataError(
                f"{spell('--image-size', 'image_size')} applies to image folders, not {path.name}"
            )
    table = reader in (read_csv, read_parquet)
    if label_column is not None and not table:
        raise DataError(
            f"{spell('--label-column', 'label_column')} applies to CSV/Parquet tables, not "
            f"{path.name}"
        )
    if columns and not table:
        raise DataError(f"{spell('--column-type', 'columns')} applies to CSV/Parquet tables")
    if columns:  # typed columns: the mixed-type path, whatever the cells hold
        return load_table(path, columns, val_fraction, split_seed, label_column)
    try:
        stored = reader(path, image_size=image_size)
    except DataError:
        # Words or missing cells: a mixed-type table. One the numeric reader refused for
        # another reason (a ragged row, an empty file) is refused by that path too, or is
        # all numbers after all (None): the numeric reader's error stands.
        dataset = load_table(path, None, val_fraction, split_seed, label_column) if table else None
        if dataset is None:
            raise
        return dataset
    if label_column is not None:
        stored = take_label_column(path, stored, label_column)
    return make_dataset(path, stored, val_fraction, split_seed, in_memory)


def dataset_table(data_dir: str | None = None) -> str:
    """A plain-text table of every registered dataset: name, shape, size (examples), support,
    default likelihood, and where its files were found (nothing is downloaded)."""
    header = ("name", "shape", "size (examples)", "support", "default likelihood", "found")
    rows = [header]
    for entry in DATASETS.values():
        if entry.locate is None:
            found = "built in"
        else:
            where = entry.locate(data_dir)
            found = where if where is not None else "not found (downloaded on first use)"
        shape = "x".join(map(str, entry.shape))
        rows.append((entry.name, shape, entry.size, entry.support, entry.default_likelihood, found))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _load_digits(data_dir: str | None, val_fraction: float, split_seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.uint8).unsqueeze(1)  # [1797, 1, 8, 8], 0..16
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    # sklearn ships no test split: hold out a fixed, seeded 300 examples (seed 1234).
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1234))
    test_idx, rest = order[:300].sort().values, order[300:].sort().values
    train, val = split_train_val(x[rest], y[rest], val_fraction, split_seed)
    return Dataset(
        name="digits",
        shape=(1, 8, 8),
        train=train,
        val=val,
        test=Split(x[test_idx], y[test_idx]),
        transform=Dequantize(levels=17),
        support="unit-interval",
        default_likelihood="gaussian-learned",
        num_levels=17,
        description="scikit-learn's 8x8 handwritten digits (17 grey levels), dequantised",
        extra={"classes": [str(d) for d in range(10)]},
    )


register(
    DatasetEntry(
        name="digits",
        loader=_load_digits,
        shape=(1, 8, 8),
        size="1797 (1347 train / 150 val / 300 test)",
        support="unit-interval",
        default_likelihood="gaussian-learned",
        description="scikit-learn's 8x8 digits, 17 grey levels, uniformly dequantised; offline",
    )
)
for _entry in builtin_entries():
    register(_entry)
