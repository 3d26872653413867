"""Where a built-in set's files are found, and how each is verified before it is used.

Where the files are looked for, in order (the first place holding a complete set wins):

1. ``data_dir`` (``--data-dir DIR``), the folder itself and ``DIR/<name>``;
2. ``$VAEKIT_DATA_DIR`` and ``$VAEKIT_DATA_DIR/<name>``;
3. the user cache ``~/.cache/vaekit/<name>`` (``$XDG_CACHE_HOME/vaekit/<name>``);
4. well-known system paths, ``/usr/share/datasets/<name>`` (Debian's
   ``dataset-fashion-mnist`` installs ``/usr/share/datasets/fashion-mnist``);
5. otherwise the files are downloaded from the canonical mirrors into the cache
   (see :mod:`vaekit.data.download`); offline, the error lists every place looked.

Verification: every file is checked against a published checksum (:class:`Source`: the
SHA-256 of its decompressed content, or the MD5 of the file as published) before it is used,
and a folder whose files do not match is refused (the error names the file and both hashes),
never skipped in favour of another copy.

Hashing a 47 MB file takes about a second, so verified files are remembered in
``<cache>/verified.json`` by resolved path, size, modification time (ns) and inode together
with the checksum they matched; any change to the file makes it unverified again.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from vaekit.data.download import cache_dir, fetch, mirror_bases
from vaekit.data.errors import DataError
from vaekit.rundir import atomic_write_json
from vaekit.support.spelling import spell

SYSTEM_ROOTS = [Path("/usr/share/datasets")]


@dataclass(frozen=True)
class Source:
    """Where a built-in set's files come from and how each is checked (``hashes``: file key
    -> SHA-256 of the decompressed file)."""

    name: str
    mirrors: list[str]
    files: list[str]  # as downloaded (e.g. "train-images-idx3-ubyte.gz")
    find: Callable[[Path], dict[str, Path] | None]  # complete set in a folder, or None
    check: Callable[[str, Path], None]  # (file name, path) -> raises DataError
    hashes: dict[str, str] = field(default_factory=dict)
    # file key -> MD5 of the file exactly as published (compressed); used where no hash of
    # the decompressed content is published (KMNIST, the CIFAR-10 tarball).
    file_md5: dict[str, str] = field(default_factory=dict)
    # Why an extracted folder (``find`` -> {"folder": ...}) is refused: no checksum covers it.
    unverifiable_folder: str = "no published checksum covers an extracted folder"
    classes: tuple[str, ...] = tuple(str(d) for d in range(10))  # label i's name


def candidate_dirs(name: str, data_dir: str | None) -> list[tuple[Path, str]]:
    """Every folder searched for ``name``, in order, with why it is searched."""
    places: list[tuple[Path, str]] = []
    if data_dir:
        why = spell("--data-dir", "data_dir")
        places += [(Path(data_dir), why), (Path(data_dir) / name, why)]
    env = os.environ.get("VAEKIT_DATA_DIR")
    if env:
        places += [(Path(env), "VAEKIT_DATA_DIR"), (Path(env) / name, "VAEKIT_DATA_DIR")]
    places.append((cache_dir() / name, "user cache"))
    places += [(root / name, "system path") for root in SYSTEM_ROOTS]
    return places


VERIFIED_FILE = "verified.json"


def _file_key(path: Path) -> tuple[str, list[int]]:
    """A file's identity for the verification cache: resolved path, [size, mtime_ns, inode]."""
    stat = path.stat()
    return str(path.resolve()), [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _read_verified() -> dict:
    try:
        data = json.loads((cache_dir() / VERIFIED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember_digest(path: Path, kind: str, digest: str) -> None:
    """Record the digest computed for ``path`` as it is now; best effort: an unwritable cache
    only means the file is hashed again next time."""
    name, stat = _file_key(path)
    data = _read_verified()
    entry = data.get(name)
    if not isinstance(entry, dict) or entry.get("stat") != stat:
        entry = {"stat": stat}
    entry[kind] = digest
    data[name] = entry
    with contextlib.suppress(OSError):
        atomic_write_json(cache_dir() / VERIFIED_FILE, data)


def file_digest(path: Path, algorithm: str, decompress: bool) -> str:
    """Hex digest of the file's bytes (or of its gunzipped content), read in 1 MiB chunks."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    try:
        opener = gzip.open if decompress else open
        with opener(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip file ({exc})") from None
    return digest.hexdigest()


def _cached_digest(path: Path, algorithm: str, decompress: bool) -> str:
    """The digest of ``path``, computed once per file state (path, size, mtime, inode)."""
    kind = f"{algorithm}-of-{'content' if decompress else 'file'}"
    name, stat = _file_key(path)
    entry = _read_verified().get(name)
    if isinstance(entry, dict) and entry.get("stat") == stat and isinstance(entry.get(kind), str):
        return entry[kind]
    digest = file_digest(path, algorithm, decompress)
    _remember_digest(path, kind, digest)
    return digest


def verify_file(source: Source, key: str, path: Path) -> None:
    """Check one file of ``source`` against its published checksum; a DataError names the
    file and both hashes. A file's digest is computed once per file state (module doc)."""
    if key in source.hashes:
        algorithm, expected = "sha256", source.hashes[key]
        decompress, what = path.suffix == ".gz", "decompressed SHA-256"
    elif key in source.file_md5:
        algorithm, expected, decompress, what = "md5", source.file_md5[key], False, "MD5"
        if path.suffix != ".gz":
            raise DataError(
                f"{path}: {source.name} publishes checksums only for its .gz files "
                f"(MD5 {expected} for {path.name}.gz); an uncompressed copy cannot be verified"
            )
    else:
        raise DataError(f"{path}: no published checksum for this {source.name} file; refusing it")
    actual = _cached_digest(path, algorithm, decompress)
    if actual != expected:
        raise DataError(
            f"{path}: checksum mismatch for {source.name}: {what} {actual}, expected {expected}"
        )


def verify_set(source: Source, found: dict[str, Path]) -> None:
    """Verify every file of a complete local set (raises on the first that fails)."""
    if "folder" in found:  # extracted files (CIFAR-10's batches): no checksum covers them
        raise DataError(f"{found['folder']}: {source.unverifiable_folder}")
    for key, path in found.items():
        verify_file(source, key, path)


def locate(
    source: Source, data_dir: str | None
) -> tuple[dict[str, Path] | None, list[str], DataError | None]:
    """The first complete local copy whose files all pass their checksums (file key ->
    path), the places looked, and the error of a complete copy that failed (the search stops
    there: a folder with wrong files is refused, not skipped)."""
    looked = []
    for folder, why in candidate_dirs(source.name, data_dir):
        looked.append(f"{folder} ({why})")
        found = source.find(folder) if folder.is_dir() else None
        if found is not None:
            try:
                verify_set(source, found)
            except DataError as exc:
                return None, looked, exc
            return found, looked, None
    return None, looked, None


def obtain(
    source: Source, data_dir: str | None, mirrors: list[str] | None, progress: bool
) -> dict[str, Path]:
    """Locate the verified set, or download it into the cache; a DataError lists every place
    tried, or names the file that failed its checksum."""
    found, looked, problem = locate(source, data_dir)
    if problem is not None:
        raise problem
    if found is not None:
        return found
    target = cache_dir() / source.name
    for filename in source.files:
        if (target / filename).exists():
            continue  # a partial set in the cache: every file is verified again below
        path, errors = fetch(
            filename, target, mirror_bases(source.mirrors, mirrors), partial(source.check, filename)
        )
        if path is None:
            raise DataError(
                f"dataset {source.name!r} not found; looked in {', '.join(looked)}; "
                f"download failed: {'; '.join(errors)}"
            )
    found = source.find(target)
    if found is None:  # pragma: no cover - the checks above make this unreachable
        raise DataError(f"{target}: downloaded files do not form a complete {source.name} set")
    verify_set(source, found)
    return found


def where_found(source: Source, data_dir: str | None) -> str | None:
    """The folder of the verified local copy; a copy that fails its checksum is reported as
    such (it is never listed as found); None where there is none."""
    found, _, problem = locate(source, data_dir)
    if problem is not None:
        return f"not verified: {str(problem).split(': ')[0]} is refused"
    return None if found is None else str(next(iter(found.values())).parent)
