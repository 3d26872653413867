"""Built-in sets from the shared files (skipped unless $VAEKIT_DATA_DIR, or
../shared/datasets by default, holds mnist/ and fashion-mnist/) and the
`vaekit datasets` table. Reading a 60k-image IDX file takes seconds: done twice in all."""

import hashlib
import os
from pathlib import Path

import pytest
import torch

from vaekit.cli import main
from vaekit.data import builtin as builtin_module
from vaekit.data import load_dataset
from vaekit.data import sources as sources_module
from vaekit.data.idx import write_idx


def _shared_datasets() -> Path:
    """The folder holding mnist/ and fashion-mnist/: $VAEKIT_DATA_DIR if set (as the data
    loader reads it), else ../shared/datasets beside the project (one level further up from
    a git worktree)."""
    env = os.environ.get("VAEKIT_DATA_DIR")
    if env:
        return Path(env)
    return next(
        (
            p / "shared" / "datasets"
            for p in Path(__file__).resolve().parents[2:4]
            if (p / "shared" / "datasets").is_dir()
        ),
        Path(__file__).resolve().parents[2] / "shared" / "datasets",
    )


SHARED = _shared_datasets()
needs_shared = pytest.mark.skipif(
    not (SHARED / "fashion-mnist").is_dir() or not (SHARED / "mnist").is_dir(),
    reason=f"the MNIST and Fashion-MNIST files are not in {SHARED}/mnist and "
    f"{SHARED}/fashion-mnist: set VAEKIT_DATA_DIR to the folder that holds them",
)


@needs_shared
def test_fashion_mnist_from_the_shared_files():
    data = load_dataset("fashion-mnist", str(SHARED / "fashion-mnist"), 0.1, 0, progress=False)
    assert data.shape == (1, 28, 28) and data.num_levels == 256
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert data.train.x.dtype == torch.uint8 and data.test.y.dtype == torch.int64
    # the stored test split is byte for byte the canonical file (README's SHA-256)
    blob = write_idx(data.test.x[:, 0].numpy())
    assert hashlib.sha256(blob).hexdigest() == builtin_module.FASHION_MNIST.hashes["test_x"]
    labels = write_idx(data.test.y.to(torch.uint8).numpy())
    assert hashlib.sha256(labels).hexdigest() == builtin_module.FASHION_MNIST.hashes["test_y"]
    assert sorted(data.train.y.unique().tolist()) == list(range(10))
    assert data.info()["classes"][:2] == ["T-shirt/top", "Trouser"]  # names for label 0, 1


@needs_shared
def test_mnist_static_binarisation_from_the_shared_files(monkeypatch):
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(SHARED))  # found as $VAEKIT_DATA_DIR/mnist
    data = load_dataset("mnist-binarized-static", progress=False)
    assert data.support == "binary" and data.default_likelihood == "bernoulli"
    assert set(data.test.x.unique().tolist()) == {0, 1}
    # about 13% of MNIST pixels fire: mean intensity 33.3/255; 10000x784 draws
    assert abs(float(data.test.x.double().mean()) - 0.1325) < 0.003


def test_datasets_table(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    monkeypatch.setattr(sources_module, "SYSTEM_ROOTS", [])
    (tmp_path / "d" / "kmnist").mkdir(parents=True)
    for stem, _, _ in builtin_module.IDX_FILES.values():
        (tmp_path / "d" / "kmnist" / f"{stem}.gz").write_bytes(b"")
    assert main(["datasets", "--data-dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["name", "shape", "size"]
    rows = {line.split()[0]: line for line in out[2:]}
    assert set(rows) >= {
        "digits",
        "mnist",
        "mnist-binarized-dynamic",
        "mnist-binarized-static",
        "fashion-mnist",
        "fashion-mnist-binarized-dynamic",
        "fashion-mnist-binarized-static",
        "kmnist",
        "cifar10",
    }
    assert "1x28x28" in rows["mnist"] and "unit-interval" in rows["mnist"]
    assert (
        "binary" in rows["mnist-binarized-dynamic"]
        and "bernoulli" in rows["mnist-binarized-dynamic"]
    )
    assert "3x32x32" in rows["cifar10"] and "not found" in rows["cifar10"]
    # empty files are not KMNIST's: never listed as found
    assert "not verified" in rows["kmnist"] and "train-images-idx3-ubyte.gz" in rows["kmnist"]
    assert rows["digits"].endswith("built in")


def _fake_kmnist(folder, monkeypatch):
    """Four small .gz files in ``folder`` whose MD5s are made the published ones."""
    folder.mkdir(parents=True, exist_ok=True)
    md5 = {}
    for key, (stem, _, _) in builtin_module.IDX_FILES.items():
        blob = stem.encode() * 3
        (folder / f"{stem}.gz").write_bytes(blob)
        md5[key] = hashlib.md5(blob).hexdigest()
    for _key, _value in md5.items():
        monkeypatch.setitem(builtin_module.KMNIST.file_md5, _key, _value)
    return md5


def test_verified_files_are_found_and_cached_by_stat(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    monkeypatch.setattr(sources_module, "SYSTEM_ROOTS", [])
    _fake_kmnist(tmp_path / "k", monkeypatch)
    source = builtin_module.KMNIST
    assert builtin_module.where_found(source, str(tmp_path / "k")) == str(tmp_path / "k")
    hashed = []
    real = sources_module.file_digest
    monkeypatch.setattr(sources_module, "file_digest", lambda *a: hashed.append(a) or real(*a))
    assert builtin_module.where_found(source, str(tmp_path / "k")) == str(tmp_path / "k")
    assert hashed == []  # unchanged files: remembered, not hashed again
    # a modified file (same size) is hashed again and refused with both hashes
    path = tmp_path / "k" / "t10k-labels-idx1-ubyte.gz"
    blob = bytearray(path.read_bytes())
    blob[0] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(
        Exception,
        match=r"t10k-labels-idx1-ubyte\.gz: checksum mismatch for "
        r"kmnist: MD5 [0-9a-f]{32}, expected [0-9a-f]{32}",
    ):
        load_dataset("kmnist", data_dir=str(tmp_path / "k"), progress=False)
    assert "not verified" in builtin_module.where_found(source, str(tmp_path / "k"))


def test_uncompressed_kmnist_cannot_be_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _fake_kmnist(tmp_path / "k", monkeypatch)
    (tmp_path / "k" / "train-images-idx3-ubyte.gz").unlink()
    (tmp_path / "k" / "train-images-idx3-ubyte").write_bytes(b"raw")
    with pytest.raises(
        Exception,
        match=r"train-images-idx3-ubyte: kmnist publishes checksums "
        "only for its .gz files",
    ):
        load_dataset("kmnist", data_dir=str(tmp_path / "k"), progress=False)


@needs_shared
def test_an_mnist_folder_is_not_fashion_mnist_or_kmnist(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    monkeypatch.setattr(sources_module, "SYSTEM_ROOTS", [])
    mnist = str(SHARED / "mnist")
    assert main(["datasets", "--data-dir", mnist]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["mnist"].endswith(mnist)
    for name in ("fashion-mnist", "kmnist"):
        assert "not verified" in rows[name] and not rows[name].endswith(mnist)
    code = main(["train", "--data", "kmnist", "--data-dir", mnist, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and not (tmp_path / "r").exists()
    assert err.startswith(f"vaekit: error: {mnist}/train-images-idx3-ubyte.gz: checksum mismatch")
    assert "expected bdb82020997e1d708af4cf47b453dcf7" in err
