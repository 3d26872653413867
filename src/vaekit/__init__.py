"""vaekit: variational autoencoders exactly as the lecture derives them.

Public API (nothing runs at import, and nothing heavy is imported until it is used: the names
below are loaded on first access, so ``vaekit --version`` answers without importing torch):

* :class:`VAE`, :class:`AE` -- models (every registered one: ``vaekit.models.MODELS``);
  ``elbo``, ``log_likelihood``, ``encode``, ``decode``, ``sample``, ``reconstruct``;
* :func:`save` / :func:`load` -- write / read a model directory (safetensors + JSON, never a
  pickle);
* :func:`train` -- train from a :class:`Config`;
* ``vaekit.evaluate`` -- the evaluation module: ``vaekit.evaluate.evaluate(model, dataset)``
  gives honest numbers, ``vaekit.evaluate.evaluate_run(run)`` those of a run directory (the
  name is the module's, so that ``import vaekit.evaluate`` always gives the module);
* :func:`compare_runs` -- paired differences between runs, with standard errors;
* :class:`Config` and its sections, :func:`load_config`;
* :class:`VAEEstimator` -- a scikit-learn-style estimator (``fit``, ``transform``,
  ``inverse_transform``, ``score_samples``, ``sample``, ``save``/``load``).
"""

from __future__ import annotations

import importlib
from typing import Any

from vaekit._version import __version__ as __version__

# name -> (module, attribute; None: the module itself)
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "CheckpointError": ("vaekit.checkpoint", "CheckpointError"),
    "load": ("vaekit.checkpoint", "load"),
    "save": ("vaekit.checkpoint", "save_model"),
    "RunComparison": ("vaekit.comparison.runs", "RunComparison"),
    "compare_runs": ("vaekit.comparison.runs", "compare_runs"),
    **{
        name: ("vaekit.config", name)
        for name in (
            "Config",
            "ConfigError",
            "DataConfig",
            "ModelConfig",
            "ObjectiveConfig",
            "OptimConfig",
            "ScheduleConfig",
            "TrainConfig",
            "load_config",
        )
    },
    "DataError": ("vaekit.data", "DataError"),
    "load_dataset": ("vaekit.data", "load_dataset"),
    "evaluate": ("vaekit.evaluate", None),
    # the estimator pulls in scikit-learn's estimator machinery: loaded on first use only
    "VAEEstimator": ("vaekit.estimator", "VAEEstimator"),
    **{
        name: ("vaekit.models", name)
        for name in ("AE", "MODELS", "VAE", "AEConfig", "ELBOTerms", "Model", "VAEConfig")
    },
    # Through vaekit.train (the re-export module), not vaekit.training: once it is loaded, a
    # user's `from vaekit.train import X` cannot turn the attribute vaekit.train into a module.
    **{
        name: ("vaekit.train", name)
        for name in ("TrainingError", "TrainingInterrupted", "TrainResult", "train")
    },
}

__all__ = sorted([*_EXPORTS, "__version__"])

# The re-export module is loaded now (it costs nothing: it forwards on first use), so that a
# later `from vaekit.train import X` finds it loaded and leaves the attribute vaekit.train
# alone; the attribute is then dropped, and the first use of vaekit.train gives the function.
importlib.import_module("vaekit.train")
del globals()["train"]  # the submodule, set by the import system: not the function


def __getattr__(name: str) -> Any:
    """Load a public name on first use (then it is a plain module attribute)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vaekit' has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
