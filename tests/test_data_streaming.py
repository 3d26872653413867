"""Training really streams a memory-mapped split: it never reads the split whole.

Two guards, each of which fails when training or validation materialises a split:
* every read of the memory-mapped array is recorded: no read may hold more rows than a shard
  (training) or a validation block;
* in a fresh process training on a memory-mapped ``.npy`` of 160 MB, the process's anonymous
  memory (RssAnon: heap, not the file's page cache) may grow by at most 64 MB (streaming
  needs a fixed ~30 MB; the training split alone is 132 MB).
And the stream itself: resuming mid-epoch gives the same batches.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import faults
from vaekit.config import Config
from vaekit.data import MemmapSplit, load_dataset
from vaekit.data import datasets as datasets_module
from vaekit.data.datasets import FixedSplit
from vaekit.training import train


class RecordingArray:
    """A memory-mapped array that records how many rows each read asks for."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.reads: list[int] = []

    def __getitem__(self, index):
        out = self.array[index]
        self.reads.append(out.shape[0] if out.ndim == self.array.ndim else 1)
        return out

    def __getattr__(self, name):
        return getattr(self.array, name)


def tiny_config(path, **train) -> Config:
    return Config.from_dict(
        {
            "data": {"name": str(path)},
            "model": {"hidden_dims": [8], "latent_dim": 2, "network": "mlp"},
            "train": {"epochs": 2, "batch_size": 10, "device": "cpu", "eval_batch_size": 7} | train,
        }
    )


def test_training_reads_at_most_a_shard_or_block_at_a_time(tmp_path, monkeypatch):
    x = np.random.default_rng(3).integers(0, 256, (400, 1, 6, 6), dtype=np.uint8)
    np.save(tmp_path / "m.npy", x)
    data = load_dataset(str(tmp_path / "m.npy"), in_memory=False)
    assert isinstance(data.train, MemmapSplit) and isinstance(data.val, MemmapSplit)
    data.train.shard_size = 16  # 324 training rows: 21 shards per epoch
    # 36-byte rows: blocks of 8 rows, 36 validation rows in 5 blocks
    monkeypatch.setattr(datasets_module, "FIXED_BLOCK_BYTES", 8 * 36)
    data.train.array = RecordingArray(data.train.array)
    data.val.array = RecordingArray(data.val.array)
    result = train(tiny_config(tmp_path / "m.npy"), dataset=data, log=lambda line: None)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert all(np.isfinite(r["val_elbo"]) for r in result.history)
    train_reads, val_reads = data.train.array.reads, data.val.array.reads
    assert sum(train_reads) == 2 * len(data.train)  # every row once per epoch ...
    assert max(train_reads) <= 16  # ... never more than a shard at a time
    assert val_reads and max(val_reads) <= 8


def test_fixed_split_blocks_do_not_depend_on_the_range_or_batch_size(tmp_path, monkeypatch):
    x = np.random.default_rng(0).integers(0, 256, (300, 5), dtype=np.uint8)
    np.save(tmp_path / "v.npy", x)
    data = load_dataset(str(tmp_path / "v.npy"), in_memory=False, val_fraction=0.5)
    monkeypatch.setattr(datasets_module, "FIXED_BLOCK_BYTES", 16 * 5)  # blocks of 16 rows
    val = FixedSplit(data, "val", seed=4)
    assert val.block_rows == 16
    whole = torch.cat(list(val.batches(1000)))
    assert whole.shape == (len(data.val), 5)
    assert torch.equal(torch.cat(list(val.batches(7))), whole)  # any batch size
    assert torch.equal(torch.cat(list(val.batches(5, 20, 61))), whole[20:61])  # any range
    assert torch.equal(torch.cat(list(val.batches(9))), whole)  # every pass the same noise
    # the values are the dequantised stored rows: floor(x * 256) recovers them
    stored = torch.from_numpy(x[data.val.rows])
    assert torch.equal(torch.floor(whole * 256).to(torch.uint8), stored)


@pytest.mark.parametrize("start", [0, 3, 7, 13])
def test_memmap_epoch_resumes_at_any_batch(tmp_path, start):
    x = np.arange(200, dtype=np.int64).reshape(200, 1)
    np.save(tmp_path / "x.npy", x)
    split = MemmapSplit(np.load(tmp_path / "x.npy", mmap_mode="r"), np.arange(200), shard_size=16)
    state = torch.Generator().manual_seed(5).get_state()
    full = [b for b, _ in split.epoch_batches(9, torch.Generator().set_state(state))]
    resumed = [b for b, _ in split.epoch_batches(9, torch.Generator().set_state(state), start)]
    assert len(resumed) == len(full) - start
    assert all(torch.equal(a, b) for a, b in zip(full[start:], resumed, strict=True))
    assert sorted(torch.cat(full)[:, 0].tolist()) == list(range(200))


RSS_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    from vaekit.config import Config
    from vaekit.data import load_dataset
    from vaekit.data.transforms import Dequantize
    from vaekit.training import train

    def rss_anon_mb():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no RssAnon")

    peak = [0.0]

    class Probe(Dequantize):  # samples the heap every time a batch is transformed
        def __call__(self, x, generator=None):
            peak[0] = max(peak[0], rss_anon_mb())
            return super().__call__(x, generator)

    path = sys.argv[1]
    data = load_dataset(path, in_memory=False)
    data.train.shard_size = 256  # 1 MiB shards
    data.transform = Probe(data.transform.levels)
    config = Config.from_dict({
        "data": {"name": path},
        "model": {"hidden_dims": [8], "latent_dim": 2, "network": "mlp"},
        "train": {"max_steps": 3, "batch_size": 10, "device": "cpu", "eval_batch_size": 100,
                  "tensorboard": False, "progress": "plain"},
    })
    # Warm up on 60 rows in memory: the first optimiser, step and validation allocate torch's
    # lazily initialised machinery (about 130 MB), which has nothing to do with the data.
    small = load_dataset(sys.argv[2], in_memory=True)
    train(Config.from_dict(config.to_dict() | {"data": {"name": sys.argv[2]}}), dataset=small,
          log=lambda line: None)
    base = rss_anon_mb()
    result = train(config, dataset=data, log=lambda line: None)
    assert result.history and "val_elbo" in result.history[-1]
    print(f"{peak[0] - base:.1f}")
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's RssAnon")
def test_training_memory_does_not_grow_with_the_memmapped_split(tmp_path):
    """160 MB of uint8 rows on disk (40,000 rows of 64x64); the training split is 115 MB, the
    validation split 15 MB (59 MB as float32). Streaming holds a few MiB; reading either
    split whole would add at least 59 MB of heap."""
    rows = 40000
    array = np.lib.format.open_memmap(
        tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(rows, 1, 64, 64)
    )
    rng = np.random.default_rng(0)
    for start in range(0, rows, 5000):
        array[start : start + 5000] = rng.integers(0, 256, (5000, 1, 64, 64), dtype=np.uint8)
    array.flush()
    del array
    np.save(tmp_path / "small.npy", rng.integers(0, 256, (60, 1, 64, 64), dtype=np.uint8))
    script = tmp_path / "probe.py"
    script.write_text(RSS_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "big.npy"), str(tmp_path / "small.npy")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    growth_mb = float(done.stdout.strip().splitlines()[-1])
    assert growth_mb < 64, f"anonymous memory grew by {growth_mb:.0f} MB while training"


RESUME_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[4])  # the tests: their fault injection
    import faults
    faults.arm_from_env()
    from vaekit.config import Config
    from vaekit.data import load_dataset
    from vaekit.training import train

    path, out, mode = sys.argv[1:4]
    data = load_dataset(path, in_memory=False)
    data.train.shard_size = 16  # 324 training rows: 21 shards, 11 batches of 30 per epoch
    if mode == "resume":
        train(resume=out, dataset=data, log=lambda line: None)
    else:
        config = Config.from_dict({
            "data": {"name": path},
            "model": {"hidden_dims": [8], "latent_dim": 2, "network": "mlp"},
            "train": {"epochs": 2, "batch_size": 30, "device": "cpu", "seed": 1,
                      "checkpoint_every": 4, "log_every": 2, "tensorboard": False,
                      "progress": "plain"},
        })
        train(config, out=out, dataset=data, log=lambda line: None)
    """
)


@pytest.mark.slow
def test_memmap_run_killed_mid_epoch_resumes_bitwise(tmp_path):
    x = np.random.default_rng(5).integers(0, 256, (400, 1, 6, 6), dtype=np.uint8)
    np.save(tmp_path / "m.npy", x)
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)

    def run(out, mode, kill_after=None):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if kill_after is not None:
            env[faults.KILL_AFTER_STEP_ENV] = str(kill_after)
        tests = str(Path(__file__).parent)
        args = [sys.executable, str(script), str(tmp_path / "m.npy"), str(out), mode, tests]
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)

    full, broken = tmp_path / "full", tmp_path / "broken"
    assert run(full, "train").returncode == 0
    # step 17 is batch 6 of epoch 2; the last checkpoint is step 16 (batch 5): resuming skips
    # the shards before batch 5 of that epoch's stream without reading them
    assert run(broken, "train", kill_after=17).returncode == -9
    done = run(broken, "resume")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (broken / "model.safetensors").read_bytes() == (full / "model.safetensors").read_bytes()
