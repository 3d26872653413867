"""The stable import path of training: ``from vaekit.training import train, TrainResult, ...``.

The code lives in the package ``vaekit.training`` (the loop, its state, its records and the
helpers, one module each); this module only re-exports what user code has imported from here
since before the split, on first use (importing it costs nothing, so ``vaekit/__init__.py``
loads it at once). It also keeps ``vaekit.train`` the function: loaded by the package, it
cannot be loaded again by a later ``from vaekit.train import X``, which would rebind the
package attribute ``vaekit.train`` to this module.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    """``vaekit.training``'s public names (and its ``__all__``), loaded on first use."""
    training = importlib.import_module("vaekit.training")
    if name != "__all__" and name not in training.__all__:
        raise AttributeError(f"module 'vaekit.train' has no attribute {name!r}")
    value = list(training.__all__) if name == "__all__" else getattr(training, name)
    globals()[name] = value
    return value
