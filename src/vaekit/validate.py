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
import struct
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

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
    header only. Raises :class:`StateError` for a malformed header or byte ranges that do not
    fit the file (each tensor's range must hold exactly ``numel * itemsize`` bytes)."""
    path = Path(path)
    size = path.stat().st_size
    with open_regular(path) as handle:
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
    found = read_safetensors_header(weights_path)
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
