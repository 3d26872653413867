"""User data read back exactly: image folders, .npy, .npz (stored = memory-mapped, and
compressed), CSV, Parquet. Every split's rows are rows of the file, each row in exactly one."""

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.data import MemmapSplit, load_dataset
from vaekit.data.transforms import Dequantize, Standardize, Transform


def ids_of(split, key):
    """Row ids of a split, read from the values themselves via ``key(x) -> ids``."""
    return key(split.x).tolist()


def assert_exact_partition(data, original, key):
    """Every split holds exact rows of ``original``, and together each row exactly once."""
    seen = []
    for name in ("train", "val", "test"):
        split = data.split(name)
        ids = ids_of(split, key)
        assert torch.equal(split.x, torch.as_tensor(original)[ids]), name
        seen += ids
    assert sorted(seen) == list(range(len(original)))


def image_ids(x):  # pixel (0, 0, 0) = id // 256, pixel (0, 0, 1) = id % 256
    return x[:, 0, 0, 0].long() * 256 + x[:, 0, 0, 1].long()


def id_images(n, shape=(1, 6, 5)):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
    return x


def test_npy_uint8_images_exact_and_dequantised(tmp_path):
    x = id_images(300)
    np.save(tmp_path / "x.npy", x)
    data = load_dataset(str(tmp_path / "x.npy"), val_fraction=0.2, split_seed=3)
    assert data.shape == (1, 6, 5) and data.support == "unit-interval"
    assert isinstance(data.transform, Dequantize) and data.num_levels == 256
    assert (len(data.train), len(data.val), len(data.test)) == (216, 54, 30)
    assert_exact_partition(data, x, image_ids)


def test_npy_greyscale_hw_gets_a_channel_axis(tmp_path):
    x = id_images(40)[:, 0]  # [N, H, W]
    np.save(tmp_path / "g.npy", x)
    data = load_dataset(str(tmp_path / "g.npy"))
    assert data.shape == (1, 6, 5)
    assert_exact_partition(data, x[:, None], image_ids)


def test_npy_memory_mapped_streams_the_training_split(tmp_path):
    x = id_images(500)
    np.save(tmp_path / "big.npy", x)
    data = load_dataset(str(tmp_path / "big.npy"), in_memory=False)
    assert isinstance(data.train, MemmapSplit) and isinstance(data.train.array, np.memmap)
    assert_exact_partition(data, x, image_ids)
    rows = torch.cat([xb for xb, _ in data.train.stored_batches(64, shuffle=True)])
    assert sorted(image_ids(rows).tolist()) == sorted(image_ids(data.train.x).tolist())


def test_float_npy_is_standardised_with_train_statistics(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(3.0, 2.0, (200, 4))
    x[:, 0] = np.arange(200)
    np.save(tmp_path / "f.npy", x)
    data = load_dataset(str(tmp_path / "f.npy"))
    assert data.support == "real" and isinstance(data.transform, Standardize)
    assert_exact_partition(data, x, lambda t: t[:, 0].long())
    train = data.train.x.double()
    np.testing.assert_allclose(data.transform.mean, train.mean(0), rtol=1e-12)
    np.testing.assert_allclose(data.transform.std, train.std(0, unbiased=False), rtol=1e-10)
    assert data.info()["transform"]["mean"] == data.transform.mean.tolist()


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_with_labels(tmp_path, compressed):
    x = id_images(120)
    y = np.arange(120) % 10
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "d.npz", x=x, y=y)
    data = load_dataset(str(tmp_path / "d.npz"), in_memory=False)
    assert_exact_partition(data, x, image_ids)
    assert isinstance(data.train.array, np.memmap) == (not compressed)  # compressed: read
    for name in ("train", "val", "test"):
        split = data.split(name)
        assert split.y.tolist() == (image_ids(split.x) % 10).tolist()


def test_npz_stored_member_is_memory_mapped(tmp_path):
    x = id_images(50)
    np.savez(tmp_path / "d.npz", images=x)
    data = load_dataset(str(tmp_path / "d.npz"), in_memory=False)
    assert isinstance(data.train.array, np.memmap)
    assert_exact_partition(data, x, image_ids)


def test_binary_arrays_get_the_bernoulli_default(tmp_path):
    x = (np.random.default_rng(0).random((60, 12)) < 0.3).astype(np.float32)
    np.save(tmp_path / "b.npy", x)
    data = load_dataset(str(tmp_path / "b.npy"))
    assert data.support == "binary" and data.default_likelihood == "bernoulli"
    assert type(data.transform) is Transform


def test_csv_with_header_exact(tmp_path):
    rng = np.random.default_rng(4)
    x = np.column_stack([np.arange(150), rng.normal(size=(150, 3)).round(6)])
    lines = ["id,a,b,c"] + [",".join(repr(float(v)) for v in row) for row in x]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    data = load_dataset(str(tmp_path / "t.csv"))
    assert data.shape == (4,) and data.info()["columns"] == ["id", "a", "b", "c"]
    assert data.train.x.dtype == torch.float64
    assert_exact_partition(data, x, lambda t: t[:, 0].long())


def test_csv_without_header(tmp_path):
    x = np.arange(60, dtype=np.float64).reshape(20, 3)
    (tmp_path / "t.csv").write_text("\n".join(",".join(str(v) for v in r) for r in x))
    data = load_dataset(str(tmp_path / "t.csv"))
    assert_exact_partition(data, x, lambda t: (t[:, 0] / 3).long())


def test_parquet_exact(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table(
        {"id": np.arange(80), "v": np.linspace(0, 1, 80), "flag": np.arange(80) % 2 == 0}
    )
    pq.write_table(table, tmp_path / "t.parquet")
    data = load_dataset(str(tmp_path / "t.parquet"))
    expected = np.column_stack([np.arange(80), np.linspace(0, 1, 80), np.arange(80) % 2 == 0])
    assert data.info()["columns"] == ["id", "v", "flag"]
    assert_exact_partition(data, expected.astype(np.float64), lambda t: t[:, 0].long())


def test_image_folder_with_classes_exact(tmp_path):
    x = id_images(30, shape=(1, 8, 8))
    for i, image in enumerate(x):
        folder = tmp_path / "imgs" / ("cat" if i % 3 else "ant")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0], mode="L").save(folder / f"{i:03d}.png")
    data = load_dataset(str(tmp_path / "imgs"))
    assert data.shape == (1, 8, 8) and data.info()["classes"] == ["ant", "cat"]
    assert_exact_partition(data, x, image_ids)
    for name in ("train", "val", "test"):
        split = data.split(name)
        assert split.y.tolist() == [0 if i % 3 == 0 else 1 for i in image_ids(split.x).tolist()]


def test_image_folder_rgb_and_resize(tmp_path):
    rgb = np.random.default_rng(5).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "a.png")
    Image.fromarray(rgb[:, :, 0], mode="L").save(tmp_path / "b.png")  # grey joins as RGB
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "c.jpg")
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(tmp_path / "d.png")
    data = load_dataset(str(tmp_path), val_fraction=0.0, image_size=[6, 10])
    assert data.shape == (3, 6, 10)
    stored = torch.cat([data.train.x, data.test.x])
    assert any(torch.equal(row, torch.from_numpy(rgb.transpose(2, 0, 1))) for row in stored)
    assert any(bool((row == 200).all()) for row in stored)  # 4x4 scaled up and cropped
