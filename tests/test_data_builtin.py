"""Built-in sets from the shared files (skipped when ../shared/datasets is absent) and the
`vaekit datasets` table. Reading a 60k-image IDX file takes seconds: done twice in all."""

import hashlib
from pathlib import Path

import pytest
import torch

from vaekit.cli import main
from vaekit.data import builtin as builtin_module
from vaekit.data import load_dataset
from vaekit.data.idx import write_idx

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
needs_shared = pytest.mark.skipif(
    not (SHARED / "fashion-mnist").is_dir() or not (SHARED / "mnist").is_dir(),
    reason=f"shared datasets not found at {SHARED}",
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
    monkeypatch.setattr(builtin_module, "SYSTEM_ROOTS", [])
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
    assert rows["kmnist"].endswith(str(tmp_path / "d" / "kmnist"))
    assert rows["digits"].endswith("built in")
