"""`vaekit export --format onnx`: every shipped network, likelihood and registered model runs
in onnxruntime as it does in PyTorch, with any batch size."""

from __future__ import annotations

import builtins
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import LIKELIHOOD_NAMES, tiny
from vaekit.cli import main
from vaekit.config import ModelConfig
from vaekit.export import encoder_outputs, export_model
from vaekit.models import MODELS, build_model

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
torch.set_num_threads(1)

# Every network body vaekit ships, on the data shapes it is built for.
NETWORKS = {
    "mlp": ("mlp", [20]),
    "conv-28x28": ("conv", [1, 28, 28]),
    "conv-32x32": ("conv", [3, 32, 32]),
}
LIKELIHOOD_FOR_SHAPE = {1: "gaussian-learned", 3: "bernoulli"}


def _model(kind: str, network: str, shape: list[int], likelihood: str, posterior="diagonal"):
    config = ModelConfig(
        network=network,
        data_shape=shape,
        likelihood=likelihood,
        posterior=posterior,
        latent_dim=3,
        hidden_dims=[16],
    )
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(config, kind=kind)).eval()
    with torch.no_grad():  # non-trivial learned scales, so a wrong constant would show
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _relative(actual: np.ndarray, expected: torch.Tensor) -> float:
    expected = expected.double().numpy()
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def assert_matches_torch(model, out: Path) -> None:
    """Both graphs, run by onnxruntime at batch sizes 1 and 6, equal PyTorch to 1e-5 relative."""
    encoder = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(7)
    for batch in (1, 6):
        x = torch.rand(batch, *model.data_shape, generator=g)
        z = torch.randn(batch, model.latent_dim, generator=g)
        with torch.no_grad():
            code = encoder_outputs(model.encode(x))
            mean = model.decode(z).mean
            params = model.decoder(z)
        names = [o.name for o in encoder.get_outputs()]
        assert set(names) == set(code)
        for name, got in zip(names, encoder.run(names, {"x": x.numpy()}), strict=True):
            assert got.shape == tuple(code[name].shape)
            assert _relative(got, code[name]) <= 1e-5, name
        got_mean, got_params = decoder.run(["mean", "params"], {"z": z.numpy()})
        assert got_mean.shape == (batch, *model.data_shape)
        assert _relative(got_mean, mean) <= 1e-5
        assert _relative(got_params, params) <= 1e-5


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_every_network_of_every_registered_model_exports(kind, network, tmp_path):
    body, shape = NETWORKS[network]
    model = _model(kind, body, shape, LIKELIHOOD_FOR_SHAPE.get(shape[0], "gaussian"))
    manifest = export_model(model, tmp_path / "onnx")
    assert_matches_torch(model, tmp_path / "onnx")
    decoder_inputs = manifest["graphs"]["decoder"]["inputs"]
    assert decoder_inputs == [{"name": "z", "type": "tensor(float)", "shape": ["batch", 3]}]


@pytest.mark.parametrize("likelihood", LIKELIHOOD_NAMES)
def test_every_likelihood_mean_exports(likelihood, tmp_path):
    model = _model("vae", "mlp", [2, 5], likelihood)
    export_model(model, tmp_path / "onnx")
    assert_matches_torch(model, tmp_path / "onnx")


def test_full_covariance_posterior_exports_its_cholesky_factor(tmp_path):
    model = _model("vae", "conv", [1, 28, 28], "bernoulli", posterior="full")
    manifest = export_model(model, tmp_path / "onnx")
    outputs = {o["name"]: o["shape"] for o in manifest["graphs"]["encoder"]["outputs"]}
    assert outputs == {"mean": ["batch", 3], "scale_tril": ["batch", 3, 3]}
    assert_matches_torch(model, tmp_path / "onnx")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from vaekit.train import train

    out = tmp_path_factory.mktemp("export") / "run"
    train(tiny("train.max_steps=2", "train.epochs=1"), out=out, log=lambda _: None)
    return out


def test_cli_export_writes_checked_graphs_and_refuses_to_overwrite(run_dir, capsys):
    assert main(["export", str(run_dir), "--format", "onnx"]) == 0
    printed = capsys.readouterr().out
    assert "decoder.onnx" in printed and "relative error" in printed
    manifest = json.loads((run_dir / "onnx" / "export.json").read_text())
    assert manifest["data"]["name"] == "digits" and manifest["latent_dim"] == 2
    assert max(manifest["graphs"]["decoder"]["relative_error_vs_torch"].values()) <= 1e-5
    assert_matches_torch(__import__("vaekit").load(run_dir), run_dir / "onnx")
    assert main(["export", str(run_dir)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--overwrite"]) == 0


def test_missing_extra_is_one_line_naming_it(run_dir, tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name.split(".")[0] == "onnxruntime":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    out = tmp_path / "onnx"
    assert main(["export", str(run_dir), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "vaekit: error: ONNX export needs onnxruntime: pip install 'vaekit[onnx]'"
    assert not out.exists()


def test_readme_snippet_runs_the_exported_decoder(run_dir, tmp_path, monkeypatch):
    """The README's five lines, run as written (from a directory holding runs/demo/onnx)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"<!-- onnx-snippet -->\s*```python\n(.*?)```", readme, re.S)
    assert block is not None, "README lost its onnxruntime snippet"
    code = block.group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 5
    (tmp_path / "runs").mkdir()
    export_model(__import__("vaekit").load(run_dir), tmp_path / "runs" / "demo" / "onnx")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    images = scope["images"]
    assert images.shape == (16, 1, 8, 8) and np.isfinite(images).all()
