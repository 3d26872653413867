"""Encode and decode NumPy arrays with a saved model: ``.npy`` in, ``.npy`` out.

* ``encode_array``: data ``[N, *data_shape]`` (or ``[N, D]`` flattened) in the dataset's
  stored form (e.g. uint8 grey levels) -> posterior means E_q[z|x] ``[N, m]``. The model's
  saved preprocessing (``config.json`` -> ``data.transform``) is applied first, with a fixed
  seed where it is stochastic (dequantisation noise); pass ``preprocessed=True`` for inputs
  that are already model inputs. Optionally also the log of the marginal posterior
  variances ``log Sigma_jj(x)`` ``[N, m]`` and one draw z ~ q(z|x) ``[N, m]``.
* ``decode_array``: codes ``[N, m]`` -> decoder means E[x|z] ``[N, *data_shape]`` (model
  space, e.g. [0, 1] for images).

Arrays are written as float32 ``.npy`` files atomically; nothing is pickled
(``np.load(..., allow_pickle=False)``).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from vaekit.checkpoint import atomic_write_bytes, load
from vaekit.data import transform_from_dict


def _read_npy(path: str | Path) -> np.ndarray:
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise ValueError(f"{path}: expected a .npy file")
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc})") from None


def _write_npy(path: str | Path, array: torch.Tensor) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise ValueError(f"{path}: the output must be a .npy file")
    buffer = io.BytesIO()
    np.save(buffer, array.detach().cpu().numpy().astype(np.float32), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _batched(fn, x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    outputs = [fn(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return [torch.cat(parts) for parts in zip(*outputs, strict=True)]


@torch.no_grad()
def encode_array(
    run: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    log_var_path: str | Path | None = None,
    sample_path: str | Path | None = None,
    preprocessed: bool = False,
    seed: int = 0,
    batch_size: int = 1000,
) -> list[Path]:
    """Write posterior means (and optionally log-variances and a draw) of an array's rows."""
    model = load(run)
    if not model.has_posterior:
        raise ValueError(
            f"{run}: encode needs a posterior q(z|x) over a continuous code; model "
            f"{model.name!r} has none"
        )
    array = _read_npy(input_path)
    shape = model.data_shape
    if array.ndim >= 1 and array.shape[1:] == (math.prod(shape),):
        array = array.reshape(array.shape[0], *shape)
    if array.ndim < 1 or tuple(array.shape[1:]) != shape:
        raise ValueError(
            f"{input_path}: expected an array of shape [N, {', '.join(map(str, shape))}] "
            f"(or [N, {math.prod(shape)}]), got {list(array.shape)}"
        )
    x = torch.from_numpy(np.ascontiguousarray(array))
    dtype = next(model.parameters()).dtype
    if preprocessed:
        x = x.to(dtype)
    else:
        transform = transform_from_dict(
            (model.data_info or {}).get("transform", {"kind": "identity"})
        )
        x = transform(x, torch.Generator().manual_seed(seed)).to(dtype)
    generator = torch.Generator().manual_seed(seed)

    def encode(xb: torch.Tensor):
        q = model.encode(xb)
        eps = torch.randn(q.mean.shape, generator=generator, dtype=dtype)
        draw = q.mean + (eps.unsqueeze(-2) @ q.scale_tril.transpose(-1, -2)).squeeze(-2)
        return q.mean, q.variance.log(), draw

    mean, log_var, draw = _batched(encode, x, batch_size)
    written = [_write_npy(output_path, mean)]
    if log_var_path is not None:
        written.append(_write_npy(log_var_path, log_var))
    if sample_path is not None:
        written.append(_write_npy(sample_path, draw))
    return written


@torch.no_grad()
def decode_array(
    run: str | Path, input_path: str | Path, output_path: str | Path, batch_size: int = 1000
) -> Path:
    """Write E[x|z] ``[N, *data_shape]`` for codes ``[N, m]`` read from ``input_path``."""
    model = load(run)
    if not model.has_continuous_latent:
        raise ValueError(f"{run}: model {model.name!r} has no continuous code to decode")
    array = _read_npy(input_path)
    if array.ndim != 2 or array.shape[1] != model.latent_dim:
        raise ValueError(
            f"{input_path}: expected codes of shape [N, {model.latent_dim}], "
            f"got {list(array.shape)}"
        )
    z = torch.from_numpy(np.ascontiguousarray(array)).to(next(model.parameters()).dtype)
    (mean,) = _batched(lambda zb: (model.decode_mean(zb),), z, batch_size)
    return _write_npy(output_path, mean)
