"""Built-in image sets: MNIST, Fashion-MNIST, KMNIST (IDX) and CIFAR-10 (binary version).

Where the files are looked for, in order (the first place holding a complete set wins):

1. ``data_dir`` (``--data-dir DIR``), the folder itself and ``DIR/<name>``;
2. ``$VAEKIT_DATA_DIR`` and ``$VAEKIT_DATA_DIR/<name>``;
3. the user cache ``~/.cache/vaekit/<name>`` (``$XDG_CACHE_HOME/vaekit/<name>``);
4. well-known system paths, ``/usr/share/datasets/<name>`` (Debian's
   ``dataset-fashion-mnist`` installs ``/usr/share/datasets/fashion-mnist``);
5. otherwise the files are downloaded from the canonical mirrors into the cache
   (see :mod:`vaekit.data.download`); offline, the error lists every place looked.

Verification: every file is checked against a published checksum before it is used, and a
folder whose files do not match is refused (the error names the file and both hashes), never
skipped in favour of another copy. MNIST and Fashion-MNIST files are checked against the
SHA-256 of their *decompressed* bytes (the canonical content; repackaged ``.gz`` files
differ); KMNIST's ``.gz`` files against the MD5 of the files as CODH serves them (the
publisher's own README lists no checksum; these are the MD5s recorded with torchvision's
KMNIST loader, which downloads the same four files), so only those ``.gz`` files are accepted;
CIFAR-10's tarball against the MD5 its authors publish (an extracted folder has no published
checksum and is refused). Every IDX file is also checked by its header, sizes and label range.
CIFAR-10 is read from the *binary* version (raw bytes), never from the pickled Python version.

Hashing a 47 MB file takes about a second, so verified files are remembered in
``<cache>/verified.json`` by resolved path, size, modification time (ns) and inode together
with the checksum they matched; any change to the file makes it unverified again.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from vaekit.data.datasets import Dataset, DatasetEntry, Split, Support, split_train_val
from vaekit.data.download import cache_dir, fetch, mirror_bases
from vaekit.data.errors import DataError
from vaekit.data.idx import read_bytes, read_idx
from vaekit.data.transforms import Dequantize, DynamicBinarize, Transform
from vaekit.support.spelling import spell

SYSTEM_ROOTS = [Path("/usr/share/datasets")]
# The one Bernoulli draw of the static binarisations: train rows in file order from
# torch.Generator().manual_seed(STATIC_BINARIZATION_SEED), test rows from seed + 1.
STATIC_BINARIZATION_SEED = 20150601

IDX_FILES = {
    "train_x": ("train-images-idx3-ubyte", (60000, 28, 28), None),
    "train_y": ("train-labels-idx1-ubyte", (60000,), 9),
    "test_x": ("t10k-images-idx3-ubyte", (10000, 28, 28), None),
    "test_y": ("t10k-labels-idx1-ubyte", (10000,), 9),
}


@dataclass(frozen=True)
class Source:
    """Where a built-in set's files come from and how each is checked (``hashes``: file key
    -> SHA-256 of the decompressed file)."""

    name: str
    mirrors: list[str]
    files: list[str]  # as downloaded (e.g. "train-images-idx3-ubyte.gz")
    find: Callable[[Path], dict[str, Path] | None]  # complete set in a folder, or None
    check: Callable[[str, Path], None]  # (file name, path) -> raises DataError
    hashes: dict[str, str] = field(default_factory=dict)
    # file key -> MD5 of the file exactly as published (compressed); used where no hash of
    # the decompressed content is published (KMNIST, the CIFAR-10 tarball).
    file_md5: dict[str, str] = field(default_factory=dict)
    classes: tuple[str, ...] = tuple(str(d) for d in range(10))  # label i's name


def candidate_dirs(name: str, data_dir: str | None) -> list[tuple[Path, str]]:
    """Every folder searched for ``name``, in order, with why it is searched."""
    places: list[tuple[Path, str]] = []
    if data_dir:
        why = spell("--data-dir", "data_dir")
        places += [(Path(data_dir), why), (Path(data_dir) / name, why)]
    env = os.environ.get("VAEKIT_DATA_DIR")
    if env:
        places += [(Path(env), "VAEKIT_DATA_DIR"), (Path(env) / name, "VAEKIT_DATA_DIR")]
    places.append((cache_dir() / name, "user cache"))
    places += [(root / name, "system path") for root in SYSTEM_ROOTS]
    return places


VERIFIED_FILE = "verified.json"


def _file_key(path: Path) -> tuple[str, list[int]]:
    """A file's identity for the verification cache: resolved path, [size, mtime_ns, inode]."""
    stat = path.stat()
    return str(path.resolve()), [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _read_verified() -> dict:
    try:
        data = json.loads((cache_dir() / VERIFIED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember_digest(path: Path, kind: str, digest: str) -> None:
    """Record the digest computed for ``path`` as it is now; best effort: an unwritable cache
    only means the file is hashed again next time."""
    from vaekit.rundir import atomic_write_json

    name, stat = _file_key(path)
    data = _read_verified()
    entry = data.get(name)
    if not isinstance(entry, dict) or entry.get("stat") != stat:
        entry = {"stat": stat}
    entry[kind] = digest
    data[name] = entry
    with contextlib.suppress(OSError):
        atomic_write_json(cache_dir() / VERIFIED_FILE, data)


def _digest(path: Path, algorithm: str, decompress: bool) -> str:
    """Hex digest of the file's bytes (or of its gunzipped content), read in 1 MiB chunks."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    try:
        opener = gzip.open if decompress else open
        with opener(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip file ({exc})") from None
    return digest.hexdigest()


def _cached_digest(path: Path, algorithm: str, decompress: bool) -> str:
    """The digest of ``path``, computed once per file state (path, size, mtime, inode)."""
    kind = f"{algorithm}-of-{'content' if decompress else 'file'}"
    name, stat = _file_key(path)
    entry = _read_verified().get(name)
    if isinstance(entry, dict) and entry.get("stat") == stat and isinstance(entry.get(kind), str):
        return entry[kind]
    digest = _digest(path, algorithm, decompress)
    _remember_digest(path, kind, digest)
    return digest


def verify_file(source: Source, key: str, path: Path) -> None:
    """Check one file of ``source`` against its published checksum; a DataError names the
    file and both hashes. A file's digest is computed once per file state (module doc)."""
    if key in source.hashes:
        algorithm, expected = "sha256", source.hashes[key]
        decompress, what = path.suffix == ".gz", "decompressed SHA-256"
    elif key in source.file_md5:
        algorithm, expected, decompress, what = "md5", source.file_md5[key], False, "MD5"
        if path.suffix != ".gz":
            raise DataError(
                f"{path}: {source.name} publishes checksums only for its .gz files "
                f"(MD5 {expected} for {path.name}.gz); an uncompressed copy cannot be verified"
            )
    else:
        raise DataError(f"{path}: no published checksum for this {source.name} file; refusing it")
    actual = _cached_digest(path, algorithm, decompress)
    if actual != expected:
        raise DataError(
            f"{path}: checksum mismatch for {source.name}: {what} {actual}, expected {expected}"
        )


def verify_set(source: Source, found: dict[str, Path]) -> None:
    """Verify every file of a complete local set (raises on the first that fails)."""
    if "folder" in found:  # CIFAR-10 extracted batches: no published checksum covers them
        raise DataError(
            f"{found['folder']}: extracted CIFAR-10 batches have no published checksum; put the "
            f"tarball {CIFAR_TARBALL} (MD5 {CIFAR_MD5}) there instead"
        )
    for key, path in found.items():
        verify_file(source, key, path)


def locate(
    source: Source, data_dir: str | None
) -> tuple[dict[str, Path] | None, list[str], DataError | None]:
    """The first complete local copy whose files all pass their checksums (file key ->
    path), the places looked, and the error of a complete copy that failed (the search stops
    there: a folder with wrong files is refused, not skipped)."""
    looked = []
    for folder, why in candidate_dirs(source.name, data_dir):
        looked.append(f"{folder} ({why})")
        found = source.find(folder) if folder.is_dir() else None
        if found is not None:
            try:
                verify_set(source, found)
            except DataError as exc:
                return None, looked, exc
            return found, looked, None
    return None, looked, None


def obtain(
    source: Source, data_dir: str | None, mirrors: list[str] | None, progress: bool
) -> dict[str, Path]:
    """Locate the verified set, or download it into the cache; a DataError lists every place
    tried, or names the file that failed its checksum."""
    found, looked, problem = locate(source, data_dir)
    if problem is not None:
        raise problem
    if found is not None:
        return found
    target = cache_dir() / source.name
    for filename in source.files:
        if (target / filename).exists():
            continue  # a partial set in the cache: every file is verified again below
        path, errors = fetch(
            filename, target, mirror_bases(source.mirrors, mirrors), partial(source.check, filename)
        )
        if path is None:
            raise DataError(
                f"dataset {source.name!r} not found; looked in {', '.join(looked)}; "
                f"download failed: {'; '.join(errors)}"
            )
    found = source.find(target)
    if found is None:  # pragma: no cover - the checks above make this unreachable
        raise DataError(f"{target}: downloaded files do not form a complete {source.name} set")
    verify_set(source, found)
    return found


# --- IDX sets -----------------------------------------------------------------------------


def find_idx(folder: Path) -> dict[str, Path] | None:
    """The four IDX files (raw or .gz) in ``folder``, or None if any is missing."""
    found = {}
    for key, (stem, _, _) in IDX_FILES.items():
        path = next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)
        if path is None:
            return None
        found[key] = path
    return found


def check_idx_download(source: Source, filename: str, path: Path) -> None:
    """Validate a downloaded ``*.gz`` IDX file (still named ``*.part``) before it may enter
    the cache: its published checksum, then gzip stream, header, sizes and label range."""
    stem = filename.removesuffix(".gz")
    key = next(key for key, spec in IDX_FILES.items() if spec[0] == stem)
    _, shape, max_value = IDX_FILES[key]
    if key in source.file_md5:
        actual = _digest(path, "md5", decompress=False)
        if actual != source.file_md5[key]:
            raise DataError(
                f"{filename}: checksum mismatch: MD5 {actual}, expected {source.file_md5[key]}"
            )
    read_idx(path, source.hashes.get(key), shape, max_value, compressed=filename.endswith(".gz"))


def load_idx_arrays(source: Source, paths: dict[str, Path]) -> dict[str, np.ndarray]:
    arrays = {}
    for key, (_stem, shape, max_value) in IDX_FILES.items():
        arrays[key] = read_idx(paths[key], source.hashes.get(key), shape, max_value)
    return arrays


MNIST = Source(
    name="mnist",
    mirrors=["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
    files=[f"{stem}.gz" for stem, _, _ in IDX_FILES.values()],
    find=find_idx,
    check=lambda filename, path: check_idx_download(MNIST, filename, path),
    hashes={
        "train_x": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train_y": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "test_x": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "test_y": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
)
FASHION_MNIST = Source(
    name="fashion-mnist",
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    mirrors=["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    files=MNIST.files,
    find=find_idx,
    check=lambda filename, path: check_idx_download(FASHION_MNIST, filename, path),
    hashes={
        "train_x": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train_y": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "test_x": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "test_y": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
)
KMNIST = Source(
    name="kmnist",
    # the hiragana お き す つ な は ま や れ を, romanised (plot fonts may lack the glyphs)
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    mirrors=["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
    files=MNIST.files,
    find=find_idx,
    check=lambda filename, path: check_idx_download(KMNIST, filename, path),
    # MD5 of each .gz as served by CODH (as recorded by torchvision's KMNIST loader).
    file_md5={
        "train_x": "bdb82020997e1d708af4cf47b453dcf7",
        "train_y": "e144d726b3acfaa3e44228e80efcd344",
        "test_x": "5c965bf0a639b31b8f53240b1b52f4d7",
        "test_y": "7320c461ea6c1c855c0b718fb2a4b134",
    },
)

# --- CIFAR-10, binary version ------------------------------------------------------------------

CIFAR_TARBALL = "cifar-10-binary.tar.gz"
CIFAR_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # published on www.cs.toronto.edu/~kriz/cifar.html
CIFAR_MEMBERS = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then 3072 pixel bytes (R, G, B planes)


def find_cifar(folder: Path) -> dict[str, Path] | None:
    """The tarball, or an extracted ``cifar-10-batches-bin`` folder, in ``folder``."""
    if (folder / CIFAR_TARBALL).is_file():
        return {"archive": folder / CIFAR_TARBALL}
    for inner in (folder / "cifar-10-batches-bin", folder):
        if all((inner / m).is_file() for m in CIFAR_MEMBERS):
            return {"folder": inner}
    return None


def parse_cifar_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch file -> images uint8 [10000, 3, 32, 32], labels int64 [10000]."""
    if len(data) != 10000 * CIFAR_RECORD:
        raise DataError(f"{where}: expected {10000 * CIFAR_RECORD} bytes, found {len(data)}")
    records = np.frombuffer(data, dtype=np.uint8).reshape(10000, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{where}: label {labels.max()} out of range 0..9")
    return records[:, 1:].reshape(10000, 3, 32, 32), labels


def read_cifar(found: dict[str, Path]) -> dict[str, np.ndarray]:
    """Read the six batches (from the tarball without extracting anything, or a folder)."""
    blobs = {}
    if "archive" in found:
        archive = found["archive"]
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for info in tar:
                    base = info.name.rsplit("/", 1)[-1]
                    if info.isfile() and base in CIFAR_MEMBERS:
                        blobs[base] = tar.extractfile(info).read()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"{archive}: unreadable CIFAR-10 archive ({exc})") from None
        missing = [m for m in CIFAR_MEMBERS if m not in blobs]
        if missing:
            raise DataError(f"{archive}: missing {', '.join(missing)}")
        where = {m: f"{archive}:{m}" for m in CIFAR_MEMBERS}
    else:
        blobs = {m: read_bytes(found["folder"] / m, compressed=False) for m in CIFAR_MEMBERS}
        where = {m: str(found["folder"] / m) for m in CIFAR_MEMBERS}
    parts = [parse_cifar_batch(blobs[m], where[m]) for m in CIFAR_MEMBERS]
    return {
        "train_x": np.concatenate([p[0] for p in parts[:5]]),
        "train_y": np.concatenate([p[1] for p in parts[:5]]),
        "test_x": parts[5][0],
        "test_y": parts[5][1],
    }


def check_cifar_download(filename: str, path: Path) -> None:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != CIFAR_MD5:
        raise DataError(
            f"{filename}: checksum mismatch: MD5 {digest.hexdigest()}, expected {CIFAR_MD5}"
        )


CIFAR10 = Source(
    name="cifar10",
    classes=(
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
    mirrors=["https://www.cs.toronto.edu/~kriz/"],
    files=[CIFAR_TARBALL],
    find=find_cifar,
    check=check_cifar_download,
    file_md5={"archive": CIFAR_MD5},
)

# --- variants: what the model sees, and the likelihood that is honest for it -----------------


@dataclass(frozen=True)
class Variant:
    """How a built-in image set is presented: the transform from stored uint8 levels v to
    model inputs, their support and the honest default likelihood; ``static`` stores one
    binarised draw instead of the levels."""

    suffix: str
    transform: Callable[[], Transform]
    support: Support
    default_likelihood: str
    num_levels: int
    static: bool = False
    note: str = ""


VARIANTS = {
    "": Variant(
        "",
        lambda: Dequantize(256),
        "unit-interval",
        "gaussian-learned",
        256,
        note="8-bit, uniformly dequantised: x = (v + u) / 256, u ~ U[0, 1)",
    ),
    "binarized-dynamic": Variant(
        "-binarized-dynamic",
        lambda: DynamicBinarize(256),
        "binary",
        "bernoulli",
        2,
        note="a fresh Bernoulli(v / 255) draw of every pixel each time an image is used",
    ),
    "binarized-static": Variant(
        "-binarized-static",
        Transform,
        "binary",
        "bernoulli",
        2,
        static=True,
        note=f"one fixed Bernoulli(v / 255) draw (seed {STATIC_BINARIZATION_SEED})",
    ),
}


def static_binarize(x: np.ndarray, seed: int) -> torch.Tensor:
    """One Bernoulli(v / 255) draw of uint8 images ``x [N, ...]`` -> uint8 {0, 1}, in row
    chunks of 10000 from one seeded generator (reproducible, bounded memory)."""
    generator = torch.Generator().manual_seed(seed)
    out = torch.empty(x.shape, dtype=torch.uint8)
    for start in range(0, x.shape[0], 10000):
        v = torch.from_numpy(np.array(x[start : start + 10000], dtype=np.float32)) / 255.0
        out[start : start + 10000] = (torch.rand(v.shape, generator=generator) < v).to(torch.uint8)
    return out


def build_image_dataset(
    name: str,
    arrays: dict[str, np.ndarray],
    variant: Variant,
    val_fraction: float,
    split_seed: int,
    description: str,
) -> Dataset:
    """Stored uint8 splits (channel axis added for 28x28 sets), labels kept."""

    def images(key: str, seed: int) -> torch.Tensor:
        x = arrays[key] if arrays[key].ndim == 4 else arrays[key][:, None]  # [N, C, H, W]
        if variant.static:
            return static_binarize(x, seed)
        return torch.from_numpy(np.array(x, dtype=np.uint8))

    train_x = images("train_x", STATIC_BINARIZATION_SEED)
    test_x = images("test_x", STATIC_BINARIZATION_SEED + 1)
    train_y = torch.from_numpy(arrays["train_y"].astype(np.int64))
    test_y = torch.from_numpy(arrays["test_y"].astype(np.int64))
    train, val = split_train_val(train_x, train_y, val_fraction, split_seed)
    return Dataset(
        name=name,
        shape=tuple(train_x.shape[1:]),
        train=train,
        val=val,
        test=Split(test_x, test_y),
        transform=variant.transform(),
        support=variant.support,
        default_likelihood=variant.default_likelihood,
        num_levels=variant.num_levels,
        description=f"{description}; {variant.note}",
        extra={"variant": variant.suffix.lstrip("-") or "dequantized"}
        | ({"static_binarization_seed": STATIC_BINARIZATION_SEED} if variant.static else {}),
    )


def load_builtin(
    source: Source,
    variant: Variant,
    reader: Callable[[dict[str, Path]], dict[str, np.ndarray]],
    description: str,
    data_dir: str | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    mirrors: list[str] | None = None,
    progress: bool = True,
) -> Dataset:
    found = obtain(source, data_dir, mirrors, progress)
    dataset = build_image_dataset(
        source.name + variant.suffix, reader(found), variant, val_fraction, split_seed, description
    )
    dataset.extra["classes"] = list(source.classes)  # shown in maps, legends and the explorer
    return dataset


def where_found(source: Source, data_dir: str | None) -> str | None:
    """The folder of the verified local copy; a copy that fails its checksum is reported as
    such (it is never listed as found); None where there is none."""
    found, _, problem = locate(source, data_dir)
    if problem is not None:
        return f"not verified: {str(problem).split(': ')[0]} is refused"
    return None if found is None else str(next(iter(found.values())).parent)


def builtin_entries() -> list[DatasetEntry]:
    """Registry entries for every built-in set and variant."""

    sets = [
        (
            MNIST,
            "MNIST handwritten digits (CC BY-SA 3.0)",
            ["", "binarized-dynamic", "binarized-static"],
        ),
        (
            FASHION_MNIST,
            "Fashion-MNIST, Zalando (MIT)",
            ["", "binarized-dynamic", "binarized-static"],
        ),
        (KMNIST, "Kuzushiji-MNIST, CODH (CC BY-SA 4.0)", [""]),
        (CIFAR10, "CIFAR-10 binary version, Krizhevsky 2009", [""]),
    ]
    entries = []
    for source, description, variants in sets:
        reader = read_cifar if source is CIFAR10 else partial(load_idx_arrays, source)
        shape = (3, 32, 32) if source is CIFAR10 else (1, 28, 28)
        size = (
            "60000 (50000 train + 10000 test)"
            if source is CIFAR10
            else "70000 (60000 train + 10000 test)"
        )
        for key in variants:
            variant = VARIANTS[key]
            entries.append(
                DatasetEntry(
                    name=source.name + variant.suffix,
                    loader=partial(load_builtin, source, variant, reader, description),
                    shape=shape,
                    size=size,
                    support=variant.support,
                    default_likelihood=variant.default_likelihood,
                    description=f"{description}; {variant.note}",
                    locate=partial(where_found, source),
                )
            )
    return entries
