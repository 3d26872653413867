"""What vaekit made, and what ``overwrite`` may replace.

Every directory vaekit creates for a run (``train --out``, ``compare --out``) gets a small JSON
file ``.vaekit-run``, the marker. ``overwrite`` empties only a directory holding one: never an
arbitrary folder, never the current directory, a parent of it, the home folder or the
file-system root, so a mistyped ``--out`` cannot delete a user's files. Messages name what the
user typed: ``--out``/``--overwrite`` on the command line, ``out=``/``overwrite=True`` from
Python.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from vaekit._version import __version__
from vaekit.support.spelling import arg  # messages spell arguments the caller's way

MARKER_FILE = ".vaekit-run"
LOCK_FILE = ".vaekit-lock"  # kept when a run is emptied: its lock outlives the clearing
MARKER_FORMAT = "vaekit-run"


class RunDirError(ValueError):
    """A run directory cannot be created, replaced or written (the message says why)."""


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


def remove_leftover(path: str | Path) -> None:
    """Delete folder ``path`` if it is there: one vaekit names for its own use inside a run
    (a temporary write left by a crash, a snapshot a resumed run writes again). Refused with
    a RunDirError unless a folder above it carries vaekit's marker and it is none of
    :func:`protected_reason`'s folders: a name that happens to match is never enough."""
    path = Path(path)
    if not path.exists():
        return
    why = protected_reason(path)
    if why is None and not any(is_run_dir(p) for p in path.resolve().parents):
        why = "it is not inside a directory vaekit created"
    if why is not None:
        raise RunDirError(f"{path}: not removed: {why}")
    shutil.rmtree(path, ignore_errors=True)


def run_entries(path: Path) -> list[Path]:
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
    if not (out.exists() and run_entries(out)):
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
