"""Run-directory safety: the marker that says "vaekit made this", the lock that says "a vaekit
process is writing here", the rules for ``overwrite``, and one file mode for every file.

* **Marker.** Every directory vaekit creates for a run (``train --out``, ``compare --out``)
  gets a small JSON file ``.vaekit-run``. ``overwrite`` empties only a directory holding one:
  never an arbitrary folder, never the current directory, a parent of it, the home folder or
  the file-system root, so a mistyped ``--out`` cannot delete a user's files.
* **Lock.** A process that writes a run directory (training, resuming, saving eval.json or a
  report) holds an exclusive ``flock`` on ``.vaekit-lock`` in it. A second writer fails at once
  with a one-line error naming the PID that holds the lock. The operating system releases the
  lock when the holder exits, however it exits (SIGKILL included), so a crash never leaves a
  stale lock to clean up. Within one process the lock is re-entrant (training writes its
  report while it holds the lock). On platforms without ``fcntl`` (Windows) there is no lock.
* **Spelling.** Messages name what the user typed: ``--out``/``--overwrite`` on the command
  line (:func:`command_line`), ``out=``/``overwrite=True`` from Python.
* **File mode.** Files written through a temporary file would be 0600 (``mkstemp``); every
  file vaekit writes gets ``0o666 & ~umask`` instead, the mode ``open()`` gives, so a run
  directory never mixes private and shared files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vaekit._version import __version__
from vaekit.support.spelling import arg  # messages spell arguments the caller's way

try:  # POSIX advisory locks; absent on Windows, where runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms the tests run on
    fcntl = None  # type: ignore[assignment]

MARKER_FILE = ".vaekit-run"
LOCK_FILE = ".vaekit-lock"
MARKER_FORMAT = "vaekit-run"


class RunDirError(ValueError):
    """A run directory cannot be created, replaced or written (the message says why)."""


class RunLockedError(RunDirError):
    """Another process holds the run directory's lock."""


# --- file mode -------------------------------------------------------------------------------

_UMASK_LOCK = threading.Lock()


def file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open()`` gives a new file (read from the process umask)."""
    with _UMASK_LOCK:  # reading the umask means setting it: keep other threads out meanwhile
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


# --- the marker ------------------------------------------------------------------------------


def write_marker(run_dir: str | Path) -> Path:
    """Write ``run_dir/.vaekit-run`` (what created the directory, and when)."""

    path = Path(run_dir) / MARKER_FILE
    made = {"format": MARKER_FORMAT, "vaekit_version": __version__, "created": time.time()}
    if os.environ.get("TORCHELASTIC_RUN_ID"):  # made by this torchrun job (see elastic_job)
        made["torchelastic_run_id"] = os.environ["TORCHELASTIC_RUN_ID"]
    text = json.dumps(made)
    path.write_text(text + "\n")
    return path


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` holds the marker vaekit writes into every directory it creates."""
    try:
        marker = Path(path) / MARKER_FILE
        if not marker.is_file():  # a FIFO in its place would block the read forever
            return False
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == MARKER_FORMAT


def elastic_job(path: str | Path) -> str | None:
    """The torchrun job id (``--rdzv-id``) recorded when ``path`` was made, or None."""
    try:
        data = json.loads((Path(path) / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None
    job = data.get("torchelastic_run_id") if isinstance(data, dict) else None
    return job if isinstance(job, str) else None


def protected_reason(path: Path) -> str | None:
    """Why ``path`` may never be emptied (None if it may): the current directory, one of its
    parents, the home folder or the file-system root."""
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd:
        return "it is the current directory"
    if resolved in cwd.parents:
        return "it contains the current directory"
    if resolved == Path.home().resolve():
        return "it is the home folder"
    if resolved == Path(resolved.anchor):
        return "it is the file-system root"
    return None


def _entries(path: Path) -> list[Path]:
    """The directory's entries other than the lock file (a run's lock outlives its clearing)."""
    return [p for p in path.iterdir() if p.name != LOCK_FILE]


def check_replace(out: str | Path, overwrite: bool, holding: str | None = None) -> bool:
    """Whether directory ``out`` holds entries that writing it would replace (True only with
    ``overwrite``). Every command that creates a directory asks this first: an existing
    non-empty ``out`` is refused unless ``overwrite`` and vaekit created it (its marker is
    there), and never the current directory, a parent of it, the home folder or the root.
    ``holding``: the file that only this command writes there (``export.json``), so that
    it replaces only its own kind of directory, never a training run."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{arg('out', out)}: exists and is not a directory")
    if not (out.exists() and _entries(out)):
        return False
    if not overwrite:
        raise RunDirError(
            f"{arg('out', out)}: directory exists and is not empty; choose another "
            f"directory or replace one vaekit created with {arg('overwrite', True)}"
        )
    reason = protected_reason(out)
    if reason is not None:
        raise RunDirError(f"{arg('out', out)}: refusing {arg('overwrite', True)}: {reason}")
    if not is_run_dir(out):
        raise RunDirError(
            f"{arg('out', out)}: refusing {arg('overwrite', True)}: not a directory vaekit "
            f"created (no {MARKER_FILE} marker); remove it yourself or choose another"
        )
    if holding is not None and not (out / holding).is_file():
        raise RunDirError(
            f"{arg('out', out)}: refusing {arg('overwrite', True)}: it holds no {holding}, "
            "so this command did not write it; remove it yourself or choose another"
        )
    return True


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
        for entry in _entries(out):  # under the lock: nobody else is writing here
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


# --- the lock --------------------------------------------------------------------------------

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


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` to ``path``; a failure (a full disk) raises an OSError naming ``path``
    (a plain ``write`` error does not say which file)."""
    try:
        with open(path, "a") as handle:
            handle.write(text)
    except OSError as exc:
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise


# --- Atomic writes: every file vaekit writes goes through these -----------------------------


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory + rename.

    The file gets the mode ``open()`` would give it (``0o666 & ~umask``, not mkstemp's 0600),
    and a failure (a full disk, a read-only folder) raises an OSError naming ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):  # POSIX; Windows has no such modes
                os.fchmod(handle.fileno(), file_mode())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        temporary = exc.filename is None or Path(exc.filename).name.startswith(f".{path.name}.")
        if temporary:  # name the file the user knows, not the temporary one
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def json_bytes(obj: Any) -> bytes:
    """``obj`` as indented JSON with a final newline: every JSON file vaekit writes."""
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, json_bytes(obj))


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries to disk, so a rename into it survives a power cut."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # directories cannot be opened on some platforms (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
