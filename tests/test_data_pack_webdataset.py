"""WebDataset packs: tar shards other tools read, read back streamed, resumable, and every
kind of damage refused in one line naming the shard."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import numpy as np
import pytest
import torch

from vaekit.cli import main
from vaekit.data import DataError, load_dataset
from vaekit.data.pack import PACK_FILE, PARTIAL_FILE, is_pack, read_pack, verify_pack, write_pack
from vaekit.data.splits import MemmapSplit
from vaekit.data.tar_shards import TarArray


def quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def pack(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("wds") / "digits"
    return write_pack(digits, out, "digits", shard_mb=0.02, log=quiet, layout="webdataset")


def test_tar_shards_hold_one_npy_and_cls_per_example_in_the_standard_layout(digits, pack):
    shards = sorted((pack / "train").glob("shard-*.tar"))
    assert [p.name for p in shards[:2]] == ["shard-000000.tar", "shard-000001.tar"]
    with tarfile.open(shards[1]) as tar:  # read as any tool would, without vaekit
        names = tar.getnames()
        first = np.load(io.BytesIO(tar.extractfile(names[0]).read()))
        label = int(tar.extractfile(names[1]).read())
    rows = json.loads((pack / PACK_FILE).read_text())["splits"]["train"]["shards"][0]["rows"]
    assert names[:2] == [f"{rows:09d}.npy", f"{rows:09d}.cls"]
    assert np.array_equal(first, digits.train.x[rows].numpy())
    assert label == int(digits.train.y[rows])


def test_a_webdataset_pack_reads_back_the_sources_values_labels_and_transform(digits, pack):
    packed = load_dataset(str(pack))
    assert isinstance(packed.train, MemmapSplit) and isinstance(packed.train.array, TarArray)
    assert packed.transform.to_dict() == digits.transform.to_dict()
    for name in ("train", "val", "test"):
        assert torch.equal(packed.split(name).x, digits.split(name).x)
        assert torch.equal(packed.split(name).y, digits.split(name).y)
    assert verify_pack(pack) == []


def test_reading_opens_only_the_shards_of_the_rows_asked_for(pack):
    array = read_pack(pack).train.array
    assert array.indexes == [None] * len(array.paths)  # nothing indexed at open
    array[np.array([3, 1])]
    assert array.opened[0] == 1 and sum(array.opened) == 1
    assert sum(index is not None for index in array.indexes) == 1


def test_an_interrupted_webdataset_pack_looks_incomplete_and_resumes(digits, tmp_path, monkeypatch):
    from vaekit.data import pack as pack_module

    real, calls = pack_module.atomic_write_bytes, []

    def failing(path, blob):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(path, blob)

    monkeypatch.setattr(pack_module, "atomic_write_bytes", failing)
    out = tmp_path / "p"
    with pytest.raises(OSError):
        write_pack(digits, out, "digits", shard_mb=0.02, log=quiet, layout="webdataset")
    assert not is_pack(out) and (out / PARTIAL_FILE).is_file()
    with pytest.raises(DataError, match="not a readable pack description"):
        read_pack(out)
    kept = (out / "train" / "shard-000000.tar").stat().st_mtime_ns
    monkeypatch.setattr(pack_module, "atomic_write_bytes", real)
    lines: list[str] = []
    write_pack(digits, out, "digits", shard_mb=0.02, log=lines.append, layout="webdataset")
    assert "2 file(s) already written and verified" in lines[0]
    assert (out / "train" / "shard-000000.tar").stat().st_mtime_ns == kept
    assert is_pack(out) and verify_pack(out) == []


def test_resuming_with_another_format_transform_or_version_is_refused(digits, tmp_path):
    from vaekit.data import pack as pack_module

    out = tmp_path / "p"
    out.mkdir()
    settings = pack_module._settings(digits, "digits", 0.02, "webdataset")
    for key, other in (("vaekit_version", "0.0.1"), ("transform", {"kind": "identity"})):
        record = {"settings": settings | {key: other}, "files": {}}
        (out / PARTIAL_FILE).write_text(json.dumps(record))
        with pytest.raises(DataError, match=f"interrupted pack with another {key}"):
            write_pack(digits, out, "digits", shard_mb=0.02, log=quiet, layout="webdataset")


@pytest.fixture()
def copy(pack, tmp_path):
    return shutil.copytree(pack, tmp_path / "copy")


def test_a_shard_whose_checksum_fails_is_named(copy, capsys):
    shard = copy / "val" / "shard-000000.tar"
    blob = bytearray(shard.read_bytes())
    blob[600] ^= 0xFF  # inside the first example's values: same size
    shard.write_bytes(bytes(blob))
    assert verify_pack(copy) == [f"{shard}: SHA-256 does not match pack.json"]
    assert main(["pack", "--verify", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert "shard-000000.tar: SHA-256 does not match" in err and "\n" not in err
    with pytest.raises(DataError, match=r"shard-000000.tar: SHA-256 does not match pack.json"):
        _ = read_pack(copy).val.x  # training and evaluation read it: refused, not used


def test_a_truncated_tar_is_named(copy):
    shard = copy / "train" / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"train/shard-000001.tar: 5000 bytes, the pack records"):
        read_pack(copy)


def test_a_truncated_tar_without_a_pack_is_named(pack, tmp_path):
    shard = tmp_path / "shard-000000.tar"
    shard.write_bytes((pack / "train" / "shard-000000.tar").read_bytes()[:5000])
    with pytest.raises(DataError, match=r"shard-000000.tar: truncated"):
        TarArray([shard])


def test_a_shard_missing_from_the_index_is_named(copy):
    shutil.copy(copy / "train" / "shard-000000.tar", copy / "train" / "shard-000099.tar")
    with pytest.raises(DataError, match=r"train/shard-000099.tar: a shard that .*does not list"):
        read_pack(copy)


def test_an_indexed_shard_that_is_gone_is_named(copy):
    (copy / "test" / "shard-000000.tar").unlink()
    with pytest.raises(DataError, match=r"test/shard-000000.tar: missing shard"):
        read_pack(copy)


def test_a_pack_of_another_format_version_is_refused(copy):
    data = json.loads((copy / PACK_FILE).read_text())
    (copy / PACK_FILE).write_text(json.dumps(data | {"format_version": 99}))
    with pytest.raises(DataError, match="pack format version 99"):
        read_pack(copy)


def test_cli_packs_webdataset(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["pack", "digits", "-o", str(out), "--format", "webdataset"]) in (0, None)
    assert json.loads((out / PACK_FILE).read_text())["layout"] == "webdataset"
    assert (out / "train" / "shard-000000.tar").is_file()
