"""The CPU allocator setting: freed blocks stay in the heap, so a training step stops paying
page faults for memory the previous step just released (vaekit/support/runtime.py)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from vaekit.support import runtime

GLIBC_LINUX = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

FAULTS_PER_STEP = textwrap.dedent(
    """
    import resource, sys, torch
    if sys.argv[1] == "keep":
        from vaekit.support.runtime import keep_freed_memory
        assert keep_freed_memory()
    torch.set_num_threads(1)
    net = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 784))
    x = torch.rand(128, 784)
    def steps():
        for _ in range(50):
            net.zero_grad(set_to_none=True)
            net(x).square().mean().backward()
    steps()  # warm-up: the heap reaches its working size
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    steps()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
    """
)


def _faults_per_step(mode: str) -> float:
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}  # no MALLOC_* from the caller
    env["PYTHONPATH"] = ":".join(p for p in sys.path if p)
    out = subprocess.run(
        [sys.executable, "-c", FAULTS_PER_STEP, mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC_LINUX, reason="mallopt settings exist on glibc Linux only")
def test_kept_memory_removes_the_page_faults_of_a_training_step():
    default, kept = _faults_per_step("default"), _faults_per_step("keep")
    # Measured: about 200 minor faults per step with glibc's defaults, about 3 with the setting.
    assert default > 50
    assert kept < default / 10


def test_a_users_own_malloc_settings_are_left_alone(monkeypatch):
    monkeypatch.setattr(runtime, "_applied", None)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert runtime.keep_freed_memory() is False
    monkeypatch.setattr(runtime, "_applied", None)
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert runtime.keep_freed_memory() is False


def test_thread_policy_sizes_the_pool_and_waits_passively(monkeypatch):
    for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delitem(sys.modules, "torch")  # as before torch's first import
    decided = runtime.apply_thread_policy()
    assert decided == {"OMP_WAIT_POLICY": "PASSIVE", "threads": str(runtime.usable_cores())}
    import os

    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert os.environ["OMP_NUM_THREADS"] == str(runtime.usable_cores())


def test_thread_policy_keeps_the_users_settings(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert runtime.apply_thread_policy() == {}


def test_thread_policy_after_torch_sets_the_pool_only(monkeypatch):
    import torch

    before = torch.get_num_threads()
    for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(key, raising=False)
    try:
        decided = runtime.apply_thread_policy()  # torch is loaded: too late for the wait policy
        assert "OMP_WAIT_POLICY" not in decided
        assert torch.get_num_threads() == runtime.usable_cores()
    finally:
        torch.set_num_threads(before)


def test_usable_cores_follows_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0})
    assert runtime.usable_cores() == 1
