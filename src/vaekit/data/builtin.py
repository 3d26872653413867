"""Built-in image sets: MNIST, Fashion-MNIST, KMNIST (IDX) and CIFAR-10 (binary version), and
the variants a model sees them in (dequantised, dynamically or statically binarised).

Their files are found and verified by :mod:`vaekit.data.sources`. MNIST and Fashion-MNIST
files are checked against the SHA-256 of their *decompressed* bytes (the canonical content;
repackaged ``.gz`` files differ); KMNIST's ``.gz`` files against the MD5 of the files as CODH
serves them (the publisher's own README lists no checksum; these are the MD5s recorded with
torchvision's KMNIST loader, which downloads the same four files), so only those ``.gz``
files are accepted; CIFAR-10's tarball against the MD5 its authors publish (an extracted
folder has no published checksum and is refused). Every IDX file is also checked by its
header, sizes and label range. CIFAR-10 is read from the *binary* version (raw bytes), never
from the pickled Python version.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from vaekit.data.datasets import Dataset, DatasetEntry, Support
from vaekit.data.errors import DataError
from vaekit.data.idx import read_bytes, read_idx
from vaekit.data.sources import Source, file_digest, obtain, where_found
from vaekit.data.splits import Split, split_train_val
from vaekit.data.transforms import Dequantize, DynamicBinarize, Transform

# The one Bernoulli draw of the static binarisations: train rows in file order from
# torch.Generator().manual_seed(STATIC_BINARIZATION_SEED), test rows from seed + 1.
STATIC_BINARIZATION_SEED = 20150601

IDX_FILES = {
    "train_x": ("train-images-idx3-ubyte", (60000, 28, 28), None),
    "train_y": ("train-labels-idx1-ubyte", (60000,), 9),
    "test_x": ("t10k-images-idx3-ubyte", (10000, 28, 28), None),
    "test_y": ("t10k-labels-idx1-ubyte", (10000,), 9),
}


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
        actual = file_digest(path, "md5", decompress=False)
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
    unverifiable_folder=f"extracted CIFAR-10 batches have no published checksum; put the "
    f"tarball {CIFAR_TARBALL} (MD5 {CIFAR_MD5}) there instead",
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
