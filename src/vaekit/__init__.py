"""vaekit: variational autoencoders exactly as the lecture derives them.

Public API (nothing runs at import):

* :class:`VAE`, :class:`AE` -- models; ``elbo``, ``log_likelihood``, ``encode``, ``decode``,
  ``sample``, ``reconstruct``, ``save``;
* :func:`load` -- read a saved model directory (safetensors + JSON, never a pickle);
* :func:`train` -- train from a :class:`Config`; :func:`evaluate` -- honest numbers;
* :class:`Config` and its sections, :func:`load_config`.
"""

__version__ = "0.1.0"

from vaekit.checkpoint import CheckpointError, load
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
from vaekit.models import AE, VAE, ELBOTerms
from vaekit.train import TrainingError, TrainingInterrupted, TrainResult, train

__all__ = [
    "AE",
    "VAE",
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataConfig",
    "DataError",
    "ELBOTerms",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "TrainingInterrupted",
    "__version__",
    "evaluate",
    "load",
    "load_config",
    "load_dataset",
    "train",
]
