"""The trainer-state format: what `vaekit train --resume` needs beyond the model.

A training checkpoint is a directory (``RUN/checkpoints/last``, ``RUN/checkpoints/best``):

* ``model.safetensors`` + ``config.json``: the model in the format above (``vaekit.load``
  reads it; the run's full config is under "config");
* ``optimizer.safetensors``: every tensor of the optimiser's state (Adam's moments, steps);
* ``trainer.safetensors``: RNG states (torch CPU/CUDA generator states are uint8 tensors)
  and the data generator's states (now and at the start of the epoch);
* ``trainer.json``: the loop's counters, the schedule and early-stopping state, the
  GradScaler state, the optimiser's non-tensor state (param groups), and the SHA-256 of
  both safetensors files, so a tampered or truncated state file is refused. Its own SHA-256
  is in the checkpoint's config.json (metadata "trainer_json_sha256"), next to the
  weights' hash, and its fields are checked (types, ranges) before the trainer uses them.

The directory is written under a temporary name and renamed into place; the previous
checkpoint is moved aside first and deleted only after the new one is in place, so a crash
at any moment leaves one complete checkpoint (``last`` or, between the two renames,
``.last.old``, which ``find_checkpoint`` falls back to).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from vaekit._version import __version__
from vaekit.checkpoint import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    load_state,
    read_descriptor,
    read_versioned_json,
    save_model,
)
from vaekit.outputs import read_regular
from vaekit.rundir import (
    atomic_write_bytes,
    atomic_write_json,
    fsync_dir,
    json_bytes,
    remove_leftover,
)
from vaekit.settings import to_dict
from vaekit.validate import StateError

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    old = path.parent / f".{path.name}.old"
    remove_leftover(tmp)  # a leftover of a crash during an earlier write
    moved_aside = False
    try:
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
        hashes = {}
        for name, group in ((OPTIMIZER_FILE, opt_tensors), (TRAINER_TENSORS_FILE, tensors)):
            blob = save_safetensors({k: v.detach().contiguous().cpu() for k, v in group.items()})
            atomic_write_bytes(tmp / name, blob)
            hashes[name] = hashlib.sha256(blob).hexdigest()
        trainer_json = json_bytes(
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
        metadata = {
            "step": state.get("step"),
            TRAIN_STATE_HASH: hashlib.sha256(trainer_json).hexdigest(),
        }
        save_model(model, tmp, data=data, config=config, metadata=metadata)
        fsync_dir(tmp)
        moved_aside = path.exists()
        if moved_aside:
            remove_leftover(old)  # a crash between the two replaces below leaves it
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        if moved_aside:  # only the checkpoint this call just moved there, never a stray folder
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:  # tmp is this call's own: remove_leftover cleared it before
        if moved_aside and not path.exists():  # failed between the replaces: put it back
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


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
        blob = read_regular(state_path)
    except FileNotFoundError:
        raise CheckpointError(f"{state_path}: missing (the checkpoint is incomplete)") from None
    if recorded is None:
        raise CheckpointError(
            f"{path / CONFIG_FILE}: records no SHA-256 of {TRAIN_STATE_FILE}; refusing to "
            "resume from an unverifiable checkpoint"
        )
    if hashlib.sha256(blob).hexdigest() != recorded:
        raise CheckpointError(
            f"{state_path}: SHA-256 does not match {CONFIG_FILE} (corrupted, truncated or "
            "modified); refusing to resume from it"
        )
    state = read_versioned_json(
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
            blob = read_regular(file)
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_training_state(state: dict[str, Any], path: str | Path) -> None:
    """Check trainer.json's fields (types, ranges, consistency); :class:`StateError` names
    the file and the first bad field."""

    def bad(field: str, need: str, value: Any) -> StateError:
        return StateError(f"{path}: {field} must be {need}, got {value!r}")

    files = state.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise bad("files", "a table of SHA-256 hashes", files)
    loop = state.get("loop")
    if not isinstance(loop, dict):
        raise bad("loop", "a table", loop)
    counters = (
        "step",
        "epoch",
        "batch",
        "epochs_without_improvement",
        "bad_steps",
        "skipped_steps",
        "metrics_bytes",
    )
    for name in counters:
        value = loop.get(name)
        if not _is_int(value) or value < 0:
            raise bad(f"loop.{name}", "an integer >= 0", value)
    if loop["skipped_steps"] > loop["step"]:
        raise bad("loop.skipped_steps", f"<= loop.step ({loop['step']})", loop["skipped_steps"])
    best, best_epoch = loop.get("best_val_elbo"), loop.get("best_epoch")
    if best is not None and (not _is_number(best) or not math.isfinite(best)):
        raise bad("loop.best_val_elbo", "a finite number or null", best)
    if best_epoch is not None and (not _is_int(best_epoch) or not 0 < best_epoch <= loop["epoch"]):
        raise bad("loop.best_epoch", f"null or an epoch in 1..{loop['epoch']}", best_epoch)
    for name in ("interval", "epoch_sums"):
        sums = loop.get(name)
        if not isinstance(sums, dict) or not all(
            isinstance(k, str) and _is_number(v) for k, v in sums.items()
        ):
            raise bad(f"loop.{name}", "a table of numbers", sums)
    world = state.get("world_size")
    if not _is_int(world) or world < 1:
        raise bad("world_size", "an integer >= 1", world)
    for name in ("schedule", "scaler"):
        if not isinstance(state.get(name), dict):
            raise bad(name, "a table", state.get(name))
    optimizer = state.get("optimizer")
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("param_groups"), list):
        raise bad("optimizer", "a table with param_groups", optimizer)
    updates = state.get("ema_updates", 0)
    if not _is_int(updates) or updates < 0:
        raise bad("ema_updates", "an integer >= 0", updates)


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
