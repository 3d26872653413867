"""The lock that says "a vaekit process is writing here", and a run directory prepared under it.

A process that writes a run directory (training, resuming, saving eval.json or a report)
holds an exclusive ``flock`` on ``.vaekit-lock`` in it. A second writer fails at once with a
one-line error naming the PID that holds the lock. The operating system releases the lock when
the holder exits, however it exits (SIGKILL included), so a crash never leaves a stale lock to
clean up. Within one process the lock is re-entrant (training writes its report while it holds
the lock). On platforms without ``fcntl`` (Windows) there is no lock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from vaekit.rundir.marker import LOCK_FILE, RunDirError, check_replace, run_entries, write_marker

try:  # POSIX advisory locks; absent on Windows, where runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms the tests run on
    fcntl = None  # type: ignore[assignment]


class RunLockedError(RunDirError):
    """Another process holds the run directory's lock."""


# Locks this process holds: resolved directory -> [file descriptor, depth]. flock locks
# belong to an open file, so a second open in the same process would lock itself out.
_HELD: dict[Path, list[int]] = {}
_HELD_LOCK = threading.Lock()


def lock_root(path: str | Path) -> Path:
    """The directory whose lock guards writes to ``path``: a checkpoint directory
    (``RUN/checkpoints/last``) is guarded by its run's lock."""
    path = Path(path)
    if path.parent.name == "checkpoints" and path.parent.parent.is_dir():
        return path.parent.parent
    return path


def lock_holder(run_dir: str | Path) -> str:
    """The PID written into ``run_dir``'s lock file by its holder (``"unknown"`` if none)."""
    try:
        path = Path(run_dir) / LOCK_FILE
        text = path.read_text().strip() if path.is_file() else ""  # never block on a FIFO
    except (OSError, UnicodeDecodeError):
        return "unknown"
    return text if text.isdigit() else "unknown"


def training_pid(run_dir: str | Path) -> str | None:
    """The PID of another process holding ``run_dir``'s lock (a run being trained, or a file
    of it being written), or None when no other process holds it. Asks with a shared lock
    that is let go at once, so the holder is never disturbed."""
    key = Path(run_dir).resolve()
    with _HELD_LOCK:
        if fcntl is None or key in _HELD:  # no locks here, or this process is the holder
            return None
    try:
        fd = os.open(key / LOCK_FILE, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return lock_holder(key)
    finally:
        os.close(fd)  # closing the file lets go of the shared lock
    return None


def training_note(run_dir: str | Path) -> str | None:
    """What to say when ``run_dir`` has no final weights because another process is training
    it (None when no other process holds its lock): which process, and the checkpoint that
    can be evaluated meanwhile."""
    pid = training_pid(lock_root(run_dir))
    if pid is None:
        return None
    last = Path(run_dir) / "checkpoints" / "last"
    meanwhile = (
        f"a checkpoint can be evaluated meanwhile: {last}"
        if last.is_dir()
        else "no checkpoint is written yet; wait for checkpoints/last"
    )
    return (
        f"{run_dir}: the run is training (vaekit process PID {pid}), so its final weights "
        f"are not written yet; {meanwhile}"
    )


class RunLock:
    """An exclusive, re-entrant (within this process) lock on one run directory.

    ``acquire(path)`` fails at once with :class:`RunLockedError` if another process holds it;
    ``release()`` is idempotent. A directory where the lock file cannot be created (read-only)
    is not locked: nothing can be written there anyway, and the write reports why.
    """

    def __init__(self) -> None:
        self.path: Path | None = None

    def acquire(self, run_dir: str | Path) -> RunLock:
        if self.path is not None:
            raise RuntimeError(f"RunLock already holds {self.path}")
        key = Path(run_dir).resolve()
        with _HELD_LOCK:
            if key in _HELD:
                _HELD[key][1] += 1
                self.path = key
                return self
            if fcntl is None:
                return self
            fd = _open_lock_file(key / LOCK_FILE)
            if fd is None:
                return self
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise RunLockedError(
                    f"{run_dir}: in use by another vaekit process (PID {lock_holder(key)}); "
                    "wait for it to finish or stop it"
                ) from None
            with contextlib.suppress(OSError):  # a read-only lock file: the PID stays unknown
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            _HELD[key] = [fd, 1]
            self.path = key
        return self

    def release(self) -> None:
        with _HELD_LOCK:
            key, self.path = self.path, None
            if key is None or key not in _HELD:
                return
            _HELD[key][1] -= 1
            if _HELD[key][1] == 0:
                fd = _HELD.pop(key)[0]
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                os.close(fd)  # closing the file releases the flock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open_lock_file(path: Path) -> int | None:
    """Open (creating) the lock file; an existing read-only one is opened for reading (flock
    works on it); None where it cannot be created."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except FileNotFoundError:
        return None
    except PermissionError:
        try:
            return os.open(path, os.O_RDONLY)
        except OSError:
            return None
    except OSError as exc:
        if exc.errno in (30,):  # EROFS: a read-only file system
            return None
        raise


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold the lock guarding writes to ``path`` (see :func:`lock_root`) for the block."""
    lock = RunLock().acquire(lock_root(path))
    try:
        yield
    finally:
        lock.release()


def prepare(out: str | Path, overwrite: bool, lock: RunLock | None = None) -> Path:
    """Create the empty run directory ``out`` (with its marker) and return it.

    An existing non-empty ``out`` is refused unless ``overwrite`` and vaekit created it (its
    marker is there); it is then emptied under the run lock, so a directory another process
    is writing is never touched. ``lock`` (if given) is acquired on ``out`` and kept;
    otherwise a lock is held only while the directory is prepared.
    """
    out = Path(out)
    check_replace(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    held = lock if lock is not None else RunLock()
    held.acquire(out)
    try:
        for entry in run_entries(out):  # under the lock: nobody else is writing here
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        write_marker(out)
    except BaseException:
        held.release()
        raise
    if lock is None:
        held.release()
    return out
