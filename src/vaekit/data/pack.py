"""Packed data: any source vaekit reads, decoded once into ``.npy`` shards that training streams.

``vaekit pack SOURCE -o DIR`` (:func:`write_pack`) loads SOURCE as training would (a built-in
set, an image folder, an array, a table), then writes each split's stored values as
consecutive ``.npy`` shards of about ``shard_mb`` MiB, plus the labels, and a ``pack.json``
that records everything needed to read them back without the source:

* the split (which rows are train, validation and test: the source's own split, made once);
* the transform with its statistics (a table's standardisation, 8-bit dequantisation), the
  support and the default likelihood, as ``vaekit train`` would have chosen them;
* per shard: its file, row count, byte size and SHA-256.

Shards are plain NumPy files, readable by any tool (``np.load(f, mmap_mode="r")``).

Reading (:func:`read_pack`, what ``--data DIR`` does for a pack) reads every shard's header and
presents each split as one streamed :class:`~vaekit.data.splits.MemmapSplit` over a
:class:`~vaekit.data.shard_reader.ShardedArray`, whose rows are read with explicit file reads
(no memory map): memory stays bounded (about three streaming shards and a batch) whatever the
data's size, and the exactly-once, same-order and mid-epoch resume guarantees of that path
hold unchanged. File sizes are checked at every open, and each shard's SHA-256 once per
process before its first rows are used (one extra read of the shard, in the read-ahead
thread while training); :func:`verify_pack` (``vaekit pack --verify DIR``) checks them all.

Interrupted packs: ``pack.json`` is written last, atomically, so a folder without it is never
taken for a complete pack. Progress is recorded in ``pack.partial.json`` after every shard;
running the same command again keeps the shards whose checksums verify and writes the rest.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit._version import __version__
from vaekit.data.datasets import Dataset
from vaekit.data.errors import DataError
from vaekit.data.shard_reader import NpyFile, ShardedArray
from vaekit.data.splits import MemmapSplit, Split
from vaekit.data.tar_shards import TarArray, TarIndex, npy_bytes, tar_bytes
from vaekit.data.transforms import transform_from_dict
from vaekit.rundir import atomic_write_bytes, atomic_write_json, fsync_dir

PACK_FILE = "pack.json"
PARTIAL_FILE = "pack.partial.json"
FORMAT = "vaekit-pack"
FORMAT_VERSION = 1
DEFAULT_SHARD_MB = 64.0
LAYOUTS = ("npy", "webdataset")
SPLITS = ("train", "val", "test")


def is_pack(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a complete pack."""
    return (Path(path) / PACK_FILE).is_file()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stored_dtype(dataset: Dataset) -> np.dtype:
    first = dataset.train.read(0, 1)
    return np.dtype(str(first.numpy().dtype))


def _settings(dataset: Dataset, source: str, shard_mb: float, layout: str) -> dict[str, Any]:
    """What identifies a pack's content: a resumed pack must match it exactly."""
    return {
        "source": source,
        "shard_mb": shard_mb,
        "layout": layout,
        "vaekit_version": __version__,
        "transform": dataset.transform.to_dict(),
        "splits_rows": {name: len(dataset.split(name)) for name in SPLITS},
        "shape": list(dataset.shape),
    }


def write_pack(
    dataset: Dataset,
    out: str | Path,
    source: str,
    shard_mb: float = DEFAULT_SHARD_MB,
    log: Callable[[str], None] = print,
    layout: str = "npy",
) -> Path:
    """Write ``dataset``'s splits into ``out`` as shards and a ``pack.json``.

    ``layout``: ``"npy"`` (``SPLIT-00000.npy`` shards of rows) or ``"webdataset"``
    (``SPLIT/shard-000000.tar``, one ``KEY.npy`` + ``KEY.cls`` pair per example; see
    :mod:`vaekit.data.tar_shards`). ``out`` must not exist, or hold an interrupted pack of the
    same source, settings, transform and vaekit version (then the shards already written and
    verified are kept). ``source`` is recorded as given. Returns the pack folder. Raises
    :class:`DataError` for a folder that is not vaekit's."""
    if layout not in LAYOUTS:
        raise DataError(f"--format {layout!r}: choose one of {', '.join(LAYOUTS)}")
    out = Path(out)
    settings = _settings(dataset, source, shard_mb, layout)
    done: dict[str, dict[str, Any]] = {}
    if out.exists():
        partial = out / PARTIAL_FILE
        if is_pack(out):
            raise DataError(f"-o {out}: already a complete pack; choose another folder")
        if not partial.is_file():
            raise DataError(
                f"-o {out}: exists and is not an interrupted vaekit pack; choose a new folder"
            )
        record = json.loads(partial.read_text())
        theirs = record.get("settings") or {}
        if theirs != settings:
            differ = [key for key in settings if theirs.get(key) != settings[key]]
            raise DataError(
                f"-o {out}: holds an interrupted pack with another {', '.join(differ)} "
                f"({', '.join(f'{k} {theirs.get(k)!r}' for k in differ if k != 'transform')}"
                "); choose a new folder"
            )
        for key, entry in record.get("files", {}).items():
            path = out / entry["file"]
            if path.is_file() and _sha256(path) == entry["sha256"]:
                done[key] = entry
        log(f"resuming the pack in {out}: {len(done)} file(s) already written and verified")
    else:
        out.mkdir(parents=True)
    dtype = _stored_dtype(dataset)
    row_bytes = max(1, math.prod(dataset.shape) * dtype.itemsize)
    rows_per_shard = max(1, int(shard_mb * (1 << 20)) // row_bytes)
    splits: dict[str, Any] = {}
    for name in SPLITS:
        split = dataset.split(name)
        n = len(split)
        shards = []
        labels_all = split.y.numpy() if split.y is not None else None
        for index, start in enumerate(range(0, n, rows_per_shard)):
            stop = min(n, start + rows_per_shard)
            key = f"{name}-{index:05d}.npy" if layout == "npy" else f"{name}/shard-{index:06d}.tar"
            if key not in done:
                values = split.read(start, stop).numpy()
                if layout == "npy":
                    blob = npy_bytes(values)
                else:
                    blob = tar_bytes(_samples(values, start, labels_all))
                atomic_write_bytes(out / key, blob)
                done[key] = {
                    "file": key,
                    "rows": stop - start,
                    "bytes": len(blob),
                    "sha256": hashlib.sha256(blob).hexdigest(),
                }
                atomic_write_json(out / PARTIAL_FILE, {"settings": settings, "files": done})
            shards.append(done[key])
        labels = None
        if split.y is not None:
            key = f"{name}-labels.npy"
            blob = npy_bytes(split.y.numpy().astype(np.int64))
            atomic_write_bytes(out / key, blob)
            labels = {"file": key, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
        splits[name] = {"rows": n, "shards": shards, "labels": labels}
        log(f"  {name}: {n} rows in {len(shards)} shard(s)")
    info = dataset.info()
    descriptor = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vaekit_version": __version__,
        "layout": layout,
        "source": source,
        "description": dataset.description,
        "shape": list(dataset.shape),
        "dtype": dtype.str,
        "support": dataset.support,
        "default_likelihood": dataset.default_likelihood,
        "num_levels": dataset.num_levels,
        "transform": info["transform"],
        "extra": {k: v for k, v in dataset.extra.items() if _is_json(v)},
        "splits": splits,
    }
    atomic_write_json(out / PACK_FILE, descriptor)  # last: only now does it look complete
    (out / PARTIAL_FILE).unlink(missing_ok=True)
    fsync_dir(out)
    return out


def _samples(values: np.ndarray, start: int, labels: np.ndarray | None):
    """WebDataset samples of rows ``start...``: key = the row's index in its split."""
    for i, row in enumerate(values):
        fields = {"npy": npy_bytes(row)}
        if labels is not None:
            fields["cls"] = str(int(labels[start + i])).encode()
        yield f"{start + i:09d}", fields


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _descriptor(folder: Path) -> dict[str, Any]:
    path = folder / PACK_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"{path}: not a readable pack description ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{path}: not a vaekit pack (format {FORMAT!r} expected)")
    if data.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path}: pack format version {data.get('format_version')!r}; this vaekit reads "
            f"version {FORMAT_VERSION}"
        )
    for key, kind in (("splits", dict), ("shape", list), ("transform", dict), ("dtype", str)):
        if not isinstance(data.get(key), kind):
            raise DataError(f"{path}: field {key!r} must be a {kind.__name__}")
    return data


def _shard_path(folder: Path, entry: Any, what: str) -> Path:
    """A recorded shard's path, refused unless it is inside the pack and of its size."""
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise DataError(f"{folder / PACK_FILE}: {what} has no file name")
    name = entry["file"]
    path = folder / name
    parts = Path(name).parts
    if len(parts) > 2 or ".." in parts or Path(name).is_absolute() or not path.is_file():
        raise DataError(f"{path}: missing shard ({what}); the pack is incomplete")
    if path.stat().st_size != entry.get("bytes"):
        raise DataError(
            f"{path}: {path.stat().st_size} bytes, the pack records {entry.get('bytes')} "
            "(truncated or replaced); run `vaekit pack --verify` or pack again"
        )
    return path


def _unlisted(folder: Path, data: dict[str, Any]) -> None:
    """Refuse shard files the index does not list (added or left after packing): data the
    pack's split and checksums know nothing of."""
    listed = {
        str(shard.get("file"))
        for entry in data["splits"].values()
        if isinstance(entry, dict)
        for shard in entry.get("shards") or []
        if isinstance(shard, dict)
    }
    pattern = "*/shard-*.tar" if data.get("layout") == "webdataset" else "*-[0-9]*.npy"
    for path in sorted(folder.glob(pattern)):
        if path.relative_to(folder).as_posix() not in listed:
            raise DataError(
                f"{path}: a shard that {folder / PACK_FILE} does not list (added after "
                "packing?); remove it or pack again"
            )


def _open_npy(folder: Path, entry: Any, what: str) -> NpyFile:
    """A recorded ``.npy`` shard, its header read (its rows are read when asked for, after
    its SHA-256 is checked against the record)."""
    shard = NpyFile.open(_shard_path(folder, entry, what))
    shard.sha256 = entry.get("sha256") if isinstance(entry, dict) else None
    return shard


def read_pack(folder: str | Path) -> Dataset:
    """The Dataset stored in a pack folder: every split streamed from its shards (see the
    module docstring)."""
    folder = Path(folder)
    data = _descriptor(folder)
    _unlisted(folder, data)
    shape = tuple(int(d) for d in data["shape"])
    made: dict[str, MemmapSplit | Split] = {}
    for name in SPLITS:
        entry = data["splits"].get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("shards"), list):
            raise DataError(f"{folder / PACK_FILE}: split {name!r} is missing")
        labels = None
        if entry.get("labels") is not None:
            labels = _open_npy(folder, entry["labels"], f"{name} labels")[:]
        if not entry["shards"]:
            made[name] = Split(torch.empty((0, *shape), dtype=_torch_dtype(data["dtype"])))
            continue
        if data.get("layout", "npy") == "webdataset":
            array: ShardedArray | TarArray = _tar_array(folder, entry["shards"], name, data)
        else:
            array = ShardedArray(_npy_shards(folder, entry["shards"], name, data))
        if labels is not None and len(labels) != len(array):
            raise DataError(f"{folder}: {name} has {len(array)} rows but {len(labels)} labels")
        made[name] = MemmapSplit(array, np.arange(len(array)), labels)  # type: ignore[arg-type]
    return Dataset(
        name=str(folder),
        shape=shape,
        train=made["train"],
        val=made["val"],
        test=made["test"],
        transform=transform_from_dict(data["transform"]),
        support=data.get("support", "real"),
        default_likelihood=data.get("default_likelihood", "gaussian-learned"),
        num_levels=data.get("num_levels"),
        description=f"{folder}: a pack of {data.get('source')!r} (streamed from its shards)",
        extra=dict(data.get("extra") or {}) | {"source": "pack"},
    )


def _npy_shards(folder: Path, entries: list, name: str, data: dict) -> list[NpyFile]:
    shape = tuple(int(d) for d in data["shape"])
    shards = [_open_npy(folder, shard, f"{name} shard {i}") for i, shard in enumerate(entries)]
    for entry, shard in zip(entries, shards, strict=True):
        if tuple(shard.shape[1:]) != shape or shard.dtype.str != data["dtype"]:
            raise DataError(
                f"{folder / entry['file']}: shape {list(shard.shape[1:])} "
                f"{shard.dtype.str}, the pack records {list(shape)} {data['dtype']}"
            )
    return shards


def _tar_array(folder: Path, entries: list, name: str, data: dict) -> TarArray:
    """The split's tar shards as one array; each shard is indexed when first read, and
    refused then unless it holds the rows the pack records."""
    paths = [_shard_path(folder, shard, f"{name} shard {i}") for i, shard in enumerate(entries)]
    rows = [int(shard.get("rows", -1)) for shard in entries]

    def check(i: int, index: TarIndex) -> None:
        if _sha256(paths[i]) != entries[i].get("sha256"):
            raise DataError(
                f"{paths[i]}: SHA-256 does not match pack.json (the shard changed after "
                "packing); run `vaekit pack --verify` on the pack, or pack again"
            )
        if len(index) != rows[i]:
            raise DataError(
                f"{paths[i]}: {len(index)} examples, the pack records {rows[i]}; "
                "run `vaekit pack --verify` or pack again"
            )

    shape = tuple(int(d) for d in data["shape"])
    return TarArray(paths, rows, shape, np.dtype(data["dtype"]), check, read_labels=False)


def _torch_dtype(text: str) -> torch.dtype:
    return torch.from_numpy(np.zeros(1, dtype=np.dtype(text).newbyteorder("="))).dtype


def verify_pack(folder: str | Path) -> list[str]:
    """Check every shard's size and SHA-256 against ``pack.json``; returns the problems
    found (empty: the pack is intact)."""
    folder = Path(folder)
    data = _descriptor(folder)
    problems = []
    for name in SPLITS:
        entry = data["splits"].get(name) or {}
        files = list(entry.get("shards") or [])
        if entry.get("labels"):
            files.append(entry["labels"])
        for item in files:
            path = folder / str(item.get("file"))
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif _sha256(path) != item.get("sha256"):
                problems.append(f"{path}: SHA-256 does not match pack.json")
    return problems
