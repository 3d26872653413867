"""``vaekit export RUN --format onnx``: the encoder and the decoder as ONNX graphs.

Two graphs with a dynamic batch dimension, their inputs and outputs taken from the model
contract (:mod:`vaekit.export.graphs`), never from a model's class. A graph that no fixed
graph reproduces (the IAF posterior's Monte-Carlo mean) is refused with a one-line reason in
``export.json``; every graph kept is checked with onnxruntime against PyTorch
(:mod:`vaekit.export.onnx_io`), and nothing is left half-written. The inputs and outputs of
each model's graphs: docs/guide/explorer.md, "Export to ONNX".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import nn

from vaekit import rundir
from vaekit.export.graphs import GRAPHS, refusal
from vaekit.export.onnx_io import OPSET_VERSION, check_graph, describe, export_graph
from vaekit.outputs import check_outputs, staged_dir

EXPORT_FORMATS = ("onnx",)
# The largest relative error (max |onnx - torch| / max |torch| per output) an export may show
# against PyTorch before it is refused: float32 graphs agree to ~1e-7 in practice.
RELATIVE_TOLERANCE = 1e-5
MANIFEST = "export.json"


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
                **describe(path),
                "relative_error_vs_torch": errors,
            }
        manifest = {
            "format": "onnx",
            "opset": OPSET_VERSION,
            "model_kind": model.name,
            "latent_dim": model.latent_dim,
            # z's groups, bottom first: one entry unless the model is hierarchical
            "latent_layers": list(model.latent_layers),
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
