"""What vaekit reads and where it may write: regular files only, and one guard for every
output path a command is given.

Whatever vaekit reads from a run (config.json, the weights, trainer.json, eval.json,
metrics.jsonl) it opens through :func:`open_regular`: a FIFO or a device in place of a file
is refused in one line instead of blocking the command forever, and a file name read from the
run's state (:func:`run_file`) never leads out of the run.

Every command that writes (``-o``, ``--log-var``, ``--sample``, ``--out``) calls
:func:`check_outputs` before it computes or writes anything. An output is refused, in one
line naming its flag and path, when it resolves (symbolic links followed, hard links
compared) to

* one of the command's inputs, a file inside an input folder, or a folder holding an input:
  writing it would destroy what the command reads (``reconstruct --data X.csv -o X.csv``);
* another output of the same command: the second write would replace the first
  (``encode -o F --log-var F``);
* a path inside a directory vaekit owns (one holding the run marker: a training run, a
  comparison, an export), unless it is the command's own file there (``RUN/explore.html``,
  ``RUN/onnx``): ``explore -o RUN/model.safetensors`` would destroy the run;
* an existing file that is neither a regular file nor a directory (a FIFO, a device).

Replacing a whole directory (``--overwrite``) is ruled by :func:`vaekit.rundir.check_replace`:
only a directory vaekit created, never ``.``, a parent of it, the home folder or the root.
:func:`output_names` gives every input of a folder its own output file name, and
:func:`staged_dir` writes a folder of outputs whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from vaekit.rundir import (
    MARKER_FILE,
    RunDirError,
    atomic_write_bytes,
    file_mode,
    is_run_dir,
    protected_reason,
    write_marker,
)
from vaekit.support.spelling import arg

# --- Reading: regular files only, so that a FIFO never blocks a command ----------------------

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
}


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words: "a FIFO", "a directory", "a regular file"."""
    kind = "a regular file" if stat.S_ISREG(mode) else "a special file"
    return _KINDS.get(stat.S_IFMT(mode), kind)


class NotRegularFileError(OSError):
    """A file vaekit reads is a FIFO, a device, a socket or a directory (the message says)."""


@contextlib.contextmanager
def open_regular(path: str | Path) -> Iterator[Any]:
    """Open ``path`` for binary reading if it is a regular file (symlinks followed), else
    raise :class:`NotRegularFileError` naming it. The file is opened without blocking, so a
    FIFO is refused at once instead of waiting for a writer forever."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(
                f"{path}: is {file_kind(mode)}, not a regular file; vaekit reads only regular files"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def read_regular(path: str | Path) -> bytes:
    """The bytes of regular file ``path`` (see :func:`open_regular`)."""
    with open_regular(path) as handle:
        return handle.read()


def run_file(run_dir: str | Path, name: object) -> Path:
    """``run_dir / name`` for a file name read from the run's own state: a plain name of a
    file inside the run, never a path that leads out of it."""
    text = str(name)
    if not text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text:
        raise RunDirError(
            f"{Path(run_dir)}: its state names the file {text!r}, which is not a file in the run"
        )
    return Path(run_dir) / text


# --- Writing: the output-path guard -----------------------------------------------------------


class OutputPathError(RunDirError):
    """An output path would replace an input, another output or a run's file."""


def _resolved(path: str | Path) -> Path:
    """``path`` made absolute with every symbolic link resolved (also when it does not exist:
    its existing parents are resolved)."""
    return Path(os.path.realpath(os.path.abspath(path)))


def _same(a: Path, b: Path) -> bool:
    """Whether resolved paths ``a`` and ``b`` name one file (equal, or hard links of it)."""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def _within(path: Path, folder: Path) -> bool:
    """Whether resolved ``path`` is ``folder`` or lies inside it."""
    return path == folder or folder in path.parents


def owning_dir(path: Path) -> Path | None:
    """The nearest folder above resolved ``path`` that holds vaekit's run marker, if any."""
    for parent in path.parents:
        if is_run_dir(parent):
            return parent
    return None


def check_outputs(
    outputs: Mapping[str, str | Path | None] | Iterable[tuple[str, str | Path | None]],
    inputs: Iterable[str | Path | None] = (),
    own: Iterable[str | Path] = (),
) -> None:
    """Refuse (:class:`OutputPathError`) an output that would destroy an input, another
    output or a file of a directory vaekit owns (see the module doc); call it before anything
    is computed.

    ``outputs``: argument name (``output``, ``log_var``, ``out``; messages spell it as the
    caller wrote it: ``--log-var`` on the command line) -> path, None for one not given (a
    mapping, or pairs where one argument writes two files).
    ``inputs``: every path the command reads (run directories, data files or folders); a
    path that does not exist (a dataset's name) is skipped. ``own``: paths inside a run that
    this command writes as the run's own writer (explore's ``RUN/explore.html``).
    """
    pairs = outputs.items() if isinstance(outputs, Mapping) else outputs
    given = [(name, Path(p), _resolved(p)) for name, p in pairs if p is not None]
    read = [(Path(p), _resolved(p)) for p in inputs if p is not None and os.path.lexists(p)]
    mine = [_resolved(p) for p in own]
    for i, (name, path, real) in enumerate(given):
        where = arg(name, path)
        if real.exists() and not (real.is_file() or real.is_dir()):
            kind = file_kind(real.stat().st_mode)
            raise OutputPathError(f"{where}: is {kind}, not a regular file; choose a file")
        for other_name, other, other_real in given[:i]:
            if _same(real, other_real) or _within(real, other_real) or _within(other_real, real):
                raise OutputPathError(
                    f"{where}: is also {arg(other_name, other)}; give each output its own path"
                )
        if any(real == m for m in mine):
            continue
        for source, source_real in read:
            if _same(real, source_real):
                raise OutputPathError(
                    f"{where}: is the input {source}; an output never replaces what the "
                    "command reads: choose another path"
                )
            if _within(source_real, real):
                raise OutputPathError(
                    f"{where}: holds the input {source}; choose a path that does not"
                )
        owner = owning_dir(real)
        if owner is not None:
            raise OutputPathError(
                f"{where}: is inside {owner}, a directory vaekit owns (it holds {MARKER_FILE}) "
                "where only vaekit's own files are written; choose a path outside it"
            )
        for source, source_real in read:
            if _within(real, source_real):
                raise OutputPathError(
                    f"{where}: is inside the input {source}; choose a path outside it"
                )


def output_names(names: list[str], suffix: str = ".png") -> list[str]:
    """One output file name per input name (relative paths, e.g. ``in/a.jpg``), each ending
    in ``suffix``: the input's name with its suffix replaced (``a.jpg`` -> ``a.png``), or,
    where two inputs would meet in one name (``a.png`` and ``a.jpg``), the input's suffix
    kept in the stem (``a.jpg`` -> ``a_jpg.png``; ``a.png`` stays). Names that still meet
    are refused, naming both inputs."""
    plain = [str(PurePosixPath(n).with_suffix(suffix)) for n in names]
    counts: dict[str, int] = {}
    for name in plain:
        counts[name] = counts.get(name, 0) + 1
    chosen = []
    for name, out in zip(names, plain, strict=True):
        path = PurePosixPath(name)
        if counts[out] > 1 and path.suffix.lower() != suffix:
            out = str(path.with_name(f"{path.stem}_{path.suffix.lstrip('.')}{suffix}"))
        chosen.append(out)
    first: dict[str, str] = {}
    for name, out in zip(names, chosen, strict=True):
        if out in first:
            raise OutputPathError(
                f"{first[out]} and {name}: both would be written as {out}; rename one"
            )
        first[out] = name
    return chosen


def check_replaceable(out: Path) -> None:
    """The last check before a folder is moved aside and deleted: it must be vaekit's (its
    marker, or a folder inside a run such as ``RUN/figures``), and never the current
    directory, a parent of it, the home folder or the root. Callers ask
    :func:`vaekit.rundir.check_replace` first with the user's flags; this guards the deletion
    itself, whoever calls."""
    reason = protected_reason(out)
    if reason is not None or not (is_run_dir(out) or is_run_dir(out.parent)):
        raise RunDirError(
            f"{out}: refusing to replace it: {reason or 'not a folder vaekit created'}"
        )


@contextlib.contextmanager
def staged_dir(out: str | Path, replace: bool = False, marker: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling folder of ``out`` to write into; at the end of the block it
    becomes ``out`` (absent or empty, or, with ``replace``, a folder
    :func:`vaekit.rundir.check_replace` allowed), with vaekit's marker if ``marker``. A
    failure leaves ``out`` as it was and no temporary folder; an OSError names the file in
    ``out`` it was writing, not the temporary one."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    old = None
    try:
        try:
            yield staging
        except OSError as exc:  # name the file the user will look for
            name = str(exc.filename or "")
            if exc.strerror is None or not name.startswith(f"{staging}{os.sep}"):
                raise
            where = str(out / os.path.relpath(name, staging))
            raise OSError(exc.errno, exc.strerror, where) from None
        if marker:
            write_marker(staging)
        mode = file_mode()
        os.chmod(staging, mode | (mode & 0o444) >> 2)  # mkdtemp's 0700 -> the umask's mode
        if replace and out.exists():  # moved aside first: out is whole at every moment
            check_replaceable(out)
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old)
        elif out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old, out)
            old = None
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_folder(folder: str | Path, files: Mapping[str, bytes]) -> Path:
    """Create folder ``folder`` (absent or empty) holding ``files`` (relative name -> bytes),
    whole or not at all (see :func:`staged_dir`)."""
    with staged_dir(folder, marker=False) as staging:
        for name, blob in files.items():
            atomic_write_bytes(staging / name, blob)
    return Path(folder)
