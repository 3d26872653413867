"""The decoder as a flat list of layers the explorer page can run in JavaScript.

The page does not bundle a general neural-network runtime: it carries a small interpreter
(``template.html``) for exactly the layer types vaekit's decoders are made of, and this
module turns a decoder ``nn.Module`` into that interpreter's program:

* ``linear`` (``nn.Linear``), ``act`` (ReLU, ELU, GELU, Tanh, SiLU, Sigmoid),
  ``reshape`` (``nn.Unflatten``/``nn.Flatten``/the final unflatten of the MLP decoder: the
  page keeps every activation as one flat row-major array, so a reshape only changes the
  shape it records), ``conv_transpose2d`` and ``conv2d`` (groups 1, dilation 1, zero
  padding, no output padding);
* ``take`` (:class:`TakeFirst`: the first k features of a flat vector; the hierarchical
  VAE's generative path keeps the mean half of each Gaussian head's output [mu, log_var]);
* then the likelihood's mean E[x|z] on the decoder output: ``sigmoid`` (Bernoulli logits),
  ``identity`` (Gaussian mean), ``split`` (the first half of the channels: the
  heteroscedastic Gaussian's mu).

Anything else is refused by :func:`decoder_program` with a one-line error naming the layer,
and :func:`run_program` (the same program run with torch) is compared against the real
decoder before a page is written, so a program that does not reproduce the decoder is never
shipped.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.networks import ConvDecoder, MLPDecoder

SUPPORTED = (
    "Linear, ReLU, ELU, GELU, Tanh, SiLU, Sigmoid, Identity, Flatten, Unflatten, "
    "ConvTranspose2d, Conv2d (groups=1, dilation=1, zero padding)"
)


class TakeFirst(nn.Module):
    """The first ``k`` features of ``[B, n]`` rows, ``[B, k]``: the mean half of a Gaussian
    head's output ``[mu, log_var]``, when a generative path follows the conditional means."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h[..., : self.k]


class UnsupportedLayerError(ValueError):
    """The decoder contains a layer the in-page decoder cannot run."""


def _activation(module: nn.Module) -> dict[str, Any] | None:
    if isinstance(module, nn.ReLU):
        return {"type": "act", "fn": "relu"}
    if isinstance(module, nn.ELU):
        return {"type": "act", "fn": "elu", "alpha": float(module.alpha)}
    if isinstance(module, nn.GELU):
        return {"type": "act", "fn": "gelu_tanh" if module.approximate == "tanh" else "gelu"}
    if isinstance(module, nn.Tanh):
        return {"type": "act", "fn": "tanh"}
    if isinstance(module, nn.SiLU):
        return {"type": "act", "fn": "silu"}
    if isinstance(module, nn.Sigmoid):
        return {"type": "act", "fn": "sigmoid"}
    return None


def _leaves(module: nn.Module, name: str) -> list[tuple[str, nn.Module]]:
    """The modules run in order by ``module``'s forward, for the containers whose forward is
    known (vaekit's decoders and ``nn.Sequential``); any other module is one leaf."""
    if isinstance(module, MLPDecoder | ConvDecoder):
        return [*_leaves(module.body, f"{name}.body"), (f"{name}:reshape", module)]
    if type(module) is nn.Sequential:
        out: list[tuple[str, nn.Module]] = []
        for child_name, child in module.named_children():
            out += _leaves(child, f"{name}.{child_name}")
        return out
    return [(name, module)]


def _conv_check(name: str, module: nn.Module) -> None:
    if (
        module.groups != 1
        or tuple(module.dilation) != (1, 1)
        or module.padding_mode != "zeros"
        or isinstance(module.padding, str)
        or (isinstance(module, nn.ConvTranspose2d) and tuple(module.output_padding) != (0, 0))
    ):
        raise UnsupportedLayerError(
            f"the in-page decoder cannot run {name} ({module}): it supports {SUPPORTED}"
        )


def decoder_program(
    decoder: nn.Module, latent_dim: int, output_shape: tuple[int, ...]
) -> tuple[list[dict[str, Any]], list[torch.Tensor]]:
    """The decoder as ``(layers, tensors)``: JSON-ready layer dicts whose ``w``/``b`` fields
    index ``tensors`` (float32, contiguous). Input ``[latent_dim]``; the program's output
    shape is ``output_shape`` (the likelihood's param_shape).

    Raises :class:`UnsupportedLayerError` naming the first layer it cannot express.
    """
    layers: list[dict[str, Any]] = []
    tensors: list[torch.Tensor] = []
    shape: tuple[int, ...] = (latent_dim,)

    def add(t: torch.Tensor) -> int:
        tensors.append(t.detach().to(torch.float32).cpu().contiguous())
        return len(tensors) - 1

    for name, module in _leaves(decoder, "decoder"):
        if name.endswith(":reshape"):
            shape = tuple(output_shape)
            layers.append({"type": "reshape", "shape": list(shape)})
            continue
        act = _activation(module)
        if act is not None:
            layers.append(act)
        elif isinstance(module, nn.Identity):
            continue
        elif isinstance(module, TakeFirst):
            if len(shape) != 1 or not 0 < module.k <= shape[0]:
                raise UnsupportedLayerError(
                    f"the in-page decoder cannot take {module.k} features of shape {list(shape)}"
                )
            layers.append({"type": "take", "n": module.k})
            shape = (module.k,)
        elif isinstance(module, nn.Linear):
            if len(shape) != 1:
                raise UnsupportedLayerError(
                    f"the in-page decoder runs {name} (Linear) only on a flat vector, got shape "
                    f"{list(shape)}"
                )
            layers.append(
                {
                    "type": "linear",
                    "in": module.in_features,
                    "out": module.out_features,
                    "w": add(module.weight),
                    "b": add(module.bias) if module.bias is not None else None,
                }
            )
            shape = (module.out_features,)
        elif isinstance(module, nn.Unflatten):
            # In a decoder that takes [B, m] rows, dim 1 is the feature dim.
            if module.dim not in (1, -1):
                raise UnsupportedLayerError(
                    f"the in-page decoder cannot run {name} (Unflatten of dim {module.dim})"
                )
            shape = tuple(module.unflattened_size)
            layers.append({"type": "reshape", "shape": list(shape)})
        elif isinstance(module, nn.Flatten):
            shape = (math.prod(shape),)
            layers.append({"type": "reshape", "shape": list(shape)})
        elif isinstance(module, nn.ConvTranspose2d | nn.Conv2d):
            _conv_check(name, module)
            if len(shape) != 3 or shape[0] != module.in_channels:
                raise UnsupportedLayerError(
                    f"the in-page decoder needs [C={module.in_channels}, H, W] before {name}, "
                    f"got shape {list(shape)}"
                )
            c, h, w = shape
            (kh, kw), (sh, sw), (ph, pw) = module.kernel_size, module.stride, module.padding
            if isinstance(module, nn.ConvTranspose2d):
                oh, ow = (h - 1) * sh - 2 * ph + kh, (w - 1) * sw - 2 * pw + kw
                kind = "conv_transpose2d"
            else:
                oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
                kind = "conv2d"
            layers.append(
                {
                    "type": kind,
                    "cin": c,
                    "cout": module.out_channels,
                    "h": h,
                    "w": w,
                    "oh": oh,
                    "ow": ow,
                    "k": [kh, kw],
                    "stride": [sh, sw],
                    "pad": [ph, pw],
                    "weight": add(module.weight),
                    "bias": add(module.bias) if module.bias is not None else None,
                }
            )
            shape = (module.out_channels, oh, ow)
        else:
            raise UnsupportedLayerError(
                f"the in-page decoder cannot run {name} ({type(module).__name__}); it supports "
                f"{SUPPORTED}"
            )
    if math.prod(shape) != math.prod(output_shape):
        raise UnsupportedLayerError(
            f"the decoder program ends in shape {list(shape)}, the likelihood reads "
            f"{list(output_shape)}"
        )
    return layers, tensors


def likelihood_mean(likelihood: nn.Module) -> str:
    """How the page turns the decoder output into E[x|z]: 'sigmoid', 'identity' or 'split'."""
    from vaekit.distributions.likelihoods import (
        BernoulliLikelihood,
        GaussianLikelihood,
        HeteroscedasticGaussianLikelihood,
    )

    if isinstance(likelihood, BernoulliLikelihood):
        return "sigmoid"
    if isinstance(likelihood, HeteroscedasticGaussianLikelihood):
        return "split"
    if isinstance(likelihood, GaussianLikelihood):
        return "identity"
    raise UnsupportedLayerError(
        f"the in-page decoder does not know the mean of the likelihood {type(likelihood).__name__}"
    )


def run_program(
    layers: list[dict[str, Any]], tensors: list[torch.Tensor], mean: str, z: torch.Tensor
) -> torch.Tensor:
    """Run the program with torch on ``z [B, m]``: E[x|z] as ``[B, D]`` (flat, float32).

    The reference for the page's interpreter, and the self-check of :func:`decoder_program`.
    """
    h = z.to(torch.float32)
    shape: tuple[int, ...] = (z.shape[1],)
    for layer in layers:
        kind = layer["type"]
        if kind == "linear":
            bias = tensors[layer["b"]] if layer["b"] is not None else None
            h = F.linear(h, tensors[layer["w"]], bias)
            shape = (layer["out"],)
        elif kind == "act":
            fn = layer["fn"]
            if fn == "elu":
                h = F.elu(h, layer["alpha"])
            elif fn in ("gelu", "gelu_tanh"):
                h = F.gelu(h, approximate="tanh" if fn == "gelu_tanh" else "none")
            else:
                h = {"relu": F.relu, "tanh": torch.tanh, "silu": F.silu, "sigmoid": torch.sigmoid}[
                    fn
                ](h)
        elif kind == "reshape":
            shape = tuple(layer["shape"])
        elif kind == "take":
            h = h[:, : layer["n"]]
            shape = (layer["n"],)
        elif kind in ("conv_transpose2d", "conv2d"):
            x = h.reshape(h.shape[0], *shape)
            conv = F.conv_transpose2d if kind == "conv_transpose2d" else F.conv2d
            bias = tensors[layer["bias"]] if layer["bias"] is not None else None
            x = conv(x, tensors[layer["weight"]], bias, layer["stride"], layer["pad"])
            shape = tuple(x.shape[1:])
            h = x.flatten(1)
    if mean == "sigmoid":
        return torch.sigmoid(h)
    if mean == "split":
        return h.reshape(h.shape[0], *shape).chunk(2, dim=1)[0].flatten(1)
    return h
