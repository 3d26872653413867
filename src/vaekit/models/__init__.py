"""Models: the abstract contract (``base``), the registry, and one file per model.

Importing this package registers every model. ``MODELS`` maps a name to its class; the
class's ``config_class`` is its own config dataclass. See docs/architecture.md.
"""

from vaekit.models.base import ELBOTerms, LatentMoments, LikelihoodModel, Model
from vaekit.models.registry import MODELS, build_model, model_names, models_help, register_model

# One import per model file: importing it registers the model (the order is the --help order).
from vaekit.models.vae import VAE, VAEConfig  # isort: skip
from vaekit.models.ae import AE, AEConfig  # isort: skip
from vaekit.models.hvae import HierarchicalVAE, HVAEConfig  # isort: skip
from vaekit.models.deep_hvae import DeepHierarchicalVAE, DeepHVAEConfig  # isort: skip
from vaekit.models.cvae import ConditionalVAE, CVAEConfig  # isort: skip
from vaekit.models.vqvae import VQVAE, VQVAEConfig  # isort: skip

__all__ = [
    "AE",
    "MODELS",
    "VAE",
    "VQVAE",
    "AEConfig",
    "CVAEConfig",
    "ConditionalVAE",
    "DeepHVAEConfig",
    "DeepHierarchicalVAE",
    "ELBOTerms",
    "HVAEConfig",
    "HierarchicalVAE",
    "LatentMoments",
    "LikelihoodModel",
    "Model",
    "VAEConfig",
    "VQVAEConfig",
    "build_model",
    "model_names",
    "models_help",
    "register_model",
]
