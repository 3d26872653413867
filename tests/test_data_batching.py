"""Batching: in-memory permutation batches, memory-mapped shard streaming, device residency."""

import numpy as np
import pytest
import torch

from vaekit.data import Dataset, MemmapSplit, Split
from vaekit.data.transforms import Dequantize, Transform


def make_dataset(n=103, transform=None):
    x = torch.arange(n, dtype=torch.int64).reshape(n, 1)
    split = Split(x, x[:, 0].clone())
    return Dataset("t", (1,), split, split, split, transform or Transform(), "real", "gaussian")


def test_in_memory_batches_are_a_permutation_and_reproducible():
    data = make_dataset()
    g = torch.Generator().manual_seed(0)
    epoch = [x for x, _ in data.batches("train", 10, shuffle=True, generator=g)]
    assert [len(b) for b in epoch] == [10] * 10 + [3]
    order = torch.cat(epoch)[:, 0].long()
    assert sorted(order.tolist()) == list(range(103)) and order.tolist() != list(range(103))
    again = [x for x, _ in data.batches("train", 10, True, torch.Generator().manual_seed(0))]
    assert torch.equal(torch.cat(again), torch.cat(epoch))
    for x, y in data.batches("train", 10, True, g):
        assert torch.equal(x[:, 0].long(), y)  # labels travel with their rows
    dropped = list(data.batches("train", 10, True, g, drop_last=True))
    assert len(dropped) == 10


def memmap_split(tmp_path, n, shard_size):
    x = np.arange(n, dtype=np.int64).reshape(n, 1) * 2  # values = 2 * row in the file
    np.save(tmp_path / "x.npy", x)
    array = np.load(tmp_path / "x.npy", mmap_mode="r")
    rows = np.arange(0, n, 2)  # the split holds the even rows of the file
    return MemmapSplit(array, rows, np.arange(n), shard_size=shard_size), rows


@pytest.mark.parametrize(("n", "shard", "batch"), [(200, 16, 7), (200, 1000, 7), (64, 8, 8)])
def test_memmap_stream_uses_every_row_once(tmp_path, n, shard, batch):
    split, rows = memmap_split(tmp_path, n, shard)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        batches = list(split.stored_batches(batch, shuffle=True, generator=g))
        assert all(len(x) == batch for x, _ in batches[:-1])
        values = torch.cat([x for x, _ in batches])[:, 0]
        assert sorted(values.tolist()) == sorted((2 * rows).tolist())
        for x, y in batches:
            assert torch.equal(x[:, 0], 2 * y)  # labels of the same file rows
    in_order = torch.cat([x for x, _ in split.stored_batches(batch, shuffle=False)])[:, 0]
    assert in_order.tolist() == (2 * rows).tolist()  # unshuffled: file order


def test_memmap_shuffle_semantics_shard_local(tmp_path):
    split, rows = memmap_split(tmp_path, 400, 20)  # 200 split rows, 10 shards of 20
    g = torch.Generator().manual_seed(3)
    epoch1 = torch.cat([x for x, _ in split.stored_batches(20, True, g)])[:, 0] // 2
    epoch2 = torch.cat([x for x, _ in split.stored_batches(20, True, g)])[:, 0] // 2
    assert not torch.equal(epoch1, epoch2)
    # batch size == shard size: every batch is one whole shard, rows permuted inside it
    shards = (torch.searchsorted(torch.as_tensor(rows), epoch1) // 20).reshape(10, 20)
    assert bool((shards == shards[:, :1]).all())
    assert sorted(shards[:, 0].tolist()) == list(range(10))
    assert shards[:, 0].tolist() != list(range(10))  # the shard order is shuffled too


def test_memmap_drop_last(tmp_path):
    split, _ = memmap_split(tmp_path, 200, 16)  # 100 rows
    sizes = [len(x) for x, _ in split.stored_batches(30, True, drop_last=True)]
    assert sizes == [30, 30, 30]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_small_dataset_lives_on_the_gpu():
    x = torch.randint(0, 256, (500, 1, 4, 4), dtype=torch.uint8)
    split = Split(x)
    data = Dataset("g", (1, 4, 4), split, split, split, Dequantize(256), "unit-interval", "g")
    g = torch.Generator().manual_seed(0)
    batches = list(data.batches("train", 64, shuffle=True, generator=g, device="cuda"))
    resident = data._resident[("train", "cuda")]
    assert resident.x.is_cuda and resident.x.dtype == torch.uint8
    assert all(b.is_cuda for b, _ in batches)
    list(data.batches("train", 64, shuffle=True, generator=g, device="cuda"))
    assert data._resident[("train", "cuda")] is resident  # moved once
    again = list(data.batches("train", 64, True, torch.Generator().manual_seed(0), device="cuda"))
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(batches, again, strict=True))
    levels = torch.floor(torch.cat([b for b, _ in batches]) * 256)
    assert torch.equal(levels.sort(0).values.cpu(), x.float().sort(0).values)
