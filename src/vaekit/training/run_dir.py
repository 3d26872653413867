"""The run directory a training run writes: creating it, and checking ``out`` against
``resume`` (a resumed run stays where it is)."""

from __future__ import annotations

from pathlib import Path

from vaekit import rundir
from vaekit.support.spelling import spell
from vaekit.training.distributed import DistContext


def _shown(path: str | Path | None) -> str:
    """A path as the message shows it: as typed on the command line, quoted in Python."""
    return spell(str(path), repr(str(path)))


def prepare_run_dir(out: str | Path, overwrite: bool, lock: rundir.RunLock | None = None) -> Path:
    """Create an empty run directory; refuse to mix a new run into an old one, and replace
    only a directory vaekit created (see ``vaekit.rundir``)."""
    return rundir.prepare(out, overwrite, lock)


def open_run_dir(
    out: str | Path | None,
    overwrite: bool,
    resume: str | Path | None,
    ctx: DistContext,
    lock: rundir.RunLock,
) -> Path | None:
    """A training run's directory: the resumed run's (locked on rank 0), or ``out`` (created
    empty and locked on rank 0); None if neither is given."""
    if resume is not None:
        if ctx.is_main:
            lock.acquire(resume)
        return Path(resume)
    if out is None:
        return None
    return prepare_run_dir(out, overwrite, lock) if ctx.is_main else Path(out)


def check_out_and_resume(out: str | Path | None, resume: str | Path | None) -> None:
    """Refuse ``out`` and ``resume`` naming two directories: a resumed run stays in its own."""
    if resume is not None and out is not None and Path(out) != Path(resume):
        raise ValueError(
            f"{spell('--out ', 'out=')}{_shown(out)} and {spell('--resume ', 'resume=')}"
            f"{_shown(resume)}: a resumed run stays in its directory"
        )
