"""Where training runs: the device (read by ``vaekit.support.device``), determinism switches
and the process group."""

from __future__ import annotations

import os

import torch

from vaekit.config import TrainConfig
from vaekit.support.device import resolve_device
from vaekit.support.runtime import keep_freed_memory
from vaekit.training import distributed


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
