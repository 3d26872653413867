"""CIFAR-10 from its binary version (raw bytes, never a pickle): records, labels, MD5 check."""

import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch

from vaekit.data import DataError, load_dataset
from vaekit.data import builtin as builtin_module
from vaekit.data.builtin import CIFAR_MEMBERS, CIFAR_RECORD


@pytest.fixture(scope="module")
def fake_cifar_tarball():
    """A tarball laid out like cifar-10-binary.tar.gz: record i of batch b has label
    (i + b) % 10 and first red pixel i % 256; everything else 0."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for b, member in enumerate(CIFAR_MEMBERS):
            records = np.zeros((10000, CIFAR_RECORD), np.uint8)
            records[:, 0] = (np.arange(10000) + b) % 10
            records[:, 1] = np.arange(10000) % 256
            blob = records.tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{member}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        note = b"airplane\n"
        info = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt")
        info.size = len(note)
        tar.addfile(info, io.BytesIO(note))
    return buffer.getvalue()


def test_cifar_from_a_local_tarball(tmp_path, fake_cifar_tarball, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(fake_cifar_tarball)
    with pytest.raises(DataError, match=r"cifar-10-binary\.tar\.gz: checksum mismatch"):
        load_dataset("cifar10", data_dir=str(tmp_path), val_fraction=0.0, progress=False)
    md5 = hashlib.md5(fake_cifar_tarball).hexdigest()
    monkeypatch.setitem(builtin_module.CIFAR10.file_md5, "archive", md5)
    data = load_dataset("cifar10", data_dir=str(tmp_path), val_fraction=0.0, progress=False)
    assert data.shape == (3, 32, 32) and data.num_levels == 256
    assert (len(data.train), len(data.test)) == (50000, 10000)
    assert data.train.x.dtype == torch.uint8
    expected_labels = np.concatenate([(np.arange(10000) + b) % 10 for b in range(5)])
    assert data.train.y.tolist() == expected_labels.tolist()
    assert data.test.y.tolist() == ((np.arange(10000) + 5) % 10).tolist()
    assert data.test.x[:, 0, 0, 0].tolist() == (np.arange(10000) % 256).tolist()  # R plane first
    assert int(data.test.x[:, 1:].sum()) == 0


def test_truncated_cifar_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for member in CIFAR_MEMBERS:
        (folder / member).write_bytes(bytes(10000 * CIFAR_RECORD))
    (folder / "test_batch.bin").write_bytes(bytes(10 * CIFAR_RECORD))
    with pytest.raises(DataError, match=r"test_batch\.bin: expected 30730000 bytes, found 30730"):
        builtin_module.read_cifar({"folder": folder})
    assert builtin_module.find_cifar(tmp_path) == {"folder": folder}
    # an extracted folder has no published checksum: refused before use
    with pytest.raises(DataError, match=r"cifar-10-batches-bin: extracted CIFAR-10 batches have "):
        load_dataset("cifar10", data_dir=str(tmp_path), progress=False)
