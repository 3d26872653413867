"""Mixed precision for the network bodies; every log-density stays in float32.

Under ``train.precision = "bf16"`` or ``"fp16"`` (CUDA only) the encoder and decoder bodies
run inside ``torch.autocast`` and their outputs are cast back to float32 before the
posterior head, the likelihood's ``log_prob`` and the KL see them. So the matrix products
get the speed of half precision, while every likelihood (Gaussian with its log sigma and
squared error summed over pixels, Bernoulli's BCE-with-logits) and the closed-form KL are
evaluated in float32, where sums over hundreds of pixels keep their precision. fp16 also
needs loss scaling against gradient underflow: :func:`setup_precision` returns an enabled
``GradScaler`` for it (disabled, i.e. a no-op, otherwise).
"""

from __future__ import annotations

import torch
from torch import nn

AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def setup_precision(model: nn.Module, precision: str, device: torch.device) -> torch.amp.GradScaler:
    """Patch the model's network bodies to autocast (see above); return the scaler."""
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return torch.amp.GradScaler("cpu", enabled=False)
    if device.type != "cuda":
        raise ValueError(
            f"train.precision = {precision!r} needs a CUDA device, but training runs on "
            f"{device.type}: use train.precision = 'fp32' there"
        )
    autocast_bodies(model, device.type, dtype)
    return torch.amp.GradScaler("cuda", enabled=precision == "fp16")


def autocast_bodies(model: nn.Module, device_type: str, dtype: torch.dtype) -> None:
    """Run the model's network bodies (``model.network_bodies()``: for the VAE its encoder
    and decoder) under autocast, returning float32 outputs."""
    for body in model.network_bodies():
        body.forward = _autocast_forward(body.forward, device_type, dtype)


def restore_precision(model: nn.Module) -> None:
    """Undo :func:`setup_precision` (the trained model then runs in float32 again)."""
    for body in model.network_bodies():
        body.__dict__.pop("forward", None)


def _autocast_forward(forward, device_type: str, dtype: torch.dtype):
    def autocast_forward(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            out = forward(*args, **kwargs)
        return out.float()  # back to fp32 before any log-density is computed

    return autocast_forward
