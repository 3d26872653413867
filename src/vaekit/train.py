"""The stable import path of training: ``from vaekit.training import train, TrainResult, ...``.

The code lives in the package ``vaekit.training`` (the loop, its state, its records and the
helpers, one module each); this module only re-exports what user code has imported from here
since before the split. It also keeps ``vaekit.train`` the function: ``vaekit/__init__.py``
imports through this module, so a later ``from vaekit.training import X`` finds it loaded and
does not rebind the package attribute ``vaekit.train`` to a module.
"""

from vaekit.training import (
    INTERRUPT_AFTER_STEP_ENV,
    KILL_AFTER_STEP_ENV,
    LoopState,
    ObjectiveModule,
    Trainer,
    TrainingError,
    TrainingInterrupted,
    TrainResult,
    make_optimizer,
    prepare_run_dir,
    resolve_device,
    resolve_model_config,
    run_config,
    train,
    validation_metrics,
)

__all__ = [
    "INTERRUPT_AFTER_STEP_ENV",
    "KILL_AFTER_STEP_ENV",
    "LoopState",
    "ObjectiveModule",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "TrainingInterrupted",
    "make_optimizer",
    "prepare_run_dir",
    "resolve_device",
    "resolve_model_config",
    "run_config",
    "train",
    "validation_metrics",
]
