"""The process's runtime settings. Today: keep freed CPU memory in the process for the next
step (glibc malloc settings).

Every training step on the CPU allocates and frees the same activation and gradient tensors
(a few hundred KiB each on the benchmarks' reference model: MLP 784-512-256, 16-d latent,
Bernoulli; benchmarks/RESULTS.md). With glibc's defaults, blocks above
the dynamic mmap threshold are mapped and unmapped on every call and the heap top is trimmed
back to the OS, so each step re-faults its memory page by page: 179 minor page faults and
0.76 ms of kernel CPU time per step on that model, against 0 faults and 0.04 ms once freed
memory stays in the heap. The end-to-end A/B in benchmarks/RESULTS.md could not separate the
wall-clock gain from the machine's run-to-run noise (about 10%). Peak memory does not
grow: the heap keeps what the loop already used at its peak.

The settings are process-wide, so they are applied once, only on Linux with glibc, and never
when the user chose their own (any ``MALLOC_*`` variable set, or another allocator preloaded).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings above once per process; return whether they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    user_tuned = any(key.startswith("MALLOC_") for key in os.environ)
    preloaded = "malloc" in os.environ.get("LD_PRELOAD", "")  # jemalloc, tcmalloc, mimalloc
    if not sys.platform.startswith("linux") or user_tuned or preloaded:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "gnu_get_libc_version"):  # musl: no mallopt semantics to rely on
            return False
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
        ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
    except (OSError, AttributeError):
        return False
    _applied = ok
    return ok
