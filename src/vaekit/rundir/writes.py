"""Every file vaekit writes: atomically (a temporary file in the same folder, then a rename),
and with one file mode.

Files written through a temporary file would be 0600 (``mkstemp``); every file vaekit writes
gets ``0o666 & ~umask`` instead, the mode ``open()`` gives, so a run directory never mixes
private and shared files. A failure (a full disk, a read-only folder) raises an OSError naming
the file the user knows, never the temporary one.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

_UMASK_LOCK = threading.Lock()


def file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open()`` gives a new file (read from the process umask)."""
    with _UMASK_LOCK:  # reading the umask means setting it: keep other threads out meanwhile
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


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
