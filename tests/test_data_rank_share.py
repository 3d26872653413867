"""Each rank reads only its rows of a streamed split, and the ranks together still train on
the single-process epoch: the same global batches, bit for bit, whatever the world size, each
example exactly once, and the same epoch again when resumed mid-way. Ranks are simulated in
one process, as the trainer uses them (``for_rank`` then ``DistContext.shard``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaekit.data import load_dataset
from vaekit.data.pack import write_pack
from vaekit.data.splits import MemmapSplit
from vaekit.training.distributed import DistContext

BATCH = 50  # 1347 training rows: 26 full batches and a last one of 47


class Counting:
    """An array that records every row read from it."""

    def __init__(self, array) -> None:
        self.array, self.read = array, []
        self.shape, self.dtype, self.itemsize = array.shape, array.dtype, array.itemsize

    def __getitem__(self, rows):
        rows = np.asarray(rows)
        self.read.extend(rows.tolist())
        return self.array[rows]


@pytest.fixture(scope="module", params=["npy", "webdataset"])
def split(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("share") / request.param
    pack = write_pack(
        load_dataset("digits"), out, "digits", 0.01, log=lambda _: None, layout=request.param
    )
    train = load_dataset(str(pack)).train
    return MemmapSplit(train.array, train.rows, train.labels, shard_size=97)


def global_batches(split, world, seed=3, start=0):
    """The global batches the ranks train on, put back together, and the rows each read."""
    per_rank, reads = [], []
    for rank in range(world):
        view = split.for_rank(rank, world)
        view.array = Counting(split.array)
        ctx = DistContext(rank=rank, world_size=world)
        mine = []
        for x, y in view.epoch_batches(BATCH, torch.Generator().manual_seed(seed), start=start):
            lo, hi = ctx.shard(x.shape[0])
            mine.append((x[lo:hi], y[lo:hi]))
        per_rank.append(mine)
        reads.append(view.array.read)
    batches = [
        (torch.cat([r[b][0] for r in per_rank]), torch.cat([r[b][1] for r in per_rank]))
        for b in range(len(per_rank[0]))
    ]
    return batches, reads


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_read_disjoint_shares_that_make_the_single_process_epoch(split, world):
    alone, (read_alone,) = global_batches(split, 1)
    together, reads = global_batches(split, world)
    assert len(together) == len(alone) == 27
    for (x1, y1), (xw, yw) in zip(alone, together, strict=True):
        assert torch.equal(x1, xw) and torch.equal(y1, yw)
    assert sorted(read_alone) == list(range(len(split)))  # one process: every row once
    everyone = [row for rows in reads for row in rows]
    assert sorted(everyone) == list(range(len(split)))  # together: every row once, no overlap
    for rows in reads:  # each rank about its share, never the whole split
        assert abs(len(rows) - len(split) / world) <= 27


@pytest.mark.parametrize("world", [1, 2, 3])
def test_a_rank_resumed_mid_epoch_reads_the_same_remaining_batches(split, world):
    whole, _ = global_batches(split, world)
    resumed, reads = global_batches(split, world, start=11)
    assert len(resumed) == len(whole) - 11
    for (xa, ya), (xb, yb) in zip(whole[11:], resumed, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    if world > 1:  # a rank reads none of the rows before the resumed batch
        assert len([row for rows in reads for row in rows]) == len(split) - 11 * BATCH


def test_a_world_size_that_does_not_divide_the_shards_still_covers_every_row(split):
    assert len(split) % 97 and (len(split) // 97 + 1) % 3  # 14 shards of 97 rows, 3 ranks
    _, reads = global_batches(split, 3)
    assert sorted(row for rows in reads for row in rows) == list(range(len(split)))
