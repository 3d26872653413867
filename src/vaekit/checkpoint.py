"""The one model-file format and the one loader every entry point uses.

A saved model is a directory with

* ``model.safetensors``: the weights (safetensors: tensors only, nothing executable);
* ``config.json``: the model's constructor arguments, the data preprocessing, the SHA-256 of
  the weights file and free-form metadata (a training run also stores its full config here).

Nothing is ever unpickled. Files are written to a temporary name and moved into place, so a
crash leaves either the old file or the new one; the recorded hash catches a weights file
that does not belong to its config (tampering, truncation, a half-finished copy).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from vaekit.config import ConfigError, ModelConfig, from_dict, to_dict

FORMAT = "vaekit-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
    """A model file is missing, corrupt, tampered with or does not match its config."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_model(
    model: nn.Module,
    path: str | Path,
    data: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` into directory ``path`` (weights first, then the config that names them).

    ``data`` describes the preprocessing (dataset name, transform, statistics) so that
    ``encode``/``reconstruct`` on new data can apply the same one; ``config`` is a training
    run's full configuration.
    """
    from vaekit import __version__

    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    blob = save_safetensors(state)
    atomic_write_bytes(path / WEIGHTS_FILE, blob)
    descriptor = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vaekit_version": __version__,
        "model": to_dict(model.config),
        "data": data if data is not None else getattr(model, "data_info", None),
        "config": config,
        "weights": {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(blob).hexdigest()},
        "metadata": metadata or {},
    }
    atomic_write_json(path / CONFIG_FILE, descriptor)
    return path


def read_descriptor(path: str | Path) -> dict[str, Any]:
    """Read and check a saved model's ``config.json``; raises :class:`CheckpointError`."""
    path = Path(path)
    config_path = path / CONFIG_FILE if path.is_dir() else path
    if not path.exists():
        raise CheckpointError(f"{path}: no such model directory")
    try:
        descriptor = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{config_path}: missing (not a saved vaekit model)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path}: corrupt JSON ({exc})") from None
    if not isinstance(descriptor, dict) or descriptor.get("format") != FORMAT:
        raise CheckpointError(f"{config_path}: not a vaekit model config (no format={FORMAT!r})")
    if descriptor.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: format version {descriptor.get('format_version')!r} is not "
            f"supported (this vaekit reads {FORMAT_VERSION})"
        )
    return descriptor


def load_state(path: str | Path, descriptor: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Read the weights file named in ``descriptor``, verifying its SHA-256 first."""
    weights = descriptor.get("weights") or {}
    weights_path = Path(path) / str(weights.get("file", WEIGHTS_FILE))
    try:
        blob = weights_path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{weights_path}: missing weights file") from None
    if hashlib.sha256(blob).hexdigest() != weights.get("sha256"):
        raise CheckpointError(
            f"{weights_path}: SHA-256 does not match config.json (file corrupted, truncated "
            "or modified); refusing to load"
        )
    try:
        return load_safetensors(blob)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{weights_path}: not a valid safetensors file ({exc})") from None


def load(
    path: str | Path,
    encoder: nn.Module | None = None,
    decoder: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Load a saved VAE or AE from directory ``path`` (a model directory or a training run).

    Pass ``encoder`` / ``decoder`` when the model was saved with custom network bodies;
    their weights are then loaded from the file like every other parameter.
    """
    from vaekit.models import MODELS

    path = Path(path)
    descriptor = read_descriptor(path)
    try:
        model_config = from_dict(ModelConfig, descriptor.get("model"), "model")
    except ConfigError as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: invalid model config: {exc}") from None
    state = load_state(path, descriptor)
    model = MODELS[model_config.kind](model_config, encoder=encoder, decoder=decoder)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path / WEIGHTS_FILE}: weights do not match the model in config.json "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"{path / WEIGHTS_FILE}: {key} has shape {list(tensor.shape)}, the config "
                f"needs {list(expected[key].shape)}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path / WEIGHTS_FILE}: {key} contains NaN or inf")
    model.load_state_dict(state)
    model.data_info = descriptor.get("data")
    return model.to(map_location).eval()


def load_run(run: str | Path, data_dir: str | None = None):
    """A run directory's model and the dataset it was trained on, loaded with the run's own
    split settings (``config.json``): ``(model, dataset)``. ``data_dir`` overrides the run's."""
    from vaekit.data import load_dataset

    model = load(run)
    descriptor = read_descriptor(run)
    data_info = descriptor.get("data") or {}
    data_config = (descriptor.get("config") or {}).get("data", {})
    name = data_info.get("name") or data_config.get("name")
    if name is None:
        raise CheckpointError(
            f"{run}: config.json does not say which dataset the model was trained on"
        )
    dataset = load_dataset(
        name,
        data_dir or data_config.get("data_dir"),
        data_config.get("val_fraction", 0.1),
        data_config.get("split_seed", 0),
    )
    return model, dataset
