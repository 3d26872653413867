"""Downloads into the user cache: mirrors in order, resumable, verified, atomic.

A file is fetched into ``DEST.part``; an interrupted transfer leaves that ``.part`` (never
``DEST``) and the next attempt asks the server for the rest with an HTTP ``Range`` request
(a server that ignores it sends the whole file, which then replaces the partial one). Only
after the complete file passes its check (a checksum and/or a structural validation) is it
renamed to ``DEST`` with ``os.replace``: a partial or corrupt download never counts as the
dataset. A failed check deletes the ``.part``.

The mirror list of every built-in dataset can be replaced with the ``mirrors`` argument or the
``VAEKIT_MIRROR`` environment variable (comma-separated base URLs); tests point it at a local
HTTP server.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from vaekit.data.datasets import DataError

USER_AGENT = "vaekit-downloader (+https://pypi.org/project/vaekit/)"
CHUNK_BYTES = 1 << 16


def cache_dir() -> Path:
    """The user cache: ``$XDG_CACHE_HOME/vaekit`` or ``~/.cache/vaekit``."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "vaekit"


def mirror_bases(defaults: list[str], mirrors: list[str] | None = None) -> list[str]:
    """The base URLs to try, in order: ``mirrors`` if given, else ``$VAEKIT_MIRROR``
    (comma-separated), else the dataset's canonical ``defaults``."""
    if mirrors:
        return list(mirrors)
    env = os.environ.get("VAEKIT_MIRROR", "").strip()
    if env:
        return [part.strip() for part in env.split(",") if part.strip()]
    return list(defaults)


def download(
    url: str,
    dest: str | Path,
    check: Callable[[Path], None] | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Fetch ``url`` to ``dest`` (resuming ``dest.part`` if present), run ``check(part)``
    (which raises :class:`DataError` to reject it), then rename atomically. Returns ``dest``.

    Raises :class:`DataError` naming the URL on a network failure, an interrupted transfer
    (the ``.part`` is kept for resuming) or a failed check (the ``.part`` is deleted).
    """
    from tqdm import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the .part is already complete
            response = None
        else:
            raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"{url}: cannot connect ({reason})") from None
    if response is not None:
        with response:
            resumed = response.status == 206
            if not resumed:
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            received = offset
            with (
                open(part, "ab" if resumed else "wb") as handle,
                tqdm(
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=None if progress else True,
                ) as bar,
            ):
                try:
                    while chunk := response.read(CHUNK_BYTES):
                        handle.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                except (http.client.HTTPException, OSError):
                    pass  # reported below as an interrupted transfer
                handle.flush()
                os.fsync(handle.fileno())
            if total is not None and received < total:
                raise DataError(
                    f"{url}: connection dropped after {received} of {total} bytes; the partial "
                    f"file {part} is kept and the next attempt resumes it"
                )
    if check is not None:
        try:
            check(part)
        except DataError as exc:
            part.unlink(missing_ok=True)
            raise DataError(f"{url}: {exc} (download discarded)") from None
    os.replace(part, dest)
    return dest


def fetch(
    filename: str,
    dest_dir: Path,
    bases: list[str],
    check: Callable[[Path], None] | None = None,
    progress: bool = True,
) -> tuple[Path | None, list[str]]:
    """Try ``base/filename`` for each base URL in turn. Returns (path, []) on success, or
    (None, one error message per URL tried)."""
    errors = []
    for base in bases:
        url = base.rstrip("/") + "/" + filename
        try:
            return download(url, dest_dir / filename, check=check, progress=progress), []
        except DataError as exc:
            errors.append(str(exc))
    return None, errors
