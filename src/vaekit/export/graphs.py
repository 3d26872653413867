"""What each exported graph computes, from the model contract alone.

The encoder graph gives q(z|x)'s mean and its other parameter (``has_posterior``), the
integer codes and the vector they select (``discrete``), or the code itself (an AE); the
decoder graph gives E[x|z] and the likelihood's parameters (``decode_params``). A graph no
fixed graph reproduces is refused with a one-line reason (:func:`refusal`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

# The parameter written beside a posterior's mean: the first of these its family keeps.
POSTERIOR_PARAMETERS = ("log_var", "scale_tril")


def encoder_outputs(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """The encoder graph's named outputs for ``x [B, *data_shape]`` (labels ``y [B]`` for a
    conditional model), chosen by the model's capability flags (see the module doc)."""
    code = model.encode(x, y=y)
    if model.has_posterior:
        outputs = {"mean": code.mean}
        for name in POSTERIOR_PARAMETERS:
            value = getattr(code, name, None)
            if torch.is_tensor(value):
                outputs[name] = value
                break
        return outputs
    if model.discrete:  # integer codes, and the vector they select
        return {"codes": code, "z_q": model.quantise(code)}
    return {"z": code}


def decoder_outputs(
    model: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """``{"mean": E[x|z], "params": the likelihood's parameters it is computed from}`` for
    ``z [B, m]``: one decoder pass (``decode_params``), then the likelihood's mean."""
    params = model.decode_params(z, y=y)
    return {"mean": model.likelihood.mean(params), "params": params}


class Graph(nn.Module):
    """``forward(*inputs) -> tuple`` of the named outputs, in ``names`` order (what the
    exporter traces)."""

    def __init__(self, model: nn.Module, outputs: Callable, names: list[str]) -> None:
        super().__init__()
        self.model, self.outputs, self.names = model, outputs, names

    def forward(
        self, value: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        named = self.outputs(self.model, value, y)
        return tuple(named[name] for name in self.names)


@dataclass
class GraphSpec:
    """One graph to export: its file, its main input (``x`` or ``z``), and how to compute
    its outputs from ``(model, value, labels or None)``."""

    file: str
    input_name: str
    outputs: Callable[..., dict[str, torch.Tensor]]

    def inputs(
        self, model: nn.Module, batch: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Example inputs of ``batch`` rows: x ~ U[0, 1) or z ~ N(0, I), and labels
        uniformly over the classes for a conditional model."""
        p = next(model.parameters())
        if self.input_name == "x":
            value = torch.rand(batch, *model.data_shape, generator=generator)
        else:
            value = torch.randn(batch, model.latent_dim, generator=generator)
        inputs = {self.input_name: value.to(p.dtype)}
        if model.takes_labels:
            inputs["y"] = torch.randint(0, model.num_classes, (batch,), generator=generator)
        return inputs


GRAPHS = (
    GraphSpec("encoder.onnx", "x", encoder_outputs),
    GraphSpec("decoder.onnx", "z", decoder_outputs),
)


def evaluate(model: nn.Module, spec: GraphSpec, inputs: dict[str, torch.Tensor]):
    """``spec``'s named outputs at ``inputs``, without gradients."""
    with torch.no_grad():
        return spec.outputs(model, *inputs.values(), *([] if model.takes_labels else [None]))


def refusal(model: nn.Module, spec: GraphSpec) -> str | None:
    """Why ``spec``'s graph cannot be exported for ``model`` (one line), or None.

    A graph is a fixed function: if the model gives different outputs for the same input on
    two calls (the IAF posterior's mean and parameters are Monte-Carlo estimates), no graph
    reproduces it."""
    inputs = spec.inputs(model, 3, torch.Generator().manual_seed(0))
    if spec is GRAPHS[0] and model.has_posterior:  # the encoder writes q(z|x)'s moments
        with torch.no_grad():
            q = model.encode(inputs["x"], y=inputs.get("y"))
        if not getattr(q, "exact_moments", True):
            return (
                f"{spec.file} not exported: model {model.name!r}'s posterior has no closed-form "
                "mean (a Monte-Carlo estimate, e.g. the IAF posterior's), which a graph of "
                "fixed operations cannot reproduce"
            )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        first = evaluate(model, spec, inputs)
        torch.manual_seed(1)
        second = evaluate(model, spec, inputs)
    changed = [name for name in first if not torch.equal(first[name], second[name])]
    if changed:
        return (
            f"{spec.file} not exported: model {model.name!r} gives a different "
            f"{', '.join(changed)} for the same input on each call (a Monte-Carlo estimate, "
            "e.g. the IAF posterior's mean), which a fixed graph cannot reproduce"
        )
    return None
