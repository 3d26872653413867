"""The decoder as a flat list of layers the explorer page can run in JavaScript.

The page does not bundle a general neural-network runtime: it carries a small interpreter
(``template.html``) for exactly the layer types vaekit's decoders are made of, and this
module turns a decoder ``nn.Module`` into that interpreter's program:

* ``linear`` (``nn.Linear``), ``act`` (ReLU, ELU, GELU, Tanh, SiLU, Sigmoid),
  ``reshape`` (``nn.Unflatten``/``nn.Flatten``/the final unflatten of the MLP decoder: the
  page keeps every activation as one flat row-major array, so a reshape only changes the
  shape it records), ``conv_transpose2d`` and ``conv2d`` (groups 1, dilation 1, zero
  padding, no output padding);
* the steps of a generative path (``vaekit.models.paths``, what ``Model.group_decoder``
  builds): ``take`` (the first k features: the mean half of a Gaussian head's output
  [mu, log_var]), ``residual`` (h + body(h), its body a program of its own) and ``gate``
  (the first half times the sigmoid of the second half plus an offset);
* then the likelihood's mean E[x|z] on the decoder output, as the likelihood names it
  (``page_mean()``): ``sigmoid`` (Bernoulli logits), ``identity`` (Gaussian mean), ``split``
  (the first half of the channels: the heteroscedastic Gaussian's mu), ``split-clamp`` (the
  same clamped to [0, 1]: the discretised logistic's location), ``table`` (the outputs as
  they are: the page turns them into a mixed table's row with the likelihood's
  ``page_heads()``).

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

from vaekit.models.paths import Gate, Inject, Residual, TakeFirst, TopDown
from vaekit.networks import ConvDecoder, MLPDecoder

SUPPORTED = (
    "Linear, ReLU, ELU, GELU, Tanh, SiLU, Sigmoid, Identity, Flatten, Unflatten, "
    "ConvTranspose2d, Conv2d (groups=1, dilation=1, zero padding), Upsample (nearest), "
    "TakeFirst, Residual, Gate, TopDown"
)
# The in-page decoder must reproduce torch within this (float32 noise, far below 1/255).
SELF_CHECK_TOLERANCE = 1e-4
# The fields of each layer type that index the tensor list.
TENSOR_KEYS = {
    "linear": ("w", "b"),
    "conv2d": ("weight", "bias"),
    "conv_transpose2d": ("weight", "bias"),
}


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
        # Every child in order, a repeated one as often as it runs (a cell applies one
        # activation twice; named_children would list it once).
        for child_name, child in module._modules.items():
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
    tensors: list[torch.Tensor] = []

    def add(t: torch.Tensor) -> int:
        tensors.append(t.detach().to(torch.float32).cpu().contiguous())
        return len(tensors) - 1

    layers, shape = _program(decoder, "decoder", (latent_dim,), tuple(output_shape), add)
    if math.prod(shape) != math.prod(output_shape):
        raise UnsupportedLayerError(
            f"the decoder program ends in shape {list(shape)}, the likelihood reads "
            f"{list(output_shape)}"
        )
    return layers, tensors


def _program(
    container: nn.Module,
    prefix: str,
    shape: tuple[int, ...],
    output_shape: tuple[int, ...],
    add,
) -> tuple[list[dict[str, Any]], tuple[int, ...]]:
    """The layers of ``container`` run on input ``shape``, and the shape they end in."""
    layers: list[dict[str, Any]] = []
    for name, module in _leaves(container, prefix):
        if name.endswith(":reshape"):
            shape = tuple(output_shape)
            layers.append({"type": "reshape", "shape": list(shape)})
            continue
        act = _activation(module)
        if act is not None:
            layers.append(act)
        elif isinstance(module, nn.Identity | nn.Dropout):  # dropout: training only
            continue
        elif isinstance(module, Residual):
            body, end = _program(module.body, f"{name}.body", shape, output_shape, add)
            if end != shape:
                raise UnsupportedLayerError(
                    f"the in-page decoder cannot add {name}'s body of shape {list(end)} to "
                    f"its input of shape {list(shape)}"
                )
            layers.append({"type": "residual", "body": body})
        elif isinstance(module, Gate):
            # The page splits each row's flat values in halves: the feature halves of a
            # vector, the channel halves of channel-first maps.
            if module.dim not in (-len(shape), 1) or shape[0] % 2:
                raise UnsupportedLayerError(
                    f"the in-page decoder gates an even number of features or channels, got "
                    f"{list(shape)} gated over dim {module.dim}"
                )
            layers.append({"type": "gate", "offset": module.offset})
            shape = (shape[0] // 2, *shape[1:])
        elif isinstance(module, TopDown):
            if prefix != "decoder" or layers:
                raise UnsupportedLayerError(f"{name}: a top-down path must come first")
            code = shape
            shape = tuple(module.start.shape)
            layers.append({"type": "start", "value": add(module.start), "shape": list(shape)})
            for i, step in enumerate(module.steps):
                if isinstance(step, Inject):
                    if len(code) != 1 or step.offset + step.size > code[0]:
                        raise UnsupportedLayerError(
                            f"{name}: group {i} reads past the code of shape {list(code)}"
                        )
                    body, end = _program(step.body, f"{name}.{i}", (step.size,), output_shape, add)
                    if end != shape:
                        raise UnsupportedLayerError(
                            f"{name}: group {i} adds shape {list(end)} to a stream of {list(shape)}"
                        )
                    layers.append(
                        {"type": "inject", "offset": step.offset, "n": step.size, "body": body}
                    )
                else:
                    more, shape = _program(
                        nn.Sequential(step), f"{name}.{i}", shape, output_shape, add
                    )
                    layers += more
        elif isinstance(module, nn.Upsample):
            factor = module.scale_factor
            if (
                module.mode != "nearest"
                or len(shape) != 3
                or not isinstance(factor, (int, float))
                or float(factor) != int(factor)
            ):
                raise UnsupportedLayerError(
                    f"the in-page decoder cannot run {name} ({module}): it supports {SUPPORTED}"
                )
            k = int(factor)
            layers.append({"type": "upsample", "factor": k, "h": shape[1], "w": shape[2]})
            shape = (shape[0], shape[1] * k, shape[2] * k)
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
    return layers, shape


def index_tensors(layers: list[dict[str, Any]], index: list[int]) -> None:
    """Point every tensor field of ``layers`` (residual bodies too) at ``index[field]``."""
    for layer in layers:
        # A conv layer's "w" is its input width, not a tensor: only these keys index.
        for key in TENSOR_KEYS.get(layer["type"], ()):
            if layer.get(key) is not None:
                layer[key] = index[layer[key]]
        if layer["type"] == "start":
            layer["value"] = index[layer["value"]]
        if layer["type"] in ("residual", "inject"):
            index_tensors(layer["body"], index)


class Programs:
    """The layer programs of a page, their tensors in one shared list (one weights blob),
    and the likelihood mean they end in (``page_mean()``)."""

    def __init__(self, likelihood: nn.Module) -> None:
        mean = likelihood.page_mean()
        if mean is None:
            raise UnsupportedLayerError(
                "the in-page decoder does not know the mean of the likelihood "
                f"{type(likelihood).__name__}"
            )
        self.mean_kind = mean
        self.likelihood = likelihood
        self.tensors: list[torch.Tensor] = []  # kept alive, so data pointers stay unique
        self._seen: dict[tuple, int] = {}

    def add(
        self,
        module: nn.Module,
        input_dim: int,
        output_shape: tuple[int, ...],
        reference,
        probe: torch.Tensor | None = None,
    ) -> list:
        """The program of ``module`` (input ``[input_dim]``), checked against ``reference``:
        a function ``[B, input_dim] -> E[x|.] [B, ...]`` (the model's own decoder), at
        ``probe [B, input_dim]`` (default: standard normal draws)."""
        layers, tensors = decoder_program(module, input_dim, tuple(output_shape))
        # Self-check: the program must reproduce the model (catches a container whose
        # forward is not the plain sequence of its children).
        if probe is None:
            probe = torch.randn(4, input_dim, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            want = reference(probe).flatten(1)
        got = run_program(layers, tensors, self.mean_kind, probe)
        if self.mean_kind == "table":  # the page reads the outputs as they are (page_heads)
            with torch.no_grad():
                got = self.likelihood.mean(got.to(want.dtype)).flatten(1)
        if not torch.allclose(got, want, atol=SELF_CHECK_TOLERANCE, rtol=SELF_CHECK_TOLERANCE):
            raise ValueError(
                "explore: the in-page decoder program does not reproduce this decoder (max "
                f"error {float((got - want).abs().max()):.3g}); its forward is not a plain "
                "layer sequence"
            )
        # A tensor two programs share (the x decoder in every layer's path of a hierarchical
        # model) is stored once.
        index_tensors(layers, [self._index(t) for t in tensors])
        return layers

    def _index(self, t: torch.Tensor) -> int:
        key = (t.data_ptr(), tuple(t.shape), tuple(t.stride()))
        if key not in self._seen:
            self._seen[key] = len(self.tensors)
            self.tensors.append(t)
        return self._seen[key]

    def add_tensor(self, t: torch.Tensor) -> int:
        return self._index(t.detach().to(torch.float32).cpu().contiguous())


def run_program(
    layers: list[dict[str, Any]], tensors: list[torch.Tensor], mean: str, z: torch.Tensor
) -> torch.Tensor:
    """Run the program with torch on ``z [B, m]``: E[x|z] as ``[B, D]`` (flat, float32).

    The reference for the page's interpreter, and the self-check of :func:`decoder_program`.
    """
    z = z.to(torch.float32)
    h, shape = _run(layers, tensors, z, (z.shape[1],), z)
    if mean == "sigmoid":
        return torch.sigmoid(h)
    if mean in ("split", "split-clamp"):
        mu = h.reshape(h.shape[0], *shape).chunk(2, dim=1)[0].flatten(1)
        return mu.clamp(0.0, 1.0) if mean == "split-clamp" else mu
    return h


def _run(layers, tensors, h: torch.Tensor, shape: tuple[int, ...], z: torch.Tensor):
    """The layers applied to flat rows ``h [B, prod(shape)]``, the program's input being ``z``
    (what ``inject`` reads): the output and its shape."""
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
        elif kind == "residual":
            h = h + _run(layer["body"], tensors, h, shape, z)[0]
        elif kind == "gate":
            value, gate = h.chunk(2, dim=1)
            h = value * torch.sigmoid(gate + layer["offset"])
            shape = (shape[0] // 2, *shape[1:])
        elif kind == "start":
            shape = tuple(layer["shape"])
            h = tensors[layer["value"]].reshape(1, -1).expand(z.shape[0], -1)
        elif kind == "inject":
            part = z[:, layer["offset"] : layer["offset"] + layer["n"]]
            h = h + _run(layer["body"], tensors, part, (layer["n"],), part)[0]
        elif kind == "upsample":
            k = layer["factor"]
            x = h.reshape(h.shape[0], *shape).repeat_interleave(k, 2).repeat_interleave(k, 3)
            shape = tuple(x.shape[1:])
            h = x.flatten(1)
        elif kind in ("conv_transpose2d", "conv2d"):
            x = h.reshape(h.shape[0], *shape)
            conv = F.conv_transpose2d if kind == "conv_transpose2d" else F.conv2d
            bias = tensors[layer["bias"]] if layer["bias"] is not None else None
            x = conv(x, tensors[layer["weight"]], bias, layer["stride"], layer["pad"])
            shape = tuple(x.shape[1:])
            h = x.flatten(1)
    return h, shape
