"""IDX reading and validation: round trip, truncation, bad magic, hashes, value ranges."""

import gzip

import numpy as np
import pytest

from vaekit.data import DataError
from vaekit.data.idx import parse_idx, read_idx, sha256_hex, write_idx


def test_idx_round_trip_raw_and_gzip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    blob = write_idx(images)
    assert blob[:4] == bytes([0, 0, 0x08, 3]) and len(blob) == 4 + 3 * 4 + images.size
    (tmp_path / "a-idx3-ubyte").write_bytes(blob)
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(blob))
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        out = read_idx(tmp_path / name, sha256=sha256_hex(blob), shape=(7, 5, 3))
        np.testing.assert_array_equal(out, images)
    floats = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(parse_idx(write_idx(floats)), floats)


@pytest.mark.parametrize("cut", [2, 10, 100])
def test_truncated_idx_names_the_file(tmp_path, cut):
    blob = write_idx(np.zeros((10, 4, 4), np.uint8))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(blob[:-cut] if cut < len(blob) else blob[:2])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*(truncated|not an IDX)"):
        read_idx(path)


def test_truncated_gzip_stream_names_the_file(tmp_path):
    blob = gzip.compress(write_idx(np.arange(1000, dtype=np.uint8).reshape(10, 100) % 7))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: truncated or corrupt gzip"):
        read_idx(path)


def test_bad_magic_shape_hash_and_range(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"\x01\x02\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(path)
    labels = np.array([0, 3, 12], np.uint8)
    path.write_bytes(write_idx(labels))
    with pytest.raises(DataError, match=r"expected shape \[4\]"):
        read_idx(path, shape=(4,))
    with pytest.raises(DataError, match="checksum mismatch"):
        read_idx(path, sha256="0" * 64)
    with pytest.raises(DataError, match=r"value 12 out of range 0..9"):
        read_idx(path, max_value=9)
    path.write_bytes(write_idx(labels) + b"\x00")
    with pytest.raises(DataError, match="trailing bytes"):
        read_idx(path)
