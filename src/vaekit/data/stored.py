"""Stored values made a Dataset: the splits, and the transform and likelihood that fit them.

Every reader of user data (:mod:`vaekit.data.files`, :mod:`vaekit.data.tables`) returns a
:class:`Stored`; :func:`make_dataset` makes the splits and the Dataset in one place:

* test: a fixed 10% held out with seed ``TEST_SPLIT_SEED`` (at least one row when N >= 3), as
  the built-in ``digits`` does; validation: ``val_fraction`` of the rest with ``split_seed``;
* arrays whose every value is 0 or 1 (any dtype): support binary, Bernoulli by default;
* other uint8 arrays and images: 8-bit levels, ``Dequantize(256)``, support unit-interval
  (16-bit grey images: levels 0..65535, ``Dequantize(65536)``);
* any other numbers (tables, float arrays): ``Standardize`` with the training split's per-column
  mean and standard deviation, support real. The statistics are part of the transform, so they
  are saved in the model's config.json (``data.transform``) and applied again to new data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaekit.data.datasets import Dataset
from vaekit.data.errors import DataError
from vaekit.data.splits import MemmapSplit, Split, native_order, split_indices
from vaekit.data.transforms import Dequantize, Standardize, TableEncoding, Transform

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


def check_finite(x: np.ndarray, path: Path) -> None:
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
    """The Dataset of a reader's ``stored`` values ``[N, *shape]``: the splits and the
    transform, support and likelihood that fit them (see the module doc). ``in_memory``: an
    array read into memory (True), left memory-mapped (False) or by its size (None)."""
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
        check_finite(x, path)
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


def array_dataset(
    X: np.ndarray, val_fraction: float, seed: int, schema: list | None = None
) -> Dataset:
    """An in-memory array ``X [N, *shape]`` as training sees a user's file (what
    ``VAEEstimator.fit`` trains on): train and validation splits (``val_fraction``, ``seed``;
    the test split is the validation one), the transform and likelihood that fit its values
    (:func:`describe_values`), or for a mixed-type table's encoded rows (``schema`` its
    columns) the tabular ones."""
    n = X.shape[0]
    shape = tuple(int(d) for d in X.shape[1:])
    train_rows, val_rows = split_indices(n, val_fraction, int(seed))
    if len(train_rows) == 0:
        raise ValueError(f"X has {n} rows: too few to train on after holding out validation")
    stored = torch.from_numpy(np.array(X))  # a private, writable copy
    if schema is None:
        transform, support, likelihood, levels = describe_values(X, train_rows.numpy(), shape)
    else:
        transform, support, likelihood, levels = TableEncoding(), "table", "tabular", None
    val = Split(stored[val_rows])
    return Dataset(
        name="X",
        shape=shape,
        train=Split(stored[train_rows]),
        val=val,
        test=val,
        transform=transform,
        support=support,
        default_likelihood=likelihood,
        num_levels=levels,
        description=f"an array of {n} rows",
        schema=schema,
    )
