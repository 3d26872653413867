"""Which device a command runs on: one reading of ``--device`` for training and evaluation."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from vaekit.support.spelling import spell_value

if TYPE_CHECKING:
    import torch

DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"
# Every command that takes --device starts from this default and shows this help, so a model
# trained on a GPU is also evaluated there unless the user says otherwise.
DEFAULT_DEVICE = "auto"
DEVICE_HELP = (
    "where to run: auto (CUDA if available, else MPS, else CPU), cpu, cuda, cuda:N (the N-th "
    "GPU) or mps; the result records the device used"
)
_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def is_device_name(name: object) -> bool:
    """Whether ``name`` is spelled as a device (``auto``, ``cpu``, ``cuda``, ``cuda:N``,
    ``mps``), available or not."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def resolve_device(name: str, field: str = "train.device") -> torch.device:
    """The device ``name`` names: ``auto`` picks CUDA, then MPS, then CPU; ``cpu``, ``cuda``,
    ``cuda:N`` (the N-th GPU) and ``mps`` must be available. The ValueError names the
    setting as the caller wrote it: ``--device`` on the command line, ``field`` in Python."""
    import torch  # here: the flags' help and defaults above must not import torch

    setting = spell_value("--device", field, name)
    fallback = spell_value("--device", field, "auto")
    if not is_device_name(name):
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
