"""``vaekit export``: a trained model's encoder and decoder as ONNX graphs, checked against
PyTorch. :mod:`~vaekit.export.writer` writes the folder and its manifest,
:mod:`~vaekit.export.graphs` says what each graph computes, :mod:`~vaekit.export.onnx_io`
turns one graph into a file and runs it back."""

from vaekit.export.graphs import GRAPHS, GraphSpec, decoder_outputs, encoder_outputs, refusal
from vaekit.export.onnx_io import OPSET_VERSION, check_graph, export_graph, relative_error
from vaekit.export.writer import (
    EXPORT_FORMATS,
    MANIFEST,
    RELATIVE_TOLERANCE,
    ExportError,
    export_model,
    export_run,
    require_onnx,
)

__all__ = [
    "EXPORT_FORMATS",
    "GRAPHS",
    "MANIFEST",
    "OPSET_VERSION",
    "RELATIVE_TOLERANCE",
    "ExportError",
    "GraphSpec",
    "check_graph",
    "decoder_outputs",
    "encoder_outputs",
    "export_graph",
    "export_model",
    "export_run",
    "refusal",
    "relative_error",
    "require_onnx",
]
