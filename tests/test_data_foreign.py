"""Data written by other tools: WebDataset tar shards (images or arrays with .cls labels) and
Hugging Face save_to_disk folders, read in place and streamed."""

from __future__ import annotations

import io
import sys
import tarfile

import numpy as np
import pytest
import torch

from vaekit.data import DataError, load_dataset
from vaekit.data.splits import MemmapSplit
from vaekit.data.tar_shards import TarArray

N, PER_SHARD = 30, 8  # 4 shards: 8, 8, 8 and 6 examples


def pixels(i: int) -> np.ndarray:
    """Example i: a 6x5 RGB image whose every value is a function of i."""
    return ((np.arange(6 * 5 * 3).reshape(6, 5, 3) + 7 * i) % 256).astype(np.uint8)


def write_shards(folder, ext: str, labels: bool = True, name="shard"):
    """Shards as another tool writes them (members in a subfolder, as `tar` keeps paths)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for s, start in enumerate(range(0, N, PER_SHARD)):
        with tarfile.open(folder / f"{name}-{s:06d}.tar", "w") as tar:
            for i in range(start, min(N, start + PER_SHARD)):
                buffer = io.BytesIO()
                if ext == "npy":
                    np.save(buffer, pixels(i).astype(np.float32))
                else:
                    Image.fromarray(pixels(i)).save(buffer, format="PNG")
                fields = {ext: buffer.getvalue()} | ({"cls": str(i % 3).encode()} if labels else {})
                for field, payload in fields.items():
                    info = tarfile.TarInfo(f"images/sample{i:04d}.{field}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    return folder


def all_rows(dataset):
    """Every example of the three splits with its label, ordered by label then values."""
    xs = torch.cat([dataset.split(n).x for n in ("train", "val", "test")])
    ys = torch.cat([dataset.split(n).y for n in ("train", "val", "test")])
    return xs, ys


def test_png_tar_shards_from_another_tool_read_as_images_with_labels(tmp_path):
    folder = write_shards(tmp_path / "wds", "png")
    for spec in (folder, f"{folder}/shard-*.tar", f"{folder}/shard-{{000000..000003}}.tar"):
        dataset = load_dataset(str(spec), val_fraction=0.2)
        assert isinstance(dataset.train, MemmapSplit)
        assert dataset.shape == (3, 6, 5) and dataset.transform.to_dict()["kind"] == "dequantize"
        assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (22, 5, 3)
        xs, ys = all_rows(dataset)
        expected = {bytes(np.moveaxis(pixels(i), -1, 0).tobytes()): i % 3 for i in range(N)}
        got = {bytes(x.numpy().tobytes()): int(y) for x, y in zip(xs, ys, strict=True)}
        assert got == expected  # every example once, with its own label


def test_npy_tar_shards_without_labels_are_standardised(tmp_path):
    dataset = load_dataset(str(write_shards(tmp_path / "wds", "npy", labels=False)))
    assert dataset.shape == (6, 5, 3) and dataset.train.y is None
    assert dataset.transform.to_dict()["kind"] == "standardize"


def test_tar_reading_indexes_every_shard_once_and_decodes_only_the_rows_asked(tmp_path):
    folder = write_shards(tmp_path / "wds", "png")
    array = TarArray(sorted(folder.glob("*.tar")))
    assert len(array) == N and array.opened == [1, 0, 0, 0]  # row 0, for the shape
    got = array[np.array([17, 3])]
    assert array.opened == [2, 0, 1, 0]
    assert np.array_equal(got[0], np.moveaxis(pixels(17), -1, 0))


def test_a_truncated_tar_from_another_tool_is_named(tmp_path):
    folder = write_shards(tmp_path / "wds", "png")
    shard = folder / "shard-000002.tar"
    shard.write_bytes(shard.read_bytes()[:700])
    with pytest.raises(DataError, match=r"shard-000002.tar: truncated"):
        load_dataset(str(folder))


def test_a_missing_shard_of_a_brace_range_is_named(tmp_path):
    folder = write_shards(tmp_path / "wds", "png")
    with pytest.raises(DataError, match=r"shard-000004.tar: missing shard"):
        load_dataset(f"{folder}/shard-{{000000..000004}}.tar")


def test_without_datasets_a_hugging_face_folder_says_how_to_install(tmp_path, monkeypatch):
    (tmp_path / "dataset_info.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(DataError) as caught:
        load_dataset(str(tmp_path))
    message = str(caught.value)
    assert "pip install 'vaekit[hf]'" in message and "\n" not in message


def test_a_hugging_face_folder_reads_offline(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    table = datasets.Dataset.from_dict(
        {
            "image": [Image.fromarray(pixels(i)) for i in range(N)],
            "label": [i % 3 for i in range(N)],
        },
        features=datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=3)}
        ),
    )
    table.save_to_disk(str(tmp_path / "hf"))
    dataset = load_dataset(str(tmp_path / "hf"))
    assert dataset.shape == (3, 6, 5)
    xs, ys = all_rows(dataset)
    expected = {bytes(np.moveaxis(pixels(i), -1, 0).tobytes()): i % 3 for i in range(N)}
    assert {bytes(x.numpy().tobytes()): int(y) for x, y in zip(xs, ys, strict=True)} == expected


def test_a_hugging_face_folder_with_its_own_splits_keeps_them(tmp_path):
    """A DatasetDict with train, validation and test: each split is the one the folder holds,
    in its order (none is drawn again from the others)."""
    datasets = pytest.importorskip("datasets")

    parts = {"train": range(0, 20), "validation": range(20, 26), "test": range(26, N)}
    tables = {
        name: datasets.Dataset.from_dict(
            {"x": [pixels(i).astype(np.float32) for i in rows], "label": [i % 3 for i in rows]}
        )
        for name, rows in parts.items()
    }
    datasets.DatasetDict(tables).save_to_disk(str(tmp_path / "hf"))
    dataset = load_dataset(str(tmp_path / "hf"))
    assert dataset.shape == (6, 5, 3)  # an array column keeps its layout
    for ours, theirs in (("train", "train"), ("val", "validation"), ("test", "test")):
        split = dataset.split(ours)
        expected = np.stack([pixels(i) for i in parts[theirs]]).astype(np.float32)
        np.testing.assert_array_equal(split.x.numpy(), expected)
        assert split.y.tolist() == [i % 3 for i in parts[theirs]]
