"""``vaekit export RUN --format onnx``: the encoder and the decoder as ONNX graphs.

Two graphs with a dynamic batch dimension, their inputs and outputs taken from the model
contract (``encode``, ``decode_mean``) and its capability flags, never from a model's class.
A graph that no fixed graph reproduces (the IAF posterior's Monte-Carlo mean) is refused with
a one-line reason in ``export.json``; every graph kept is checked with onnxruntime against
PyTorch, and nothing is left half-written. The inputs and outputs of each model's graphs:
docs/guide/explorer.md, "Export to ONNX".
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaekit import rundir
from vaekit.outputs import check_outputs, staged_dir

EXPORT_FORMATS = ("onnx",)
OPSET_VERSION = 18
# The largest relative error (max |onnx - torch| / max |torch| per output) an export may show
# against PyTorch before it is refused: float32 graphs agree to ~1e-7 in practice.
RELATIVE_TOLERANCE = 1e-5
# The parameter written beside a posterior's mean: the first of these its family keeps.
POSTERIOR_PARAMETERS = ("log_var", "scale_tril")
MANIFEST = "export.json"
BATCH = "batch"  # the name of the dynamic batch dimension in every graph


class ExportError(ValueError):
    """A graph cannot be exported or does not match PyTorch (one line, naming the file)."""


def require_onnx() -> None:
    """Raise a one-line ``ValueError`` naming the extra to install if the exporter's
    packages (onnx, onnxruntime, and onnxscript for torch's default exporter) are missing."""
    missing = []
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ValueError(f"ONNX export needs {', '.join(missing)}: pip install 'vaekit[onnx]'")


# --- what each graph computes -------------------------------------------------------------


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
    if model.has_codebook:
        outputs = {"codes": code}
        quantise = getattr(model, "quantise", None)
        if callable(quantise):
            outputs["z_q"] = quantise(code)
        return outputs
    return {"z": code}


@contextlib.contextmanager
def _likelihood_inputs(model: nn.Module):
    """Record what the model's likelihood reads while the block runs: yields a list that
    each call of ``model.likelihood.mean(params)`` appends ``params`` to (an empty list for
    a model without a ``likelihood``)."""
    seen: list[torch.Tensor] = []
    likelihood = getattr(model, "likelihood", None)
    if likelihood is None or not callable(getattr(likelihood, "mean", None)):
        yield seen
        return
    original = likelihood.mean

    def recording_mean(params: torch.Tensor) -> torch.Tensor:
        seen.append(params)
        return original(params)

    likelihood.mean = recording_mean  # an instance attribute shadows the method
    try:
        yield seen
    finally:
        del likelihood.mean


def decoder_outputs(
    model: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """``{"mean": E[x|z] = decode_mean(z), "params": the decoder output the likelihood read
    to give it}`` for ``z [B, m]`` (``params`` only where the model has a likelihood module:
    it is the very tensor the mean came from, not a second decoder pass)."""
    with _likelihood_inputs(model) as seen:
        mean = model.decode_mean(z, y=y)
    outputs = {"mean": mean}
    if len(seen) == 1:
        outputs["params"] = seen[0]
    return outputs


class _Graph(nn.Module):
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


def _evaluate(model: nn.Module, spec: GraphSpec, inputs: dict[str, torch.Tensor]):
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
        first = _evaluate(model, spec, inputs)
        torch.manual_seed(1)
        second = _evaluate(model, spec, inputs)
    changed = [name for name in first if not torch.equal(first[name], second[name])]
    if changed:
        return (
            f"{spec.file} not exported: model {model.name!r} gives a different "
            f"{', '.join(changed)} for the same input on each call (a Monte-Carlo estimate, "
            "e.g. the IAF posterior's mean), which a fixed graph cannot reproduce"
        )
    return None


# --- export and check ---------------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress lines, its warnings about torchvision ops and the
    draft exporter's report."""
    import warnings

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch.fx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _capture(graph: nn.Module, args: tuple[torch.Tensor, ...]):
    """``torch.export`` of ``graph`` with a dynamic first dimension on every input.

    A model that validates its labels (``y.min() < 0`` raises) branches on their values,
    which ``torch.export`` cannot trace; for those the draft exporter records the branch the
    valid example labels took (no error), which is what the graph must compute."""
    from torch.export import Dim
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    batch = Dim(BATCH)
    shapes = tuple({0: batch} for _ in args)
    try:
        return torch.export.export(graph, args, dynamic_shapes=shapes, strict=False)
    except GuardOnDataDependentSymNode:
        return torch.export.draft_export(graph, args, dynamic_shapes=shapes, strict=False)


def _name_batch_dimension(path: Path, input_names: list[str]) -> None:
    """Rename the exporter's symbol for the batch size (e.g. ``s17``) to ``batch`` in every
    input, output and intermediate shape of the ONNX file at ``path``."""
    import onnx

    proto = onnx.load(str(path))
    first = next(i for i in proto.graph.input if i.name == input_names[0])
    old = first.type.tensor_type.shape.dim[0].dim_param
    if not old or old == BATCH:
        return
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == old:
                dim.dim_param = BATCH
    onnx.save(proto, str(path))


def export_graph(model: nn.Module, spec: GraphSpec, path: Path) -> list[str]:
    """Export one graph with a dynamic batch dimension to ``path``; returns its output names."""
    inputs = spec.inputs(model, 3, torch.Generator().manual_seed(0))
    names = list(_evaluate(model, spec, inputs))
    graph = _Graph(model, spec.outputs, names).eval()
    args = tuple(inputs.values())
    with _quiet():
        program = torch.onnx.export(
            _capture(graph, args),
            args,
            input_names=list(inputs),
            output_names=names,
            opset_version=OPSET_VERSION,
            dynamo=True,
            external_data=False,
        )
        program.save(str(path), external_data=False)
    _name_batch_dimension(path, list(inputs))
    return names


def relative_error(actual: Any, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected| (0 where both are 0): one number per output."""
    expected = expected.detach().double().cpu()
    difference = (torch.as_tensor(actual).double() - expected).abs().max()
    scale = expected.abs().max()
    return float(difference / scale) if scale > 0 else float(difference)


def check_graph(
    model: nn.Module, spec: GraphSpec, path: Path, batch: int = 5, seed: int = 1
) -> dict[str, float]:
    """Run the ONNX graph at ``path`` with onnxruntime on fresh inputs of ``batch`` rows (a
    size other than the traced one, so the dynamic batch is exercised) and return each
    output's relative error against PyTorch."""
    import onnxruntime

    inputs = spec.inputs(model, batch, torch.Generator().manual_seed(seed))
    expected = _evaluate(model, spec, inputs)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = session.run(names, {k: v.cpu().numpy() for k, v in inputs.items()})
    return {name: relative_error(out, expected[name]) for name, out in zip(names, got, strict=True)}


def _describe(path: Path) -> dict[str, Any]:
    """Names, element types and shapes (``batch`` for the dynamic one) of a graph's I/O."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def rows(items):
        return [{"name": i.name, "type": i.type, "shape": list(i.shape)} for i in items]

    return {"inputs": rows(session.get_inputs()), "outputs": rows(session.get_outputs())}


def export_model(
    model: nn.Module,
    out: str | Path,
    fmt: str = "onnx",
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export ``model``'s encoder and decoder to directory ``out`` (see the module doc).

    Returns the manifest written to ``out/export.json``: files, inputs and outputs, the
    relative error of each output against PyTorch (checked to ``RELATIVE_TOLERANCE``), and
    ``refused``: each graph that was not exported, with the one-line reason. Raises
    :class:`ExportError` (nothing written) if no graph can be exported or one disagrees with
    PyTorch.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"--format {fmt}: choose one of {', '.join(EXPORT_FORMATS)}")
    require_onnx()
    out = Path(out)
    replace = rundir.check_replace(out, overwrite, holding=MANIFEST)  # an earlier export
    model = model.eval()
    refused = {spec.file: reason for spec in GRAPHS if (reason := refusal(model, spec))}
    if len(refused) == len(GRAPHS):
        raise ExportError("; ".join(refused.values()))
    with staged_dir(out, replace) as staging:  # whole or not at all, with vaekit's marker
        graphs: dict[str, Any] = {}
        for spec in GRAPHS:
            if spec.file in refused:
                continue
            path = staging / spec.file
            export_graph(model, spec, path)
            errors = check_graph(model, spec, path)
            worst = max(errors.values())
            if not math.isfinite(worst) or worst > RELATIVE_TOLERANCE:
                raise ExportError(
                    f"{spec.file}: onnxruntime differs from PyTorch by {worst:.2e} relative "
                    f"(more than {RELATIVE_TOLERANCE:.0e}); not exported"
                )
            graphs[spec.file.removesuffix(".onnx")] = {
                "file": spec.file,
                **_describe(path),
                "relative_error_vs_torch": errors,
            }
        manifest = {
            "format": "onnx",
            "opset": OPSET_VERSION,
            "model_kind": model.name,
            "latent_dim": model.latent_dim,
            "data_shape": list(model.data_shape),
            "labels": (
                f"input y [batch], int64 class labels 0..{model.num_classes - 1}"
                if model.takes_labels
                else None
            ),
            "graphs": graphs,
            "refused": refused,
            "relative_error_definition": "max |onnxruntime - torch| / max |torch| per output, "
            "on fresh inputs of 5 rows",
            **(metadata or {}),
        }
        rundir.atomic_write_json(staging / MANIFEST, manifest)
    return manifest


def export_run(
    run: str | Path, out: str | Path | None = None, fmt: str = "onnx", overwrite: bool = False
) -> dict[str, Any]:
    """Export the model saved in ``run`` to ``out`` (default ``RUN/onnx``); see
    :func:`export_model`. The manifest also carries the run's data preprocessing, so a user
    can prepare inputs as the model saw them."""
    from vaekit.checkpoint import load, read_descriptor

    run = Path(run)
    own = run / "onnx"
    out = Path(out) if out is not None else own
    check_outputs({"out": out}, inputs=[run], own=[own])
    require_onnx()  # before loading anything: the cheapest errors first
    model = load(run)
    descriptor = read_descriptor(run)
    metadata = {
        "source": str(run),
        "model": descriptor.get("model"),
        "data": descriptor.get("data"),
        "weights_sha256": (descriptor.get("weights") or {}).get("sha256"),
    }
    manifest = export_model(model, out, fmt, overwrite=overwrite, metadata=metadata)
    manifest["out"] = str(out)
    return manifest
