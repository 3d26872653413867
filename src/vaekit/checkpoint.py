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
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from vaekit._version import __version__
from vaekit.models import build_model  # models never import this module: no import cycle
from vaekit.models.registry import model_config_from_dict
from vaekit.settings import ConfigError, to_dict
from vaekit.validate import StateError, check_training_state, check_weights_header, expected_tensors

FORMAT = "vaekit-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
    """A model file is missing, corrupt, tampered with or does not match its config."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory + rename.

    The file gets the mode ``open()`` would give it (``0o666 & ~umask``, not mkstemp's 0600),
    and a failure (a full disk, a read-only folder) raises an OSError naming ``path``.
    """
    from vaekit.rundir import file_mode

    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):  # POSIX; Windows has no such modes
                os.fchmod(handle.fileno(), file_mode())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        temporary = exc.filename is None or Path(exc.filename).name.startswith(f".{path.name}.")
        if temporary:  # name the file the user knows, not the temporary one
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, _json_bytes(obj))


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
    """Read and check a saved model's ``config.json``; raises :class:`CheckpointError`."""
    path = Path(path)
    config_path = path / CONFIG_FILE if path.is_dir() else path
    if not path.exists():
        raise CheckpointError(f"{path}: no such model directory")
    return _read_versioned_json(config_path, FORMAT, FORMAT_VERSION, "vaekit model")


def _read_versioned_json(path: Path, fmt: str, version: int, what: str) -> dict[str, Any]:
    """Read a JSON file that must carry ``format == fmt`` and ``format_version == version``."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (not a {what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt JSON ({exc})") from None
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
    weights_file = path / str((descriptor.get("weights") or {}).get("file", WEIGHTS_FILE))
    try:
        bodies = {k: v for k, v in (("encoder", encoder), ("decoder", decoder)) if v is not None}
        expected_meta = expected_tensors(lambda: build_model(model_config, **bodies))
        file_dtype = check_weights_header(weights_file, path / CONFIG_FILE, expected_meta)
    except FileNotFoundError:
        raise CheckpointError(f"{weights_file}: missing weights file") from None
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


# --- Training state: what `vaekit train --resume` needs beyond the model --------------------
#
# A training checkpoint is a directory (``RUN/checkpoints/last``, ``RUN/checkpoints/best``):
#
# * ``model.safetensors`` + ``config.json``: the model in the format above (``vaekit.load``
#   reads it; the run's full config is under "config");
# * ``optimizer.safetensors``: every tensor of the optimiser's state (Adam's moments, steps);
# * ``trainer.safetensors``: RNG states (torch CPU/CUDA generator states are uint8 tensors)
#   and the data generator's states (now and at the start of the epoch);
# * ``trainer.json``: the loop's counters, the schedule and early-stopping state, the
#   GradScaler state, the optimiser's non-tensor state (param groups), and the SHA-256 of
#   both safetensors files, so a tampered or truncated state file is refused. Its own SHA-256
#   is in the checkpoint's config.json (metadata "trainer_json_sha256"), next to the
#   weights' hash, and its fields are checked (types, ranges) before the trainer uses them.
#
# The directory is written under a temporary name and renamed into place; the previous
# checkpoint is moved aside first and deleted only after the new one is in place, so a crash
# at any moment leaves one complete checkpoint (``last`` or, between the two renames,
# ``.last.old``, which ``find_checkpoint`` falls back to).

TRAIN_FORMAT = "vaekit-train-state"
TRAIN_FORMAT_VERSION = 1
TRAIN_STATE_FILE = "trainer.json"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_TENSORS_FILE = "trainer.safetensors"
# Key of trainer.json's SHA-256 in the checkpoint's config.json "metadata".
TRAIN_STATE_HASH = "trainer_json_sha256"


def flatten_optimizer_state(
    state_dict: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``state.{param}.{name}``) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in group.items()}
        for group in state_dict["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state` (lists in param groups become tuples)."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, entry in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entry)
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
        for group in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def save_training_state(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
    data: dict[str, Any] | None,
    config: dict[str, Any],
) -> Path:
    """Write a complete training checkpoint to directory ``path``, atomically (see above).

    ``tensors`` are extra state tensors (RNG and data-order states); ``state`` is the loop's
    JSON-ready state (counters, schedule, early stopping, GradScaler).
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    old = path.parent / f".{path.name}.old"
    shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a crash during an earlier write
    try:
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
        hashes = {}
        for name, group in ((OPTIMIZER_FILE, opt_tensors), (TRAINER_TENSORS_FILE, tensors)):
            blob = save_safetensors({k: v.detach().contiguous().cpu() for k, v in group.items()})
            atomic_write_bytes(tmp / name, blob)
            hashes[name] = hashlib.sha256(blob).hexdigest()
        trainer_json = _json_bytes(
            {
                "format": TRAIN_FORMAT,
                "format_version": TRAIN_FORMAT_VERSION,
                "files": hashes,
                "optimizer": opt_meta,
                **state,
            }
        )
        atomic_write_bytes(tmp / TRAIN_STATE_FILE, trainer_json)
        # config.json (written last) holds the hash of trainer.json as of the weights.
        metadata = {"step": state.get("step"), TRAIN_STATE_HASH: _sha256(trainer_json)}
        save_model(model, tmp, data=data, config=config, metadata=metadata)
        _fsync_dir(tmp)
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # directories cannot be opened on some platforms (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def find_checkpoint(run: str | Path, which: str = "last") -> Path:
    """The checkpoint directory ``RUN/checkpoints/{which}`` (or its ``.old`` copy left by a
    crash between the two renames of a checkpoint write)."""
    base = Path(run) / "checkpoints"
    for candidate in (base / which, base / f".{which}.old"):
        if (candidate / TRAIN_STATE_FILE).exists():
            return candidate
    if (base / which).is_dir():  # the directory is there, its training state is not
        raise CheckpointError(
            f"{base / which / TRAIN_STATE_FILE}: missing, so the checkpoint is incomplete "
            "and cannot be resumed (its model still loads with vaekit.load)"
        )
    raise CheckpointError(f"{run}: no checkpoint to resume from ({base / which} is missing)")


def load_training_state(
    path: str | Path,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any], dict[str, torch.Tensor]]:
    """Read a training checkpoint: ``(descriptor, model_state, state, tensors)``.

    ``state`` is trainer.json (with the optimiser's JSON part under "optimizer");
    ``tensors`` holds the optimiser tensors under ``optimizer.*`` and the trainer tensors
    under their own names. Every file's SHA-256 is checked; any mismatch is refused.
    """
    path = Path(path)
    descriptor = read_descriptor(path)
    model_state = load_state(path, descriptor)
    state_path = path / TRAIN_STATE_FILE
    recorded = (descriptor.get("metadata") or {}).get(TRAIN_STATE_HASH)
    try:
        blob = state_path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{state_path}: missing (the checkpoint is incomplete)") from None
    if recorded is None:
        raise CheckpointError(
            f"{path / CONFIG_FILE}: records no SHA-256 of {TRAIN_STATE_FILE}; refusing to "
            "resume from an unverifiable checkpoint"
        )
    if _sha256(blob) != recorded:
        raise CheckpointError(
            f"{state_path}: SHA-256 does not match {CONFIG_FILE} (corrupted, truncated or "
            "modified); refusing to resume from it"
        )
    state = _read_versioned_json(
        state_path, TRAIN_FORMAT, TRAIN_FORMAT_VERSION, "vaekit training checkpoint"
    )
    try:
        check_training_state(state, state_path)
    except StateError as exc:
        raise CheckpointError(str(exc)) from None
    tensors: dict[str, torch.Tensor] = {}
    for name, prefix in ((OPTIMIZER_FILE, "optimizer."), (TRAINER_TENSORS_FILE, "")):
        file = path / name
        try:
            blob = file.read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"{file}: missing") from None
        if hashlib.sha256(blob).hexdigest() != state.get("files", {}).get(name):
            raise CheckpointError(
                f"{file}: SHA-256 does not match {TRAIN_STATE_FILE} (corrupted, truncated or "
                "modified); refusing to resume from it"
            )
        try:
            loaded = load_safetensors(blob)
        except (SafetensorError, ValueError) as exc:
            raise CheckpointError(f"{file}: not a valid safetensors file ({exc})") from None
        tensors.update({prefix + k: v for k, v in loaded.items()})
    return descriptor, model_state, state, tensors


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


def write_run_config(
    path: str | Path, model: nn.Module, data: dict[str, Any] | None, config: dict[str, Any]
) -> None:
    """Write a run's ``config.json`` when training starts (no weights yet: ``load`` says so
    until training ends and :func:`save_model` rewrites it with the final weights' hash)."""

    atomic_write_json(
        Path(path) / CONFIG_FILE,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "vaekit_version": __version__,
            "model": to_dict(model.config),
            "data": data,
            "config": config,
            "weights": None,
            "metadata": {"status": "training (see checkpoints/ for weights)"},
        },
    )
