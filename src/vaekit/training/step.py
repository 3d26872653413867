"""The pieces of one optimisation step: the module DDP and torch.compile wrap, the optimiser,
the gradient norm and the one all-reduce a step makes."""

from __future__ import annotations

import math

import torch
from torch import nn

from vaekit.models import Model, build_model
from vaekit.settings import ModelConfig
from vaekit.support.memory import check_fits
from vaekit.training import distributed


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
    model: Model, objective, ctx: distributed.DistContext, device: torch.device
) -> nn.Module:
    """``ObjectiveModule(model, objective)``, wrapped in DDP under ``torchrun``; calling it
    returns the objective's ``(loss, metrics)``. Whether it is compiled: ``compiling.py``."""
    step_module = ObjectiveModule(model, objective)
    if ctx.enabled:
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None
        )
    return step_module


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the device (CPU, CUDA): one pass
    over the parameters instead of a dozen elementwise ops per tensor. It was a third of a
    training step's time on the benchmarks' reference model (benchmarks/RESULTS.md)."""
    params = list(model.parameters())
    device = params[0].device.type
    fused = device in ("cpu", "cuda") and all(p.dtype.is_floating_point for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def check_gradients(
    params: list[nn.Parameter], clip: float | None, measure: bool
) -> tuple[bool, float | None]:
    """The NaN/inf guard's look at the gradients: ``(finite, norm)``.

    With ``clip``, the global L2 norm before clipping (``clip_grad_norm_`` computes it anyway)
    and the gradients clipped to it. Otherwise the norm only when ``measure`` (a logging step:
    the ``grad_norm`` metric); on the other steps a single non-finite check over all gradients
    (the kernel the AMP grad scaler uses, one pass multiplying by exactly 1.0), about half the cost
    of the norm, which matters: the pass over every gradient was 3-4 % of the reference
    model's step. ``norm`` is None when not measured."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True, 0.0
    if clip is not None:
        norm = float(nn.utils.clip_grad_norm_(params, clip))
        return math.isfinite(norm), norm
    if measure:
        norm = float(nn.utils.get_total_norm(grads))
        return math.isfinite(norm), norm
    found = torch.zeros(1, device=grads[0].device)
    one = torch.ones(1, device=grads[0].device)
    try:  # unscale by exactly 1.0: the gradients' values stay as they are
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, one)
    except (RuntimeError, NotImplementedError):  # a dtype or device without the kernel
        return math.isfinite(float(nn.utils.get_total_norm(grads))), None
    return not bool(found.item()), None


def reduce_step(
    values: list[float], flags: list[bool], ctx: distributed.DistContext, device: torch.device
) -> tuple[list[float], list[bool]]:
    """Sum over ranks, in one all-reduce, a step's metric sums ``values`` (nats per example
    times examples) and its control ``flags``: returns ``(sums, flags)``, each flag true if it
    is on any rank. Ctrl-C on any rank, the NaN/inf guard and rank 0's clocks (a checkpoint
    due, the time budget spent) ride on it, so every rank stops or checkpoints at the same
    step. One process: nothing to reduce, and no tensors are built."""
    if not ctx.enabled:
        return values, flags
    packed = torch.tensor([*values, *map(float, flags)], dtype=torch.float64, device=device)
    sums = distributed.all_reduce_sum(packed, ctx).cpu().tolist()
    return sums[: len(values)], [total > 0 for total in sums[len(values) :]]


def parameter_count(config: ModelConfig) -> int:
    """Parameters of the model ``config`` builds, counted on the ``meta`` device."""
    with torch.device("meta"):
        model = build_model(config)
    return sum(math.prod(p.shape) for p in model.parameters())


def check_training_fits(config: ModelConfig, device: torch.device | str, copies: int = 4) -> None:
    """Refuse a model whose parameters alone, held ``copies`` times (weights, gradients,
    Adam's two moments; one more with weight averaging), exceed the device's memory. The
    message names the model's size fields (``model.hidden_dims`` ...) as set."""
    count = parameter_count(config)
    element = torch.empty((), dtype=torch.get_default_dtype()).element_size()
    sizes = [
        f"model.{name} = {getattr(config, name)}"
        for name in ("hidden_dims", "latent_dim", "latent_dims", "codebook_size", "code_dim")
        if getattr(config, name, None) is not None
    ]
    what = (
        f"the model ({', '.join([*sizes, f'data shape {config.data_shape}'])}) has "
        f"{count:,} parameters; training them ({copies} copies: weights, gradients, the "
        "optimiser's moments)"
    )
    check_fits(count * element * copies, what, device)
