"""One graph to an ONNX file and back: ``torch.export`` with a dynamic batch, the file's batch
dimension named ``batch``, and the file run by onnxruntime against PyTorch."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaekit.export.graphs import Graph, GraphSpec, evaluate

OPSET_VERSION = 18
BATCH = "batch"  # the name of the dynamic batch dimension in every graph


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
    names = list(evaluate(model, spec, inputs))
    graph = Graph(model, spec.outputs, names).eval()
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
    expected = evaluate(model, spec, inputs)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = session.run(names, {k: v.cpu().numpy() for k, v in inputs.items()})
    return {name: relative_error(out, expected[name]) for name, out in zip(names, got, strict=True)}


def describe(path: Path) -> dict[str, Any]:
    """Names, element types and shapes (``batch`` for the dynamic one) of a graph's I/O."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def rows(items):
        return [{"name": i.name, "type": i.type, "shape": list(i.shape)} for i in items]

    return {"inputs": rows(session.get_inputs()), "outputs": rows(session.get_outputs())}
