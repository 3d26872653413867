"""The processes of a torchrun job started on this machine, for the elastic test and
benchmarks/bench_elastic.py: a free port for its rendezvous, every process of the job (found
by a token in its environment) to kill when it is done, and an agent's workers.

torchrun starts every worker in a session of its own, so killing an agent's process group
leaves its workers running; the token finds agents, workers and orphans alike. Linux only
(it reads /proc)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

# Set to a fresh token (uuid4().hex) in the environment of the job's agents.
TOKEN_ENV = "VAEKIT_TORCHRUN_JOB_TOKEN"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_with(token: str) -> list[int]:
    """Process ids whose environment holds ``TOKEN_ENV=token`` (agents, workers, orphans)."""
    needle = f"{TOKEN_ENV}={token}".encode()
    return _processes_where(lambda proc: needle in (proc / "environ").read_bytes().split(b"\0"))


def children(pid: int) -> list[int]:
    """Direct children of ``pid``: an agent's workers."""
    return _processes_where(
        lambda proc: int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid
    )


def _processes_where(holds) -> list[int]:
    """Process ids whose /proc/PID folder ``holds(folder)``; one that ended meanwhile (or is
    not ours to read) is passed over."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if holds(entry):
                    found.append(int(entry.name))
    return found


def kill_all(token: str) -> None:
    """SIGKILL every process of the job until none is left (10 s at most)."""
    deadline = time.monotonic() + 10
    while (pids := processes_with(token)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
