"""Memory estimates made before allocating: a request that cannot fit is refused with the
estimate, the memory available and the setting that asked, instead of a failed allocation
(a traceback after minutes) or the operating system's out-of-memory killer.

* :func:`available_bytes`: what the device can still give: ``MemAvailable`` of
  ``/proc/meminfo`` (or the physical pages the OS reports free) for the CPU,
  ``torch.cuda.mem_get_info`` for a GPU; None where unknown (nothing is refused then).
* :func:`check_fits`: refuse an estimate above it.
(``vaekit.training.step.check_training_fits`` applies them to a model's parameters.)

Estimates are lower bounds (activations and the allocator's slack come on top), so a refusal
is certain, and a request that passes may still be tight.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


class MemoryEstimateError(ValueError):
    """A request whose estimated memory exceeds what the device has available."""


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Bytes the device can still allocate (see the module doc); None if unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(count: float) -> str:
    """``"25.6 GB"``: decimal units, three significant digits."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{int(count)} bytes"


def check_fits(estimate: float, what: str, device: torch.device | str = "cpu") -> None:
    """Refuse ``estimate`` bytes where the device has fewer available. ``what`` names the
    request and the flag that made it (``"-n 100000000: decoding 100000000 samples"``)."""
    available = available_bytes(device)
    if available is not None and estimate > available:
        raise MemoryEstimateError(
            f"{what} needs about {format_bytes(estimate)} of memory ({int(estimate):,} bytes, "
            f"a lower bound), more than the {format_bytes(available)} available on "
            f"{torch.device(device).type}"
        )
