"""The streamed split reads the next shard in a thread, with explicit file reads: the batches,
the draws and the ranks' shares are those of the same stream read synchronously; a shard that
cannot be read is named in the training thread; an abandoned epoch leaves no reader behind; and
no row is read through a memory map."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import torch

from vaekit.config import Config
from vaekit.data import DataError, MemmapSplit, load_dataset
from vaekit.data.pack import read_pack, write_pack
from vaekit.data.shard_reader import ReadAhead
from vaekit.training import train
from vaekit.training.distributed import DistContext

BATCH = 40  # 1347 training rows of digits: 33 full batches and one of 27


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "vaekit-read-ahead" and t.is_alive()]


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    out = tmp_path_factory.mktemp("ahead") / "digits"
    return write_pack(load_dataset("digits"), out, "digits", 0.02, log=lambda _: None)


def train_split(pack, ahead: bool) -> MemmapSplit:
    split = read_pack(pack).train
    split.shard_size = 101  # stream shards that straddle the pack's (326 rows) and batches
    split.read_ahead = ahead
    return split


def epochs(split, world, start=0, n=3):
    """``n`` epochs of global batches (the ranks' rows put back together), as the trainer
    draws them (one generator across epochs), the threads that read each shard, and the
    generator's state after."""
    generator = torch.Generator().manual_seed(7)
    out, threads = [], set()

    def recording(load):
        def read(*args):
            threads.add(threading.current_thread().name)
            return load(*args)

        return read

    for _ in range(n):
        state = generator.get_state()
        per_rank = []
        for rank in range(world):
            view = split.for_rank(rank, world)
            view._load = recording(view._load)
            ctx = DistContext(rank=rank, world_size=world)
            mine = []
            for x, y in view.epoch_batches(BATCH, torch.Generator().set_state(state), start):
                lo, hi = ctx.shard(x.shape[0])
                mine.append((x[lo:hi], y[lo:hi]))
            per_rank.append(mine)
        generator.set_state(state)
        split.epoch_batches(BATCH, generator)  # the epoch's one draw, as each rank made it
        out.append(
            [
                (torch.cat([r[b][0] for r in per_rank]), torch.cat([r[b][1] for r in per_rank]))
                for b in range(len(per_rank[0]))
            ]
        )
    return out, threads, generator.get_state()


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("start", [0, 17])
def test_read_ahead_streams_the_synchronous_batches(pack, world, start):
    sync, sync_threads, sync_state = epochs(train_split(pack, False), world, start)
    ahead, ahead_threads, ahead_state = epochs(train_split(pack, True), world, start)
    assert sync_threads == {"MainThread"} and ahead_threads == {"vaekit-read-ahead"}
    assert torch.equal(sync_state, ahead_state)
    for one, other in zip(sync, ahead, strict=True):
        assert len(one) == len(other) == 34 - start
        for (xa, ya), (xb, yb) in zip(one, other, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    if start == 0:  # every row once per epoch, and each epoch a new order
        rows = train_split(pack, False)
        key = lambda t: sorted(map(bytes, t.reshape(t.shape[0], -1).numpy()))  # noqa: E731
        assert key(torch.cat([x for x, _ in ahead[0]])) == key(rows.x)
        assert not torch.equal(ahead[0][0][0], ahead[1][0][0])
    assert not readers()


def test_world_sizes_and_a_resumed_epoch_agree_with_read_ahead(pack):
    (alone,), _, _ = epochs(train_split(pack, True), 1, n=1)
    (together,), _, _ = epochs(train_split(pack, True), 2, n=1)
    (resumed,), _, _ = epochs(train_split(pack, True), 2, start=17, n=1)
    for (xa, ya), (xb, yb) in zip(alone, together, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    for (xa, ya), (xb, yb) in zip(alone[17:], resumed, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_shard_that_fails_in_the_reader_is_named_in_the_training_thread(pack, tmp_path):
    split = train_split(pack, True)
    array = split.array
    path = array.shards[-1].path  # the last pack shard: read ahead, never the first read
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes()[:-500])  # cut short after the pack was opened
    array.shards[-1].path = copy
    array.shards[-1].sha256 = None  # the short read itself, not the checksum before it
    batches = split.epoch_batches(BATCH, torch.Generator().manual_seed(0))
    with pytest.raises(DataError) as caught:
        for _ in batches:
            pass
    message = str(caught.value)
    assert message.startswith(f"{copy}: truncated .npy shard") and "\n" not in message
    assert caught.traceback[-1].name == "_read"  # raised by the reader, again here
    assert not readers()


def test_an_abandoned_epoch_stops_its_reader(pack):
    split = train_split(pack, True)
    batches = split.epoch_batches(BATCH, torch.Generator().manual_seed(0))
    next(batches)
    assert len(readers()) == 1
    batches.close()  # the trainer's early end (budget, time)
    assert not readers()

    def interrupted():
        for i, _ in enumerate(split.epoch_batches(BATCH, torch.Generator().manual_seed(1))):
            if i == 5:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    gc.collect()  # the frames the traceback held go: the stream with them
    assert not readers()
    stream = split.epoch_batches(BATCH, torch.Generator())
    for _ in zip(range(3), stream, strict=False):
        pass
    del stream  # dropped mid-epoch without a close
    gc.collect()
    assert not readers()


def test_training_that_stops_mid_epoch_leaves_no_reader(pack, tmp_path):
    config = Config.from_dict(
        {
            "data": {"name": str(pack)},
            "model": {"hidden_dims": [8], "latent_dim": 2, "network": "mlp"},
            "train": {"max_steps": 5, "batch_size": 40, "device": "cpu", "tensorboard": False},
        }
    )
    data = read_pack(pack)
    data.train.shard_size = 101
    result = train(config, dataset=data, log=lambda line: None)
    assert result.history and not readers()


def test_the_reader_is_at_most_one_shard_ahead():
    made: list[str] = []

    def jobs():
        for i in range(6):
            made.append(threading.current_thread().name)
            yield lambda i=i: (i, threading.current_thread().name)

    stream = ReadAhead(jobs(), depth=1)
    assert next(stream) == (0, "vaekit-read-ahead")
    assert len(made) == 2  # the one taken and the one being read
    assert list(stream) == [(i, "vaekit-read-ahead") for i in range(1, 6)]
    assert made == ["MainThread"] * 6  # every job (and its draws) made in the caller's thread
    assert not readers()


def test_streaming_never_reads_through_a_memory_map(pack, tmp_path, monkeypatch):
    np.save(tmp_path / "big.npy", np.arange(300 * 12, dtype=np.uint8).reshape(300, 12))
    stored = load_dataset(str(tmp_path / "big.npy"), in_memory=False)  # maps the file
    assert isinstance(stored.train.array, np.memmap)

    def refused(*args, **kwargs):
        raise AssertionError("read through a memory map")

    real_load = np.load

    def load(*args, mmap_mode=None, **kwargs):
        if mmap_mode is not None:
            refused()
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np.memmap, "__getitem__", refused)
    monkeypatch.setattr(np, "load", load)
    for split in (read_pack(pack).train, stored.train):
        split.shard_size = 64
        for read_ahead in (True, False):
            split.read_ahead = read_ahead
            seen = torch.cat([x for x, _ in split.epoch_batches(BATCH, torch.Generator())])
            assert seen.shape[0] == len(split)
            assert sum(len(x) for x, _ in split.stored_batches(9, False)) == len(split)
    expect = np.arange(300 * 12, dtype=np.uint8).reshape(300, 12)[stored.train.rows]
    assert np.array_equal(stored.train.x.numpy(), expect)
