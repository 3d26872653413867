"""Messages that speak the caller's language: flags on the command line, keywords in Python.

Library code raises the same errors for ``vaekit train --out runs/x`` and for
``vaekit.train(config, out="runs/x")``, but the fix reads differently: ``use --overwrite``
on the command line, ``pass overwrite=True`` in Python. A message names a setting through
:func:`spell`, which returns the command-line wording while :func:`command_line` is active
(``vaekit.cli.main`` turns it on) and the Python wording otherwise::

    raise ValueError(f"{spell(f'--out {out}', f'out={str(out)!r}')}: directory exists")
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

_COMMAND_LINE: ContextVar[bool] = ContextVar("vaekit_command_line", default=False)


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Within this block, messages name command-line flags (the CLI's ``main`` uses it)."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def on_command_line() -> bool:
    """Whether the running code was called from vaekit's command line."""
    return _COMMAND_LINE.get()


def spell(flag: str, python: str) -> str:
    """``flag`` (e.g. ``"--overwrite"``) on the command line, ``python`` (e.g.
    ``"overwrite=True"``) when called from Python."""
    return flag if _COMMAND_LINE.get() else python


def spell_value(flag: str, field: str, value: str) -> str:
    """A setting and its value: ``--device cuda``, or ``train.device = 'cuda'`` in Python."""
    return spell(f"{flag} {value}", f"{field} = {value!r}")


def arg(name: str, value: object | None = None) -> str:
    """How the user wrote argument ``name`` (Python spelling: ``overwrite``, ``out``):
    ``--out runs/x`` on the command line, ``out='runs/x'`` from Python; with ``value=True``
    a switch reads ``--overwrite`` or ``overwrite=True``."""
    if _COMMAND_LINE.get():
        flag = "--" + name.replace("_", "-")
        return flag if value is None or value is True else f"{flag} {value}"
    if value is None:
        return name
    return f"{name}={value!r}" if not isinstance(value, Path) else f"{name}={str(value)!r}"


def renamed_keywords(**old_to_new: str):
    """Decorator: keyword arguments given under an older name (``old=new`` pairs) still work,
    with a DeprecationWarning naming the new one; both names at once are a TypeError."""

    def wrap(function):
        @functools.wraps(function)
        def call(*args, **kwargs):
            for old, new in old_to_new.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(
                        f"{function.__name__}() got {old!r} and {new!r}: {old!r} is the old "
                        f"name of {new!r}; give {new!r} alone"
                    )
                warnings.warn(
                    f"{function.__name__}(): the keyword {old!r} is now {new!r}",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return call

    return wrap
