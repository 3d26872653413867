"""Packed data: shards equal the source, read back streamed, survive interruption, and any
damage is named."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vaekit.cli import main
from vaekit.data import DataError, load_dataset
from vaekit.data.pack import PACK_FILE, PARTIAL_FILE, is_pack, read_pack, verify_pack, write_pack
from vaekit.data.splits import MemmapSplit


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def pack(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("packs") / "digits"
    return write_pack(digits, out, "digits", shard_mb=0.02, log=lambda line: None)


def test_a_pack_holds_the_sources_values_labels_and_transform(digits, pack):
    packed = load_dataset(str(pack))  # --data DIR finds the pack
    assert isinstance(packed.train, MemmapSplit)
    assert packed.transform.to_dict() == digits.transform.to_dict()
    assert (packed.support, packed.num_levels) == (digits.support, digits.num_levels)
    for name in ("train", "val", "test"):
        assert torch.equal(packed.split(name).x, digits.split(name).x)
        assert torch.equal(packed.split(name).y, digits.split(name).y)
    shards = json.loads((pack / PACK_FILE).read_text())["splits"]["train"]["shards"]
    assert len(shards) > 1  # several shards, read back as one split


def test_streamed_epochs_use_every_row_once(pack):
    split = read_pack(pack).train
    seen = torch.cat([x for x, _ in split.epoch_batches(64, torch.Generator().manual_seed(0))])
    assert seen.shape[0] == len(split)
    key = lambda t: sorted(map(bytes, t.reshape(t.shape[0], -1).numpy()))  # noqa: E731
    assert key(seen) == key(split.x)


def test_an_interrupted_pack_looks_incomplete_and_resumes(digits, tmp_path, monkeypatch):
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
        write_pack(digits, out, "digits", shard_mb=0.02, log=lambda line: None)
    assert not is_pack(out) and (out / PARTIAL_FILE).is_file()
    first = (out / "train-00000.npy").stat().st_mtime_ns
    monkeypatch.setattr(pack_module, "atomic_write_bytes", real)
    lines: list[str] = []
    write_pack(digits, out, "digits", shard_mb=0.02, log=lines.append)
    assert "2 file(s) already written and verified" in lines[0]
    assert (out / "train-00000.npy").stat().st_mtime_ns == first  # kept, not rewritten
    assert is_pack(out) and not (out / PARTIAL_FILE).exists()
    assert verify_pack(out) == []


def test_pack_refuses_a_folder_it_did_not_make(digits, tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(DataError, match="not an interrupted vaekit pack"):
        write_pack(digits, tmp_path, "digits", log=lambda line: None)
    assert (tmp_path / "mine.txt").read_text() == "user data"


def test_damaged_shards_are_named(digits, tmp_path):
    out = write_pack(digits, tmp_path / "p", "digits", shard_mb=0.02, log=lambda line: None)
    shard = out / "val-00000.npy"
    blob = bytearray(shard.read_bytes())
    blob[-1] ^= 0xFF  # same size: only the checksum can tell
    shard.write_bytes(bytes(blob))
    assert verify_pack(out) == [f"{shard}: SHA-256 does not match pack.json"]
    val = read_pack(out).val  # the header is intact: it opens; reading the rows is refused
    with pytest.raises(DataError, match=r"val-00000.npy: SHA-256 does not match pack.json"):
        _ = val.x
    with pytest.raises(DataError, match=r"val-00000.npy: SHA-256 does not match pack.json"):
        list(val.epoch_batches(16, torch.Generator().manual_seed(0)))
    shard.write_bytes(bytes(blob[:-10]))  # truncated: every open notices
    with pytest.raises(
        DataError, match=r"val-00000.npy: 9718 bytes, the pack records 9728 \(truncated"
    ):
        read_pack(out)


def test_cli_pack_then_train_and_verify(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["pack", "digits", "-o", str(out), "--shard-mb", "0.05"]) in (0, None)
    assert "examples/s" in capsys.readouterr().out
    main(["pack", "--verify", str(out)])
    assert "every shard matches" in capsys.readouterr().out
    run = tmp_path / "run"
    main(
        [
            "train",
            "--data",
            str(out),
            "--out",
            str(run),
            "--latent-dim",
            "2",
            "--hidden-dims",
            "16",
            "--set",
            "train.max_steps=5",
            "--set",
            "train.report=false",
        ]
    )
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["name"] == str(out)
    assert np.isfinite(
        [
            r["val_elbo"]
            for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "val_elbo" in r
        ]
    ).all()


def test_a_pack_is_never_written_into_its_source_or_a_run(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / ".vaekit-run").write_text('{"format": "vaekit-run"}')
    for out in (images / "pack", run / "pack"):
        assert main(["pack", str(images), "-o", str(out)]) == 2
        assert "--out" in capsys.readouterr().err
        assert not out.exists()
