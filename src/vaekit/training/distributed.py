"""Multi-process training through ``torch.distributed`` (launched by ``torchrun``).

``torchrun --nproc_per_node N -m vaekit train ...`` starts N processes with the environment
variables RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set; :func:`setup` reads
them, joins the process group (NCCL on CUDA, gloo on CPU) and picks this rank's device.
Without those variables everything here is a no-op for a single process.

Data parallelism is exact: every rank draws the same global permutation and the same
stochastic transform of each *global* batch (all ranks hold the same data generator), then
keeps its contiguous shard of the rows (:meth:`DistContext.shard`). The trainer scales each
rank's mean loss by ``world_size * n_local / n_global``, so DDP's gradient average equals
the gradient of the global batch mean even when the shards differ in size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vaekit.support.spelling import spell


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: ``rank`` of ``world_size`` (rank 0 writes files)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of a global batch of ``n`` rows that this rank trains on:
        contiguous, sizes differing by at most one (the first ``n % world_size`` ranks get
        one more)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)


def setup(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group if launched by torchrun; return the context and this rank's
    device (``cuda:LOCAL_RANK`` when ``device`` is CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(), device
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(
            f"{spell('--device', 'train.device =')} {device.type!r}: distributed training "
            "needs cuda or cpu"
        )
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank), device


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op for one process); returns it."""
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_tensor(
    tensor: torch.Tensor, ctx: DistContext, device: torch.device
) -> list[torch.Tensor]:
    """Every rank's copy of a same-shaped tensor (e.g. an RNG state), on the CPU, in rank
    order. NCCL only moves CUDA tensors, so the exchange goes through ``device``."""
    if not ctx.enabled:
        return [tensor.cpu()]
    moved = tensor.to(device)
    out = [torch.empty_like(moved) for _ in range(ctx.world_size)]
    dist.all_gather(out, moved)
    return [t.cpu() for t in out]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def teardown(ctx: DistContext, wait: bool = True) -> None:
    """Leave the process group; ``wait``: after a barrier, so no rank leaves while others
    still talk (not after an error, when the other ranks may never reach it)."""
    if ctx.enabled and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
