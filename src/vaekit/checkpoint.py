"""The one model-file format and the one loader every entry point uses.

A saved model is a directory with

* ``model.safetensors``: the weights (safetensors: tensors only, nothing executable);
* ``config.json``: the model's constructor arguments, the data preprocessing, the SHA-256 of
  the weights file and free-form metadata (a training run also stores its full config here).

Nothing is ever unpickled. Files are written to a temporary name and moved into place
(``rundir.atomic_write_bytes``), so a crash leaves either the old file or the new one; the
recorded hash catches a weights file that does not belong to its config (tampering,
truncation, a half-finished copy). The trainer-state format lives in ``training/state_files.py``.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from vaekit._version import __version__
from vaekit.distributions.tabular import upgrade_stored_scalars
from vaekit.models import build_model  # models never import this module: no import cycle
from vaekit.models.registry import model_config_from_dict
from vaekit.outputs import read_regular, run_file
from vaekit.rundir import atomic_write_bytes, atomic_write_json, training_note
from vaekit.settings import ConfigError, to_dict
from vaekit.validate import (
    StateError,
    check_descriptor,
    check_weights_header,
    expected_tensors,
    parse_json,
)

FORMAT = "vaekit-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
    """A model file is missing, corrupt, tampered with or does not match its config."""


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
    """Read and check a saved model's ``config.json``: its format, then every field vaekit
    reads back (``validate.check_descriptor``); raises :class:`CheckpointError` naming the
    file and the field."""
    path = Path(path)
    config_path = path / CONFIG_FILE if path.is_dir() else path
    if not path.exists():
        raise CheckpointError(f"{path}: no such model directory")
    descriptor = read_versioned_json(config_path, FORMAT, FORMAT_VERSION, "vaekit model")
    try:
        check_descriptor(descriptor, config_path)
    except StateError as exc:
        raise CheckpointError(str(exc)) from None
    return descriptor


def read_versioned_json(path: Path, fmt: str, version: int, what: str) -> dict[str, Any]:
    """Read a JSON file that must carry ``format == fmt`` and ``format_version == version``."""
    try:
        data = parse_json(read_regular(path), path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (not a {what})") from None
    except StateError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise CheckpointError(f"{path}: not a {what} (no format={fmt!r})")
    if data.get("format_version") != version:
        raise CheckpointError(
            f"{path}: format version {data.get('format_version')!r} is not supported "
            f"(this vaekit reads {version})"
        )
    return data


def load_state(path: str | Path, descriptor: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Read the weights file named in ``descriptor``, verifying its SHA-256 first."""
    weights = descriptor.get("weights") or {}
    weights_path = run_file(path, weights.get("file", WEIGHTS_FILE))
    try:
        blob = read_regular(weights_path)
    except FileNotFoundError:
        raise CheckpointError(f"{weights_path}: missing weights file") from None
    except StateError as exc:
        raise CheckpointError(str(exc)) from None
    if hashlib.sha256(blob).hexdigest() != weights.get("sha256"):
        raise CheckpointError(
            f"{weights_path}: SHA-256 does not match config.json (file corrupted, truncated "
            "or modified); refusing to load"
        )
    try:
        return upgrade_stored_scalars(load_safetensors(blob))
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{weights_path}: not a valid safetensors file ({exc})") from None


def load(
    path: str | Path,
    encoder: nn.Module | None = None,
    decoder: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Load a saved model from directory ``path`` (a model directory or a training run).

    The model registered under the config's ``kind`` builds itself from its config block.
    Pass ``encoder`` / ``decoder`` when the model was saved with custom network bodies;
    their weights are then loaded from the file like every other parameter.
    """
    path = Path(path)
    descriptor = read_descriptor(path)
    try:
        model_config = model_config_from_dict(descriptor.get("model"), "model")
    except ConfigError as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: invalid model config: {exc}") from None
    # The architecture is checked against the weights file's header before anything is built
    # (on the meta device nothing is allocated), so a crafted config cannot allocate.
    weights_file = run_file(path, (descriptor.get("weights") or {}).get("file", WEIGHTS_FILE))
    try:
        bodies = {k: v for k, v in (("encoder", encoder), ("decoder", decoder)) if v is not None}
        expected_meta = expected_tensors(lambda: build_model(model_config, **bodies))
        file_dtype = check_weights_header(weights_file, path / CONFIG_FILE, expected_meta)
    except FileNotFoundError:
        missing = training_note(path) or f"{weights_file}: missing weights file"
        raise CheckpointError(missing) from None
    except StateError as exc:
        raise CheckpointError(str(exc)) from None
    state = load_state(path, descriptor)
    model = build_model(model_config, **bodies)
    expected = model.state_dict()
    model_dtype = next((v.dtype for v in expected.values() if v.is_floating_point()), None)
    if file_dtype is not None and model_dtype is not None and file_dtype != model_dtype:
        warnings.warn(  # on purpose, and said: torch's default dtype decides the model's
            f"{weights_file}: {str(file_dtype).removeprefix('torch.')} weights converted to "
            f"{str(model_dtype).removeprefix('torch.')} (torch's default dtype)",
            stacklevel=2,
        )
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


def check_weights_fit(path: str | Path, model: nn.Module) -> None:
    """Check checkpoint ``path``'s weights file header against ``model`` (names, shapes,
    dtypes) before its tensors are loaded into it; :class:`CheckpointError` names the tensor."""
    path = Path(path)
    expected = {k: (v.dtype, list(v.shape)) for k, v in model.state_dict().items()}
    try:
        check_weights_header(path / WEIGHTS_FILE, path / CONFIG_FILE, expected)
    except FileNotFoundError:
        raise CheckpointError(f"{path / WEIGHTS_FILE}: missing weights file") from None
    except StateError as exc:
        raise CheckpointError(str(exc)) from None
