"""A small classifier per dataset whose features score samples: the Fréchet classifier distance.

FID needs the Inception network, which vaekit neither ships nor downloads. Instead vaekit
trains, once per dataset, a small MLP classifier on the labelled training split:

    flatten(x) [D] -> Linear(D, 256) -> ReLU -> Linear(256, 64) -> ReLU   (features, 64-d)
               -> Linear(64, num_classes)                                   (logits)

(Adam, lr 1e-3, batch 128, 2000 steps, seed 0, on the model-space inputs, i.e. after the
dataset's transform.) The 64-d penultimate activations are the feature space. The network is
cached as ``<key>.safetensors`` + ``<key>.json`` in ``$VAEKIT_CACHE_DIR/feature-nets/``
(default ``~/.cache/vaekit/feature-nets/``) and nowhere else (never beside the data), where
``key`` = the dataset's file name + the first 16 hex digits of a SHA-256 over the training
data, labels, transform and this recipe. The JSON records the test accuracy. Files are
written atomically and the weights' hash is checked on load; a cache that cannot be written
costs only the retraining next time.

FCD = ||m_r - m_g||^2 + tr(C_r + C_g - 2 (C_r^{1/2} C_g C_r^{1/2})^{1/2}) (Fréchet / Wasserstein-2
distance between Gaussians, Dowson & Landau 1982) between real test features and features of
generated E[x|z], z ~ N(0, I). Units: squared feature units; lower is better; 0 for identical
feature statistics. Comparable only between models of the same dataset (same classifier).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from vaekit.data import Dataset
from vaekit.data.download import cache_dir as user_cache_dir
from vaekit.rundir import atomic_write_bytes, atomic_write_json

RECIPE = {
    "version": 1,
    "architecture": "MLP D-256-64-classes, ReLU; features = 64-d penultimate activations",
    "optimizer": "Adam lr=1e-3",
    "batch_size": 128,
    "steps": 2000,
    "seed": 0,
}
FEATURE_DIM = 64


class FeatureClassifier(nn.Module):
    """flatten -> 256 -> 64 (features) -> classes. ``features(x [B, ...]) -> [B, 64]``."""

    def __init__(self, input_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(input_dim, 256),
            nn.ReLU(),
            nn.Linear(256, FEATURE_DIM),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def cache_dir() -> Path:
    """``$VAEKIT_CACHE_DIR/feature-nets``, else the user cache's (``~/.cache/vaekit`` or
    ``$XDG_CACHE_HOME/vaekit``) ``feature-nets``."""
    root = os.environ.get("VAEKIT_CACHE_DIR") or user_cache_dir()
    return Path(root) / "feature-nets"


def dataset_key(dataset: Dataset) -> str:
    """``<name>-<16 hex>``: SHA-256 of the training data, labels, transform and recipe.
    ``name`` is the last part of the dataset's name (a user file's is its whole path) in
    letters, digits, ``.``, ``_`` and ``-``, so the files stay inside :func:`cache_dir`."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(dataset.name).name).lstrip(".") or "data"
    digest = hashlib.sha256()
    digest.update(json.dumps([dataset.name, list(dataset.shape), RECIPE]).encode())
    digest.update(json.dumps(dataset.transform.to_dict(), sort_keys=True).encode())
    digest.update(dataset.train.x.contiguous().numpy().tobytes())
    digest.update(dataset.train.y.contiguous().numpy().tobytes())
    return f"{name}-{digest.hexdigest()[:16]}"


@torch.enable_grad()
def _train(dataset: Dataset) -> tuple[FeatureClassifier, float]:
    """Train the classifier by RECIPE; returns it and its test accuracy (fraction)."""
    torch.manual_seed(RECIPE["seed"])
    generator = torch.Generator().manual_seed(RECIPE["seed"])
    num_classes = int(dataset.train.y.max()) + 1
    net = FeatureClassifier(int(torch.tensor(dataset.shape).prod()), num_classes)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    step = 0
    while step < RECIPE["steps"]:
        for x, y in dataset.batches("train", RECIPE["batch_size"], True, generator):
            loss = nn.functional.cross_entropy(net(x.float()), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == RECIPE["steps"]:
                break
    net.eval()
    with torch.no_grad():
        x_test, y_test = dataset.fixed("test", seed=0).float(), dataset.test.y
        accuracy = float((net(x_test).argmax(dim=1) == y_test).double().mean())
    return net, accuracy


def is_cached(dataset: Dataset) -> bool:
    """Whether the dataset's classifier is cached (else the first FCD trains it first)."""
    if dataset.train.y is None:
        return False
    key = dataset_key(dataset)
    return all((cache_dir() / f"{key}{suffix}").is_file() for suffix in (".safetensors", ".json"))


def load_or_train(dataset: Dataset, log=None) -> tuple[FeatureClassifier, dict[str, Any]]:
    """The dataset's cached classifier (trained and cached on first use) and its metadata."""
    if dataset.train.y is None:
        raise ValueError(f"dataset {dataset.name!r} has no labels: no feature classifier")
    key = dataset_key(dataset)
    directory = cache_dir()
    weights_path, meta_path = directory / f"{key}.safetensors", directory / f"{key}.json"
    num_classes = int(dataset.train.y.max()) + 1
    input_dim = int(torch.tensor(dataset.shape).prod())
    if weights_path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            blob = weights_path.read_bytes()
            if hashlib.sha256(blob).hexdigest() == meta.get("sha256"):
                net = FeatureClassifier(input_dim, num_classes)
                net.load_state_dict(load_safetensors(blob))
                return net.eval(), meta
        except (OSError, ValueError, RuntimeError):
            pass  # a corrupt cache entry is retrained and replaced below
    if log is not None:
        log(f"training the feature classifier for {dataset.name} (once; cached in {directory})")
    net, accuracy = _train(dataset)
    blob = save_safetensors({k: v.contiguous() for k, v in net.state_dict().items()})
    meta = {
        "dataset": dataset.name,
        "key": key,
        "recipe": RECIPE,
        "num_classes": num_classes,
        "test_accuracy": accuracy,
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    try:
        atomic_write_bytes(weights_path, blob)
        atomic_write_json(meta_path, meta)
    except OSError as exc:  # the distance needs no cache; it is only slower next time
        if log is not None:
            log(f"could not cache the feature classifier in {directory} ({exc})")
    return net, meta


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to ``[N, d]`` and ``[M, d]`` features.

    ``||m_a - m_b||^2 + tr(C_a) + tr(C_b) - 2 tr((C_a^{1/2} C_b C_a^{1/2})^{1/2})`` in float64;
    the matrix square roots use symmetric eigendecompositions (eigenvalues clamped at 0
    against round-off). Covariances are the unbiased sample covariances.
    """
    a, b = features_a.double(), features_b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    eigval, eigvec = torch.linalg.eigh(cov_a)
    sqrt_a = eigvec @ torch.diag(eigval.clamp(min=0).sqrt()) @ eigvec.T
    middle = sqrt_a @ cov_b @ sqrt_a
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return float(value.clamp(min=0))


@torch.no_grad()
def frechet_classifier_distance(
    model, dataset: Dataset, split: str = "test", seed: int = 0, max_examples: int = 10000
) -> dict[str, Any]:
    """FCD between the split's real examples and as many generated E[x|z], z ~ p(z). A
    conditional model generates one image for each real example's label."""
    net, meta = load_or_train(dataset)
    real = dataset.fixed(split, seed=seed)[:max_examples].float()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    y = None
    if model.takes_labels:
        y = dataset.split(split).y[: real.shape[0]].to(device)
    fake = model.sample(real.shape[0], generator=generator, y=y).float().cpu()
    value = frechet_distance(net.features(real), net.features(fake))
    return {
        "frechet_classifier_distance": value,
        "fcd_num_examples": int(real.shape[0]),
        "fcd_classifier": {
            "key": meta["key"],
            "architecture": meta["recipe"]["architecture"],
            "test_accuracy": meta["test_accuracy"],
        },
    }
