"""The stable import path of training: ``from vaekit.training import train, TrainResult, ...``.

The code lives in the package ``vaekit.training`` (the loop, its state, its records and the
helpers, one module each); this module only re-exports what user code has imported from here
since before the split. It also keeps ``vaekit.train`` the function: ``vaekit/__init__.py``
imports through this module, so a later ``from vaekit.training import X`` finds it loaded and
does not rebind the package attribute ``vaekit.train`` to a module.
"""

from vaekit import training as _training
from vaekit.training import *  # noqa: F403  (the package's public names, listed there once)

__all__ = list(_training.__all__)
