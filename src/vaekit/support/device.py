"""Which device a command runs on: one reading of ``--device`` for training and evaluation."""

from __future__ import annotations

import re

import torch

from vaekit.support.spelling import spell_value

DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"
_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def resolve_device(name: str, field: str = "train.device") -> torch.device:
    """The device ``name`` names: ``auto`` picks CUDA, then MPS, then CPU; ``cpu``, ``cuda``,
    ``cuda:N`` (the N-th GPU) and ``mps`` must be available. The ValueError names the
    setting as the caller wrote it: ``--device`` on the command line, ``field`` in Python."""
    setting = spell_value("--device", field, name)
    fallback = spell_value("--device", field, "auto")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{setting}: not a device (one of {DEVICE_NAMES})")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{setting}: no CUDA device is available (try {fallback})")
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"{setting}: there are {count} CUDA devices, cuda:0 to cuda:{count - 1}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{setting}: MPS is not available (try {fallback})")
    return device
