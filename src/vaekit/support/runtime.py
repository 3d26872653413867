"""The process's runtime settings: how many CPU threads torch uses and how they wait
(:func:`apply_thread_policy`), and keeping freed CPU memory in the process for the next step
(glibc malloc settings, :func:`keep_freed_memory`).

Threads. torch runs its CPU kernels on an OpenMP pool. By default the pool has one thread
per core of the machine (not of the process: a container or ``taskset`` may allow fewer), and
idle OpenMP threads spin for a while before they sleep. When other processes also want the
cores, spinning threads steal the time the working thread needs; benchmarks/RESULTS.md
records the throughput of each setting on a quiet and on a loaded machine
(benchmarks/bench_threads.py). The command line therefore sizes the pool from the cores this
process may run on (its CPU affinity and a cgroup CPU quota) and asks OpenMP to wait
passively. A user's own ``OMP_NUM_THREADS`` or ``OMP_WAIT_POLICY`` is always kept.

Memory.

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
from pathlib import Path

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024

_applied: bool | None = None


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask, capped by a cgroup v2 CPU quota
    (``cpu.max``, e.g. a container limited to 2 of 64 cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def apply_thread_policy() -> dict[str, str]:
    """Size torch's CPU thread pool to :func:`usable_cores` and make idle OpenMP threads
    sleep instead of spin, unless the user set ``OMP_NUM_THREADS`` / ``OMP_WAIT_POLICY``.

    The wait policy is read when OpenMP starts, i.e. when torch is first imported: call this
    before that (the command line does). Returns what was decided, for the log."""
    decided: dict[str, str] = {}
    if "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        decided["OMP_WAIT_POLICY"] = "PASSIVE"
    if "OMP_NUM_THREADS" not in os.environ:
        cores = usable_cores()
        os.environ["OMP_NUM_THREADS"] = str(cores)
        if "torch" in sys.modules:
            import torch

            torch.set_num_threads(cores)
        decided["threads"] = str(cores)
    return decided


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
