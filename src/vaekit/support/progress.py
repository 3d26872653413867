"""Progress bars for the long phases (training, importance sampling), one rule for all, and
the one way durations are printed (:func:`format_seconds`).

A phase takes ``mode``: ``"bar"`` always draws a tqdm bar, ``"plain"`` never does (the
caller logs lines instead), ``"auto"`` draws one where a person is watching: on a terminal
(stderr is a TTY) or in a Jupyter notebook, and nowhere else (a log file, a pipe, CI).
Bars go to stderr, so stdout keeps only results (``vaekit evaluate --json | jq`` works).

``tqdm.auto`` picks the notebook widget inside Jupyter (when ipywidgets is installed; else
tqdm's text bar, which notebooks show too) and the terminal bar everywhere else.
"""

from __future__ import annotations

import sys
from typing import Any, Literal

ProgressMode = Literal["auto", "bar", "plain"]
PROGRESS_MODES = ("auto", "bar", "plain")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell), where stderr is no TTY but a
    person still watches the cell's output."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def wants_bar(mode: str) -> bool:
    """Whether ``mode`` draws a bar here and now (see the module doc)."""
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress must be one of {', '.join(PROGRESS_MODES)}; got {mode!r}")
    if mode == "auto":
        return sys.stderr.isatty() or in_notebook()
    return mode == "bar"


def progress_bar(total: int, mode: str = "auto", **options: Any):
    """A tqdm bar over ``total`` units on stderr (with rate and ETA), or None when ``mode``
    says no bar (see :func:`wants_bar`). ``options`` go to tqdm (``unit``, ``desc``,
    ``initial``)."""
    if not wants_bar(mode):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, file=sys.stderr, dynamic_ncols=True, **options)


def format_seconds(seconds: float) -> str:
    """``12.3 s``, ``4 min 05 s`` or ``2 h 03 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
