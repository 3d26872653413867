"""Checks of saved state before anything is built from it.

* :func:`read_safetensors_header`: the tensor names, dtypes and shapes of a safetensors file
  from its JSON header alone (the first 8 bytes give the header's length), with the byte
  ranges checked against the file's size, so a header cannot claim more data than the file has.
* :func:`check_weights_header`: the architecture a config.json describes against the weights
  file's header: names, shapes and dtypes must agree *before* the model is built. The expected
  tensors come from building the model on PyTorch's ``meta`` device, which allocates nothing,
  so a crafted ``hidden_dims = [1000000000]`` costs nothing and is refused.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaekit.distributions.tabular import upgrade_stored_scalars
from vaekit.outputs import open_regular

# safetensors dtype names -> torch dtypes (the ones torch has).
SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
# The float dtypes vaekit trains and saves in (mixed precision keeps fp32 weights).
WEIGHT_DTYPES = (torch.float32, torch.float64)
MAX_HEADER_BYTES = 100 << 20  # the safetensors format's own limit on the JSON header


class StateError(ValueError):
    """Saved state is malformed, inconsistent or of the wrong type (the message names where)."""


def read_safetensors_header(path: str | Path) -> dict[str, tuple[torch.dtype, list[int]]]:
    """``{name: (dtype, shape)}`` of every tensor in safetensors file ``path``, read from the
    header only (the file opened as :func:`vaekit.outputs.open_regular` opens every file vaekit
    reads). Raises :class:`StateError` for a malformed header or byte ranges that do not fit
    the file (each tensor's range must hold exactly ``numel * itemsize`` bytes)."""
    path = Path(path)
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise StateError(f"{path}: not a valid safetensors file (shorter than 8 bytes)")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise StateError(f"{path}: not a valid safetensors file (header length {length})")
        raw = handle.read(length)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StateError(f"{path}: not a valid safetensors file (header: {exc})") from None
    if not isinstance(header, dict):
        raise StateError(f"{path}: not a valid safetensors file (header is not an object)")
    data_bytes = size - 8 - length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = SAFETENSORS_DTYPES[entry["dtype"]]
            shape = [int(d) for d in entry["shape"]]
            begin, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise StateError(f"{path}: tensor {name!r}: malformed header entry {entry!r}") from None
        itemsize = torch.empty((), dtype=dtype).element_size()
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= data_bytes:
            raise StateError(f"{path}: tensor {name!r}: shape or byte range outside the file")
        if end - begin != math.prod(shape) * itemsize:
            raise StateError(
                f"{path}: tensor {name!r}: shape {shape} needs {math.prod(shape) * itemsize} "
                f"bytes, the header gives it {end - begin}"
            )
        tensors[name] = (dtype, shape)
    return tensors


def expected_tensors(build: Callable[[], nn.Module]) -> dict[str, tuple[torch.dtype, list[int]]]:
    """``{name: (dtype, shape)}`` of the state dict of the module ``build()`` makes, built on
    the ``meta`` device (no memory is allocated, whatever the sizes)."""
    with torch.device("meta"):
        module = build()
    return {k: (v.dtype, list(v.shape)) for k, v in module.state_dict().items()}


def check_weights_header(
    weights_path: str | Path,
    config_path: str | Path,
    expected: dict[str, tuple[torch.dtype, list[int]]],
) -> torch.dtype | None:
    """Check the weights file's header against the model ``config_path`` describes.

    Names and shapes must match ``expected`` exactly. Floating tensors must all share one
    dtype, float32 or float64 (what vaekit writes); a non-floating tensor must have the
    expected dtype. Returns the file's float dtype (None if it has no float tensors); the
    caller converts a float64 file for a float32 model on purpose and says so.
    """
    weights_path = Path(weights_path)
    found = upgrade_stored_scalars(read_safetensors_header(weights_path))
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise StateError(
            f"{weights_path}: weights do not match the model in {config_path} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    file_float = None
    for name, (dtype, shape) in found.items():
        want_dtype, want_shape = expected[name]
        if shape != want_shape:
            raise StateError(
                f"{weights_path}: {name} has shape {shape}, the model in {config_path} needs "
                f"{want_shape}"
            )
        if dtype.is_floating_point != want_dtype.is_floating_point or (
            not dtype.is_floating_point and dtype != want_dtype
        ):
            raise StateError(
                f"{weights_path}: {name} has dtype {_name(dtype)}, the model needs "
                f"{_name(want_dtype)}"
            )
        if dtype.is_floating_point:
            if dtype not in WEIGHT_DTYPES:
                raise StateError(
                    f"{weights_path}: {name} has dtype {_name(dtype)}; vaekit weights are "
                    "float32 or float64"
                )
            if file_float is None:
                file_float = dtype
            elif dtype != file_float:
                raise StateError(
                    f"{weights_path}: {name} has dtype {_name(dtype)} while the other weights "
                    f"are {_name(file_float)}; refusing a file of mixed precision"
                )
    return file_float


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# --- JSON that vaekit wrote and reads back ---------------------------------------------------


def parse_json(text: str | bytes, path: str | Path) -> Any:
    """``json.loads`` of a file vaekit reads back; a file that is not JSON, not UTF-8 or
    nested too deeply for the parser (a crafted ``[[[[...]]]]``) is a :class:`StateError`
    naming ``path``."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StateError(f"{path}: corrupt JSON ({exc})") from None
    except RecursionError:
        raise StateError(f"{path}: corrupt JSON (nested too deeply)") from None


def _fail(path: str | Path, field: str, want: str, value: Any) -> None:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise StateError(f"{path}: {field} must be {want}, got {shown}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check(path, field: str, value: Any, kind: str, optional: bool = True) -> None:
    """One field against one of the kinds below ("object", "str", "int>=1", ...)."""
    if value is None and optional:
        return
    ok, want = _KINDS[kind]
    if not ok(value):
        _fail(path, field, want + (" or null" if optional else ""), value)


_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "object": (lambda v: isinstance(v, dict), "an object"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "strings": (
        lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
        "a list of strings",
    ),
    "int>=1": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "int>=2": (lambda v: _is_int(v) and v >= 2, "an integer >= 2"),
    "number>=0": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    "number>0": (lambda v: _is_number(v) and v > 0, "a finite number > 0"),
    "shape": (
        lambda v: (
            isinstance(v, list) and 1 <= len(v) <= 8 and all(_is_int(d) and d >= 1 for d in v)
        ),
        "a list of 1 to 8 positive integers",
    ),
    "size": (
        lambda v: isinstance(v, list) and len(v) == 2 and all(_is_int(d) and d >= 1 for d in v),
        "two positive integers [H, W]",
    ),
    "sha256": (
        lambda v: isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v),
        "a SHA-256 (64 hexadecimal digits)",
    ),
    "file name": (
        lambda v: isinstance(v, str) and v not in ("", ".", "..") and Path(v).name == v,
        "a file name inside the model directory",
    ),
}

# The data section's fields that vaekit reads back (a run may carry more: they are not read).
_DATA_FIELDS = {
    "name": "str",
    "support": "str",
    "num_levels": "int>=2",
    "columns": "strings",
    "label_column": "str",
    "classes": "strings",
    "image_size": "size",
    "source": "str",
    "variant": "str",
}
SUPPORTS = ("binary", "unit-interval", "real", "table")  # data.datasets.Support
# Each saved transform's parameters (data/transforms.py writes them with ``to_dict``).
_TRANSFORM_PARAMS: dict[str, dict[str, str]] = {
    "identity": {},
    "scale": {"divisor": "number>0"},
    "dequantize": {"levels": "int>=2"},
    "levels": {"levels": "int>=2"},
    "binarize-dynamic": {"levels": "int>=2"},
    "standardize": {"mean": "array", "std": "array"},
    "table": {},  # a mixed-type table's encoding: its schema is the model's columns
}
_METADATA_FIELDS = {
    "train_seconds": "number>=0",
    "device": "str",
    "torch_version": "str",
    "vaekit_version": "str",
    "world_size": "int>=1",
    "trainer_json_sha256": "sha256",
}


def check_descriptor(descriptor: dict[str, Any], path: str | Path) -> None:
    """Check every field of a model's config.json that vaekit reads back, before anything
    uses it: each section's type, the data section's fields (shape, levels, transform and
    its statistics, columns) and their agreement with the model's data shape, the weights
    entry (a plain file name and a SHA-256) and the metadata. The model section itself is
    checked by its config class when it is built. Raises :class:`StateError` naming the
    file and the field."""
    for section in ("model", "weights"):
        _check(path, section, descriptor.get(section), "object", optional=False)
    for section in ("data", "config", "metadata"):
        _check(path, section, descriptor.get(section), "object")
    weights = descriptor["weights"]
    _check(path, "weights.file", weights.get("file"), "file name")
    _check(path, "weights.sha256", weights.get("sha256"), "sha256", optional=False)
    for name, kind in _METADATA_FIELDS.items():
        _check(path, f"metadata.{name}", (descriptor.get("metadata") or {}).get(name), kind)
    model_shape = descriptor["model"].get("data_shape")
    _check(path, "model.data_shape", model_shape, "shape")
    if descriptor.get("data") is not None:
        check_data_info(descriptor["data"], path, model_shape)
    if descriptor.get("config") is not None:
        from vaekit.config import Config  # the run's full config: its own validation
        from vaekit.settings import ConfigError

        try:
            Config.from_dict(descriptor["config"])
        except ConfigError as exc:
            raise StateError(f"{path}: config: {exc}") from None


def check_data_info(
    info: dict[str, Any], path: str | Path, model_shape: list[int] | None = None
) -> None:
    """Check a config.json ``data`` section (see :func:`check_descriptor`)."""
    _check(path, "data", info, "object", optional=False)
    _check(path, "data.shape", info.get("shape"), "shape", optional=model_shape is not None)
    shape = info.get("shape")
    if shape is not None and model_shape is not None and shape != model_shape:
        _fail(path, "data.shape", f"the model's data_shape {model_shape}", shape)
    shape = shape or model_shape
    for name, kind in _DATA_FIELDS.items():
        _check(path, f"data.{name}", info.get(name), kind)
    if info.get("support") is not None and info["support"] not in SUPPORTS:
        _fail(path, "data.support", "one of " + ", ".join(SUPPORTS), info["support"])
    columns = info.get("columns")
    table = info.get("support") == "table"  # names the table's columns, not encoded features
    if columns is not None and shape is not None and not table and len(columns) != math.prod(shape):
        _fail(path, "data.columns", f"{math.prod(shape)} names (the data shape {shape})", columns)
    transform = info.get("transform")
    if transform is None:
        return
    _check(path, "data.transform", transform, "object")
    kind = transform.get("kind")
    if kind not in _TRANSFORM_PARAMS:
        _fail(path, "data.transform.kind", "one of " + ", ".join(_TRANSFORM_PARAMS), kind)
    params = _TRANSFORM_PARAMS[kind]
    unknown = sorted(set(transform) - set(params) - {"kind"})
    if unknown:
        raise StateError(f"{path}: data.transform: unknown field {unknown[0]!r} for {kind!r}")
    for name, want in params.items():
        where = f"data.transform.{name}"
        if want != "array":
            _check(path, where, transform.get(name), want, optional=False)
            continue
        _check_statistics(path, where, transform.get(name), shape, positive=name == "std")


def _check_statistics(path, where: str, value: Any, shape: list[int] | None, positive: bool):
    """Standardisation statistics: finite numbers (positive for a std) of the data's shape."""
    import numpy as np

    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        _fail(path, where, "an array of numbers", value)
    if shape is not None and list(array.shape) != list(shape):
        _fail(path, where, f"an array of shape {list(shape)}", f"shape {list(array.shape)}")
    if not np.isfinite(array).all() or (positive and not (array > 0).all()):
        want = "positive finite numbers" if positive else "finite numbers"
        raise StateError(f"{path}: {where} must hold {want}")
