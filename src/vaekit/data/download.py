"""Downloads into the user cache: mirrors in order, resumable, verified, atomic.

A file is fetched into ``DEST.part``; an interrupted transfer leaves that ``.part`` (never
``DEST``) and the next attempt asks the server for the rest with an HTTP ``Range`` request
(a server that ignores it sends the whole file, which then replaces the partial one). Only
after the complete file passes its check (a checksum and/or a structural validation) is it
renamed to ``DEST`` with ``os.replace``: a partial or corrupt download never counts as the
dataset. A failed check deletes the ``.part``.

Every download has an overall deadline (``deadline`` seconds, default
``$VAEKIT_DOWNLOAD_DEADLINE`` or one hour) besides the per-read ``timeout``: a server that
trickles a byte every few seconds never trips a read timeout, but the deadline ends the
transfer with an error naming the URL (the ``.part`` is kept for resuming). A progress bar
(tqdm, on stderr) shows the bytes, the rate and the time left on a terminal.

The mirror list of every built-in dataset can be replaced with the ``mirrors`` argument or the
``VAEKIT_MIRROR`` environment variable (comma-separated base URLs); tests point it at a local
HTTP server.
"""

from __future__ import annotations

import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from vaekit.data.errors import DataError

USER_AGENT = "vaekit-downloader (+https://pypi.org/project/vaekit/)"
CHUNK_BYTES = 1 << 16
DEFAULT_DEADLINE_S = 3600.0  # a whole download, connection included


def download_deadline() -> float:
    """Seconds a whole download may take: ``$VAEKIT_DOWNLOAD_DEADLINE`` or one hour."""
    text = os.environ.get("VAEKIT_DOWNLOAD_DEADLINE", "").strip()
    if not text:
        return DEFAULT_DEADLINE_S
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"VAEKIT_DOWNLOAD_DEADLINE={text!r}: expected seconds, e.g. 600") from None
    if not value > 0:
        raise DataError(f"VAEKIT_DOWNLOAD_DEADLINE={text!r}: must be > 0 seconds")
    return value


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
    progress: bool | None = None,
    timeout: float = 30.0,
    deadline: float | None = None,
) -> Path:
    """Fetch ``url`` to ``dest`` (resuming ``dest.part`` if present), run ``check(part)``
    (which raises :class:`DataError` to reject it), then rename atomically. Returns ``dest``.

    ``timeout``: seconds one network read may wait; ``deadline``: seconds the whole transfer
    may take (default :func:`download_deadline`). ``progress``: a tqdm bar on stderr (None:
    only when stderr is a terminal). Raises :class:`DataError` naming the URL on a network
    failure, an interrupted or too slow transfer (the ``.part`` is kept for resuming) or a
    failed check (the ``.part`` is deleted).
    """
    from tqdm import tqdm

    deadline = download_deadline() if deadline is None else deadline
    ends = time.monotonic() + deadline
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=min(timeout, deadline)
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
                    unit_divisor=1024,
                    desc=dest.name,
                    file=sys.stderr,
                    disable={None: None, True: False, False: True}[progress],
                ) as bar,
            ):
                late = False
                try:
                    # read1: return what has arrived (a slow server cannot hold one call for
                    # the time 64 KiB take to trickle in); each wait ends by the deadline.
                    while True:
                        left = ends - time.monotonic()
                        if left <= 0:
                            late = True
                            break
                        _set_read_timeout(response, min(timeout, left))
                        chunk = response.read1(CHUNK_BYTES)
                        if not chunk:
                            break
                        handle.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                except TimeoutError:
                    late = time.monotonic() >= ends  # else: one read waited `timeout` in vain
                except (http.client.HTTPException, OSError):
                    pass  # reported below as an interrupted transfer
                handle.flush()
                os.fsync(handle.fileno())
            if late:
                of = f" of {total}" if total is not None else ""
                raise DataError(
                    f"{url}: not finished within the {deadline:g} s download deadline "
                    f"({received}{of} bytes received; {part} is kept and the next attempt "
                    "resumes it; set VAEKIT_DOWNLOAD_DEADLINE for a slow connection)"
                )
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


def _set_read_timeout(response, seconds: float) -> None:
    """Bound the next socket read of ``response`` (urllib sets one timeout for all reads)."""
    sock = getattr(getattr(response, "fp", None), "raw", None)
    sock = getattr(sock, "_sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def fetch(
    filename: str,
    dest_dir: Path,
    bases: list[str],
    check: Callable[[Path], None] | None = None,
    progress: bool | None = None,
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
