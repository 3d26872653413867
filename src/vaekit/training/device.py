"""Where training runs: the device, determinism switches and the process group."""

from __future__ import annotations

import os

import torch

from vaekit.config import TrainConfig
from vaekit.support.runtime import keep_freed_memory
from vaekit.support.spelling import spell_value
from vaekit.training import distributed


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; an explicit device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{spell_value('--device', 'train.device', 'cuda')}: no CUDA device is available "
            f"(try {spell_value('--device', 'train.device', 'auto')})"
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"{spell_value('--device', 'train.device', 'mps')}: MPS is not available "
            f"(try {spell_value('--device', 'train.device', 'auto')})"
        )
    return torch.device(name)


def setup_device(tc: TrainConfig) -> tuple[distributed.DistContext, torch.device]:
    """Switch on deterministic kernels if asked, join the process group under ``torchrun``
    (a single-process context otherwise) and return it with this rank's device."""
    if tc.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    ctx, device = distributed.setup(resolve_device(tc.device))
    if device.type == "cpu":
        keep_freed_memory()  # no page faults per step (vaekit/support/runtime.py)
    return ctx, device
