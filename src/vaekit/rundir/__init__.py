"""Run-directory safety: the marker that says "vaekit made this" and the rules for
``overwrite`` (:mod:`vaekit.rundir.marker`), the lock that says "a vaekit process is writing
here" (:mod:`vaekit.rundir.lock`), and atomic writes with one file mode for every file
(:mod:`vaekit.rundir.writes`)."""

from vaekit.rundir.lock import (
    RunLock,
    RunLockedError,
    lock_root,
    locked,
    prepare,
    training_note,
    training_pid,
)
from vaekit.rundir.marker import (
    LOCK_FILE,
    MARKER_FILE,
    RunDirError,
    check_replace,
    elastic_job,
    is_run_dir,
    protected_reason,
    remove_leftover,
    write_marker,
)
from vaekit.rundir.writes import (
    append_text,
    atomic_write_bytes,
    atomic_write_json,
    file_mode,
    fsync_dir,
    json_bytes,
)

__all__ = [
    "LOCK_FILE",
    "MARKER_FILE",
    "RunDirError",
    "RunLock",
    "RunLockedError",
    "append_text",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_replace",
    "elastic_job",
    "file_mode",
    "fsync_dir",
    "is_run_dir",
    "json_bytes",
    "lock_root",
    "locked",
    "prepare",
    "protected_reason",
    "remove_leftover",
    "training_note",
    "training_pid",
    "write_marker",
]
