"""`vaekit export --format onnx`: every registered model, every shipped network body and every
likelihood runs in onnxruntime as it does in PyTorch, with any batch size; what no fixed graph
can reproduce is refused in one line."""

from __future__ import annotations

import builtins
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
from helpers import LIKELIHOOD_NAMES, tiny_model_overrides
from vaekit.cli import main
from vaekit.config import Config, apply_overrides
from vaekit.export import decoder_outputs, encoder_outputs, export_model
from vaekit.models import MODELS, build_model

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
torch.set_num_threads(1)

# The conv bodies vaekit ships, on the data shapes they are built for; the MLP runs on digits.
CONV_SHAPES = {"conv-28x28": [1, 28, 28], "conv-32x32": [3, 32, 32]}
LIKELIHOOD_FOR_SHAPE = {1: "gaussian-learned", 3: "bernoulli"}
# Models whose config chooses a network body (the others have MLP bodies of their own).
MODELS_WITH_NETWORK = [
    name
    for name, cls in MODELS.items()
    if "network" in {f.name for f in dataclasses.fields(cls.config_class)}
]


def _model(kind: str, shape=(1, 8, 8), likelihood="gaussian-learned", *settings: str):
    """Model ``kind`` from its own config class with the tiny settings of tests/helpers.py,
    its weights nudged so learned scales are non-trivial (a wrong constant would show)."""
    overrides = [
        *tiny_model_overrides(kind),
        f"model.data_shape=[{', '.join(map(str, shape))}]",
        f'model.likelihood="{likelihood}"',
        *settings,
    ]
    config = apply_overrides(Config(), overrides)
    torch.manual_seed(0)
    model = build_model(config.model).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _relative(actual: np.ndarray, expected: torch.Tensor) -> float:
    expected = expected.double().numpy()
    scale = np.abs(expected).max()
    difference = np.abs(actual.astype(np.float64) - expected).max()
    return float(difference / scale) if scale > 0 else float(difference)


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _labels(model, batch: int, g: torch.Generator) -> torch.Tensor | None:
    return (
        torch.randint(0, model.num_classes, (batch,), generator=g) if model.takes_labels else None
    )


def _feed(name: str, value: torch.Tensor, y: torch.Tensor | None) -> dict[str, np.ndarray]:
    return {name: value.numpy()} | ({} if y is None else {"y": y.numpy()})


def assert_matches_torch(model, out: Path, encoder: bool = True) -> None:
    """Both graphs, run by onnxruntime at batch sizes 1 and 6, equal PyTorch to 1e-5
    relative; and decoder(encoder(x)) in onnxruntime is the model's reconstruct(x)."""
    dec = _session(out / "decoder.onnx")
    enc = _session(out / "encoder.onnx") if encoder else None
    g = torch.Generator().manual_seed(7)
    for batch in (1, 6):
        x = torch.rand(batch, *model.data_shape, generator=g)
        z = torch.randn(batch, model.latent_dim, generator=g)
        y = _labels(model, batch, g)
        with torch.no_grad():
            want_dec = decoder_outputs(model, z, y)
            mean = model.decode_mean(z, y=y)
        assert set(want_dec) == {"mean", "params"}
        assert torch.equal(want_dec["mean"], mean)
        names = [o.name for o in dec.get_outputs()]
        assert names == ["mean", "params"]
        for name, got in zip(names, dec.run(names, _feed("z", z, y)), strict=True):
            assert got.shape == tuple(want_dec[name].shape), name
            assert _relative(got, want_dec[name]) <= 1e-5, name
        if enc is None:
            continue
        with torch.no_grad():
            want_enc = encoder_outputs(model, x, y)
            recon = model.reconstruct(x, y=y)
        names = [o.name for o in enc.get_outputs()]
        assert set(names) == set(want_enc)
        got_enc = dict(zip(names, enc.run(names, _feed("x", x, y)), strict=True))
        for name, got in got_enc.items():
            assert got.shape == tuple(want_enc[name].shape), name
            assert _relative(got, want_enc[name]) <= 1e-5, name
        # The code the decoder takes: the posterior mean, the quantised code, or z itself.
        code = next(got_enc[k] for k in ("mean", "z_q", "z") if k in got_enc)
        (decoded,) = dec.run(["mean"], _feed("z", torch.from_numpy(code), y))
        assert _relative(decoded, recon) <= 1e-5


def _outputs(manifest, graph: str) -> dict[str, list]:
    return {o["name"]: o["shape"] for o in manifest["graphs"][graph]["outputs"]}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_registered_model_exports(kind, tmp_path):
    model = _model(kind)
    manifest = export_model(model, tmp_path / "onnx")
    assert manifest["refused"] == {} and manifest["model_kind"] == kind
    assert_matches_torch(model, tmp_path / "onnx")
    m = model.latent_dim
    # z's groups, bottom first: the hierarchical models' tiny settings (tests/helpers.py)
    groups = {"hvae": [3, 2], "deep-hvae": [3, 2, 2]}
    assert manifest["latent_layers"] == groups.get(kind, [m])
    labels = [{"name": "y", "type": "tensor(int64)", "shape": ["batch"]}]
    z_input = [{"name": "z", "type": "tensor(float)", "shape": ["batch", m]}]
    assert manifest["graphs"]["decoder"]["inputs"] == z_input + (
        labels if model.takes_labels else []
    )
    assert _outputs(manifest, "decoder") == {
        "mean": ["batch", 1, 8, 8],
        "params": ["batch", *model.likelihood.param_shape],
    }
    # The encoder's outputs follow the capability flags.
    if model.has_posterior:
        expected = {"mean": ["batch", m], "log_var": ["batch", m]}
    elif model.discrete:
        expected = {"codes": ["batch", model.config.num_latents], "z_q": ["batch", m]}
    else:
        expected = {"z": ["batch", m]}
    assert _outputs(manifest, "encoder") == expected
    encoder_inputs = [i["name"] for i in manifest["graphs"]["encoder"]["inputs"]]
    assert encoder_inputs == (["x", "y"] if model.takes_labels else ["x"])


@pytest.mark.parametrize("network", sorted(CONV_SHAPES))
@pytest.mark.parametrize("kind", MODELS_WITH_NETWORK)
def test_conv_bodies_export(kind, network, tmp_path):
    shape = CONV_SHAPES[network]
    likelihood = LIKELIHOOD_FOR_SHAPE[shape[0]]
    model = _model(kind, shape, likelihood, 'model.network="conv"')
    export_model(model, tmp_path / "onnx")
    assert_matches_torch(model, tmp_path / "onnx")


@pytest.mark.parametrize("likelihood", LIKELIHOOD_NAMES)
def test_every_likelihood_mean_exports(likelihood, tmp_path):
    # The discretised logistics read the data's number of levels (filled from data when
    # training); the mixture's mean is the clamped mixture of locations.
    model = _model("vae", (2, 5), likelihood, "model.data_levels=256")
    export_model(model, tmp_path / "onnx")
    assert_matches_torch(model, tmp_path / "onnx")


def test_full_covariance_posterior_exports_its_cholesky_factor(tmp_path):
    model = _model("vae", (1, 8, 8), "gaussian-learned", 'model.posterior="full"')
    manifest = export_model(model, tmp_path / "onnx")
    assert _outputs(manifest, "encoder") == {"mean": ["batch", 2], "scale_tril": ["batch", 2, 2]}
    assert_matches_torch(model, tmp_path / "onnx")


def test_hierarchical_decoder_is_decode_of_all_layers_through_z1(tmp_path):
    """The hierarchical VAE's decode(z) takes every layer, bottom first, and reads z_1 only:
    the exported graph does exactly that."""
    model = _model("hvae")
    export_model(model, tmp_path / "onnx")
    decoder = _session(tmp_path / "onnx" / "decoder.onnx")
    z = torch.randn(4, model.latent_dim, generator=torch.Generator().manual_seed(3))
    other = z.clone()
    other[:, model.config.latent_dims[0] :] = 5.0  # upper layers changed, z_1 kept
    first, second = (decoder.run(["mean"], {"z": v.numpy()})[0] for v in (z, other))
    np.testing.assert_array_equal(first, second)
    with torch.no_grad():
        assert _relative(first, model.decode_mean(z)) <= 1e-5


def test_conditional_graphs_use_the_label(tmp_path):
    model = _model("cvae")
    export_model(model, tmp_path / "onnx")
    decoder = _session(tmp_path / "onnx" / "decoder.onnx")
    z = torch.randn(3, model.latent_dim, generator=torch.Generator().manual_seed(4))
    means = []
    for label in (0, 7):
        y = torch.full((3,), label)
        (got,) = decoder.run(["mean"], {"z": z.numpy(), "y": y.numpy()})
        with torch.no_grad():
            assert _relative(got, model.decode_mean(z, y=y)) <= 1e-5
        means.append(got)
    assert np.abs(means[0] - means[1]).max() > 1e-3  # the label changes the image


def test_iaf_encoder_is_refused_in_one_line_and_the_decoder_exported(tmp_path, capsys):
    """The IAF posterior's mean is a Monte-Carlo estimate: no fixed graph reproduces it."""
    model = _model("vae", (1, 8, 8), "gaussian-learned", 'model.posterior="iaf"')
    vaekit.save(model, tmp_path / "iaf")
    assert main(["export", str(tmp_path / "iaf")]) == 0
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0
    assert err.startswith("vaekit: refused: encoder.onnx not exported: model 'vae'")
    assert "Monte-Carlo estimate" in err
    out = tmp_path / "iaf" / "onnx"
    assert sorted(p.name for p in out.iterdir()) == [".vaekit-run", "decoder.onnx", "export.json"]
    manifest = json.loads((out / "export.json").read_text())
    assert set(manifest["graphs"]) == {"decoder"}
    assert manifest["refused"]["encoder.onnx"] in err
    assert "wrote" in captured.out and "decoder.onnx" in captured.out
    assert_matches_torch(vaekit.load(tmp_path / "iaf"), out, encoder=False)


def test_cli_export_writes_checked_graphs_and_refuses_to_overwrite(tiny_run_copy, capsys):
    assert main(["export", str(tiny_run_copy), "--format", "onnx"]) == 0
    printed = capsys.readouterr().out
    assert "decoder.onnx" in printed and "relative error" in printed
    manifest = json.loads((tiny_run_copy / "onnx" / "export.json").read_text())
    assert manifest["data"]["name"] == "digits" and manifest["latent_dim"] == 2
    assert max(manifest["graphs"]["decoder"]["relative_error_vs_torch"].values()) <= 1e-5
    assert_matches_torch(vaekit.load(tiny_run_copy), tiny_run_copy / "onnx")
    assert main(["export", str(tiny_run_copy)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(tiny_run_copy), "--overwrite"]) == 0


def test_missing_extra_is_one_line_naming_it(tiny_run, tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name.split(".")[0] == "onnxruntime":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    out = tmp_path / "onnx"
    assert main(["export", str(tiny_run), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "vaekit: error: ONNX export needs onnxruntime: pip install 'vaekit[onnx]'"
    assert not out.exists()


def test_the_guide_snippet_runs_the_exported_decoder(tiny_run, tmp_path, monkeypatch):
    """The guide's five lines, run as written (from a directory holding runs/demo/onnx)."""
    guide = (Path(__file__).parents[1] / "docs" / "guide" / "explorer.md").read_text()
    block = re.search(r"<!-- onnx-snippet -->\s*```python\n(.*?)```", guide, re.S)
    assert block is not None, "the guide lost its onnxruntime snippet"
    code = block.group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 5
    (tmp_path / "runs").mkdir()
    export_model(vaekit.load(tiny_run), tmp_path / "runs" / "demo" / "onnx")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "explorer.md", "exec"), scope)
    images = scope["images"]
    assert images.shape == (16, 1, 8, 8) and np.isfinite(images).all()
