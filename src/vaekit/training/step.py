"""The pieces of one optimisation step: the module DDP and torch.compile wrap, the optimiser,
the gradient norm and the one all-reduce a step makes."""

from __future__ import annotations

import torch
from torch import nn

from vaekit import distributed
from vaekit.models import Model


class ObjectiveModule(nn.Module):
    """``forward(x, y) = objective(model, x, y)``: the one call DDP and torch.compile wrap (DDP
    only synchronises gradients of computations that go through its ``forward``)."""

    def __init__(self, model: Model, objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        return self.objective(self.model, x, y)


def build_step_module(
    model: Model, objective, ctx: distributed.DistContext, device: torch.device, compile: bool
) -> nn.Module:
    """``ObjectiveModule(model, objective)``, wrapped in DDP under ``torchrun`` and compiled
    if asked; calling it returns the objective's ``(loss, metrics)``."""
    step_module = ObjectiveModule(model, objective)
    if ctx.enabled:
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None
        )
    return torch.compile(step_module) if compile else step_module


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the device (CPU, CUDA): one pass
    over the parameters instead of a dozen elementwise ops per tensor. It was a third of a
    training step's time on the benchmarks' reference model (benchmarks/RESULTS.md)."""
    params = list(model.parameters())
    device = params[0].device.type
    fused = device in ("cpu", "cuda") and all(p.dtype.is_floating_point for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def gradient_norm(params: list[nn.Parameter], clip: float | None) -> float:
    """The global L2 norm of the gradients (before clipping); clips them to ``clip`` if given."""
    if clip is not None:
        return float(nn.utils.clip_grad_norm_(params, clip))
    # The norm only: clip_grad_norm_ would also rescale every gradient by 1.0.
    grads = [p.grad for p in params if p.grad is not None]
    return float(nn.utils.get_total_norm(grads)) if grads else 0.0


def reduce_step(
    values: torch.Tensor,
    stop: bool,
    checkpoint_due: bool,
    bad: bool,
    ctx: distributed.DistContext,
    device: torch.device,
) -> tuple[list[float], bool, bool, bool]:
    """Sum over ranks, in one all-reduce, a step's metric sums ``values [k]`` (float64, nats
    per example times examples) and its control flags: returns ``(sums, stop, checkpoint_due,
    bad)``, each flag true if it is on any rank. Ctrl-C on any rank and rank 0's checkpoint
    clock ride on it, so every rank stops or checkpoints at the same step."""
    flag = torch.tensor([float(bad)], dtype=torch.float64)
    control = torch.tensor([float(stop), float(checkpoint_due)], dtype=torch.float64)
    sums = distributed.all_reduce_sum(torch.cat([values, control, flag]).to(device), ctx)
    sums = sums.cpu().tolist()
    return sums[:-3], sums[-3] > 0, sums[-2] > 0, sums[-1] > 0
