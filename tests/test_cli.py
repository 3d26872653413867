"""The first end-to-end path: train -> evaluate -> sample on digits, through the CLI."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from vaekit.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    code = main(
        [
            "train",
            "--config",
            "configs/smoke.toml",
            "--out",
            str(out),
            "--epochs",
            "3",
            "--hidden-dims",
            "64",
            "--latent-dim",
            "4",
            "--seed",
            "1",
        ]
    )
    assert code == 0
    return out


def test_train_writes_the_run_directory(run_dir):
    for name in (
        "config.json",
        "model.safetensors",
        "metrics.jsonl",
        "samples.png",
        "reconstructions.png",
    ):
        assert (run_dir / name).is_file(), name
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    lines = [r for r in lines if r.get("kind") == "epoch"]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    for key in ("train_elbo", "train_log_px_z", "train_kl", "val_elbo", "val_log_px_z", "val_kl"):
        assert all(isinstance(r[key], float) for r in lines), key
    record = lines[-1]
    assert record["val_elbo"] == pytest.approx(record["val_log_px_z"] - record["val_kl"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["latent_dim"] == 4 and config["model"]["hidden_dims"] == [64]
    assert config["model"]["likelihood"] == "gaussian-learned"  # never BCE on grey digits
    assert config["data"]["transform"] == {"kind": "dequantize", "levels": 17}
    assert config["config"]["train"]["epochs"] == 3
    with Image.open(run_dir / "samples.png") as image:
        assert image.size[0] > 100 and image.size[1] > 100


def test_evaluate_json_reports_a_tighter_bound_than_the_elbo(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--num-samples", "200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("elbo", "log_px_z", "kl", "nll", "nll_stderr", "bits_per_dim"):
        assert isinstance(result[key], float) and result[key] == result[key], key
    assert result["num_samples"] == 200 and result["num_examples"] == 300
    assert result["split"] == "test"
    assert result["nll"] <= -result["elbo"]  # IWAE_K >= ELBO
    assert result["elbo"] == pytest.approx(result["log_px_z"] - result["kl"])
    saved = json.loads((run_dir / "eval.json").read_text())
    assert saved["nll"] == result["nll"]


def test_sample_writes_a_png(run_dir, tmp_path):
    out = tmp_path / "s.png"
    assert main(["sample", str(run_dir), "-n", "16", "-o", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG"


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["train", "--out", "{tmp}/r", "--likelihood", "bernoulli", "--epochs", "1"],
            "bernoulli needs binary data",
        ),
        (
            ["train", "--out", "{tmp}/r", "--data", "nope"],
            "--data 'nope': not a registered dataset",
        ),
        (["train", "--out", "{tmp}/r", "--set", "optim.lrr=1"], "unknown field 'optim.lrr'"),
        (
            ["train", "--out", "{tmp}/r", "--model", "vqvae", "--init", "glorot"],
            "--init: model 'vqvae' has no field 'init'",
        ),
        (
            ["train", "--out", "{tmp}/r", "--posterior", "cholesky"],
            "--posterior: model.posterior must be one",
        ),
        (["train", "--out", "{tmp}/r", "--lr", "-1"], "--lr: optim.lr must be > 0"),
        (["train", "--out", "{tmp}/r", "--set", "optim.lr=0"], "error: optim.lr must be > 0"),
        (["evaluate", "{tmp}/missing"], "no such model directory"),
        (["train", "--config", "{tmp}/none.toml", "--out", "{tmp}/r"], "config file not found"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaekit: error:") and message in err and "\n" not in err
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "vaekit", "--help"], capture_output=True, text=True, check=True
    )
    assert "train" in proc.stdout and "evaluate" in proc.stdout
