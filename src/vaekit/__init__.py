"""vaekit: variational autoencoders exactly as the lecture derives them.

Public API (nothing runs at import):

* :class:`VAE`, :class:`AE` -- models (every registered one: ``vaekit.models.MODELS``);
  ``elbo``, ``log_likelihood``, ``encode``, ``decode``, ``sample``, ``reconstruct``;
* :func:`save` / :func:`load` -- write / read a model directory (safetensors + JSON, never a
  pickle);
* :func:`train` -- train from a :class:`Config`; :func:`evaluate` -- honest numbers;
* :func:`compare_runs` -- paired differences between runs, with standard errors;
* :class:`Config` and its sections, :func:`load_config`;
* :class:`VAEEstimator` -- a scikit-learn-style estimator (``fit``, ``transform``,
  ``inverse_transform``, ``score_samples``, ``sample``, ``save``/``load``).
"""

from vaekit._version import __version__
from vaekit.checkpoint import CheckpointError, load
from vaekit.checkpoint import save_model as save
from vaekit.comparison.runs import RunComparison, compare_runs
from vaekit.config import (
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    load_config,
)
from vaekit.data import DataError, load_dataset
from vaekit.evaluate import evaluate
from vaekit.models import AE, MODELS, VAE, AEConfig, ELBOTerms, Model, VAEConfig

# Through vaekit.train (the re-export module), not vaekit.training: once it is loaded here, a
# user's `from vaekit.train import X` cannot turn the attribute vaekit.train into a module.
from vaekit.train import TrainingError, TrainingInterrupted, TrainResult, train

__all__ = [
    "AE",
    "MODELS",
    "VAE",
    "AEConfig",
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataConfig",
    "DataError",
    "ELBOTerms",
    "Model",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "RunComparison",
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "TrainingInterrupted",
    "VAEConfig",
    "VAEEstimator",
    "__version__",
    "compare_runs",
    "evaluate",
    "load",
    "load_config",
    "load_dataset",
    "save",
    "train",
]


def __getattr__(name: str):
    # The estimator pulls in scikit-learn's estimator machinery: loaded on first use only.
    if name == "VAEEstimator":
        from vaekit.estimator import VAEEstimator

        return VAEEstimator
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")
