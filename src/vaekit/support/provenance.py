"""Where and with what a number was produced: the device, and the torch and vaekit versions.

The trainer stores this (with the training time) in a run's ``config.json`` metadata and
``vaekit evaluate`` in ``eval.json``, so the report's headline can say it.
"""

from __future__ import annotations

import platform
from typing import Any

import torch

from vaekit._version import __version__


def describe_device(device: torch.device) -> str:
    """A person's name for ``device``: "cpu (2 threads, x86_64)", "cuda:0 (NVIDIA H200)"."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        plural = "thread" if threads == 1 else "threads"
        return f"cpu ({threads} {plural}, {platform.machine() or 'unknown architecture'})"
    return str(device)


def environment(device: torch.device) -> dict[str, Any]:
    """``{"device", "torch_version", "vaekit_version"}`` of this process on ``device``."""

    return {
        "device": describe_device(device),
        "torch_version": torch.__version__,
        "vaekit_version": __version__,
    }


def training_metadata(device: torch.device, seconds: float, world_size: int = 1) -> dict:
    """What a trained run's ``config.json`` records about its training: the environment,
    ``train_seconds`` (wall-clock seconds from setup to the saved model, every resumed session
    included) and ``world_size`` (processes that trained)."""
    return environment(device) | {"train_seconds": seconds, "world_size": world_size}
