"""``vaekit export RUN --format onnx``: the encoder and the decoder as ONNX graphs.

Two graphs, each with a dynamic batch dimension named ``batch``:

* ``encoder.onnx``: ``x [batch, *data_shape]`` (model input, i.e. after the run's saved
  preprocessing) -> what the model's ``encode`` returns. A deterministic code (the AE) is one
  output ``z [batch, m]``; a posterior q(z|x) gives ``mean [batch, m]`` plus the parameters its
  family keeps (``log_var [batch, m]`` for the diagonal Gaussian, ``scale_tril [batch, m, m]``
  for the full-covariance one).
* ``decoder.onnx``: ``z [batch, m]`` -> ``mean [batch, *data_shape]`` = E[x|z], the mean of the
  model's ``decode(z)`` (sigmoid of the logits for Bernoulli, mu for the Gaussians), and
  ``params [batch, *param_shape]``, the decoder network's raw output that the likelihood
  reads (logits, mu, or mu and the scale's pre-activation).

The exporter asks the model (``encode``, ``decode``, ``decoder``) for these and never checks
its class, so every registered model exports the same way. After writing, each graph is run
with onnxruntime on a batch size other than the one it was traced with and compared with
PyTorch; ``export.json`` records that error beside the names and shapes of every input and
output. The files are written to a temporary directory first and moved into place, so a
failed export leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

EXPORT_FORMATS = ("onnx",)
OPSET_VERSION = 18
# The largest relative error (max |onnx - torch| / max |torch| per output) an export may show
# against PyTorch before it is refused: float32 graphs agree to ~1e-7 in practice.
RELATIVE_TOLERANCE = 1e-5
# Posterior parameters written beside the mean when q(z|x) exposes them (attribute names).
POSTERIOR_PARAMETERS = ("log_var", "scale_tril")
MANIFEST = "export.json"


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


def encoder_outputs(code: Any) -> dict[str, torch.Tensor]:
    """Named tensors of what ``model.encode(x)`` returned: ``{"z": code}`` for a
    deterministic code, else the posterior's ``mean`` and the parameters it keeps."""
    if torch.is_tensor(code):
        return {"z": code}
    outputs = {"mean": code.mean}
    for name in POSTERIOR_PARAMETERS:
        value = getattr(code, name, None)
        if torch.is_tensor(value):
            outputs[name] = value
    if len(outputs) == 1:  # a family with neither: its per-coordinate standard deviation
        outputs["stddev"] = code.stddev
    return outputs


def decoder_outputs(model: nn.Module, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"mean": E[x|z], "params": decoder network output}`` (``params`` only where the
    model has a ``decoder`` network)."""
    outputs = {"mean": model.decode(z).mean}
    decoder = getattr(model, "decoder", None)
    if isinstance(decoder, nn.Module):
        outputs["params"] = decoder(z)
    return outputs


class _Graph(nn.Module):
    """``forward(input) -> tuple`` of the named outputs, in ``names`` order (what the
    exporter traces)."""

    def __init__(self, model: nn.Module, outputs, names: list[str]) -> None:
        super().__init__()
        self.model, self.outputs, self.names = model, outputs, names

    def forward(self, value: torch.Tensor) -> tuple[torch.Tensor, ...]:
        named = self.outputs(self.model, value)
        return tuple(named[name] for name in self.names)


@dataclass
class GraphSpec:
    """One graph to export: file name, input name, example input, outputs function."""

    file: str
    input_name: str
    example: torch.Tensor
    outputs: Any  # (model, tensor) -> dict[str, Tensor]


def graph_specs(model: nn.Module, batch: int = 3, seed: int = 0) -> list[GraphSpec]:
    """The encoder and decoder graphs of ``model`` with example inputs of ``batch`` rows."""
    p = next(model.parameters())
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, *model.data_shape, generator=g).to(p.dtype)
    z = torch.randn(batch, model.latent_dim, generator=g).to(p.dtype)
    return [
        GraphSpec("encoder.onnx", "x", x, lambda m, v: encoder_outputs(m.encode(v))),
        GraphSpec("decoder.onnx", "z", z, decoder_outputs),
    ]


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress lines and its warnings about torchvision ops."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), _warnings_off():
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _warnings_off():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def export_graph(model: nn.Module, spec: GraphSpec, path: Path) -> list[str]:
    """Export one graph with a dynamic batch dimension to ``path``; returns its output names."""
    from torch.export import Dim

    with torch.no_grad():
        names = list(spec.outputs(model, spec.example))
    graph = _Graph(model, spec.outputs, names).eval()
    batch = Dim("batch")
    with _quiet():
        program = torch.onnx.export(
            graph,
            (spec.example,),
            input_names=[spec.input_name],
            output_names=names,
            dynamic_shapes=({0: batch},),
            opset_version=OPSET_VERSION,
            dynamo=True,
            external_data=False,
        )
        program.save(str(path), external_data=False)
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
    """Run the ONNX graph at ``path`` with onnxruntime on a fresh batch of ``batch`` rows (a
    size other than the traced one, so the dynamic batch is exercised) and return each
    output's relative error against PyTorch."""
    import onnxruntime

    g = torch.Generator().manual_seed(seed)
    if spec.input_name == "x":
        value = torch.rand(batch, *spec.example.shape[1:], generator=g)
    else:
        value = torch.randn(batch, *spec.example.shape[1:], generator=g)
    value = value.to(spec.example.dtype)
    with torch.no_grad():
        expected = spec.outputs(model, value)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = session.run(names, {spec.input_name: value.numpy()})
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

    Returns the manifest written to ``out/export.json``: files, inputs and outputs, and the
    relative error of each output against PyTorch (checked to ``RELATIVE_TOLERANCE``).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"--format {fmt}: choose one of {', '.join(EXPORT_FORMATS)}")
    require_onnx()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {out}: directory exists and is not empty (use --overwrite)")
    model = model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        graphs: dict[str, Any] = {}
        for spec in graph_specs(model):
            path = staging / spec.file
            export_graph(model, spec, path)
            errors = check_graph(model, spec, path)
            worst = max(errors.values())
            if not math.isfinite(worst) or worst > RELATIVE_TOLERANCE:
                raise ValueError(
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
            "latent_dim": model.latent_dim,
            "data_shape": list(model.data_shape),
            "graphs": graphs,
            "relative_error_definition": "max |onnxruntime - torch| / max |torch| per output, "
            "on a fresh batch of 5 rows",
            **(metadata or {}),
        }
        from vaekit.checkpoint import atomic_write_json

        atomic_write_json(staging / MANIFEST, manifest)
        os.chmod(staging, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def export_run(
    run: str | Path, out: str | Path | None = None, fmt: str = "onnx", overwrite: bool = False
) -> dict[str, Any]:
    """Export the model saved in ``run`` to ``out`` (default ``RUN/onnx``); see
    :func:`export_model`. The manifest also carries the run's data preprocessing, so a user
    can prepare inputs as the model saw them."""
    from vaekit.checkpoint import load, read_descriptor

    require_onnx()  # before loading anything: the cheapest error first
    run = Path(run)
    model = load(run)
    descriptor = read_descriptor(run)
    out = Path(out) if out is not None else run / "onnx"
    metadata = {
        "source": str(run),
        "model": descriptor.get("model"),
        "data": descriptor.get("data"),
        "weights_sha256": (descriptor.get("weights") or {}).get("sha256"),
    }
    manifest = export_model(model, out, fmt, overwrite=overwrite, metadata=metadata)
    manifest["out"] = str(out)
    return manifest
