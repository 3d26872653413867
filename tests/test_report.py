"""Every evaluation/picture CLI command end to end on one tiny digits run, the feature-net
cache, training curves from metrics.jsonl, and the HTML report rendered in headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import feature_net
from vaekit.checkpoint import load
from vaekit.cli import main
from vaekit.report.curves import (
    epoch_curve,
    interval_midpoints,
    read_metrics,
    save_training_curves,
    step_curve,
)

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A digits VAE trained 2 epochs (hidden [32], 2-D latent) with its report, in tmp."""
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAEKIT_CACHE_DIR", str(root / "cache"))
        mp.setitem(feature_net.RECIPE, "steps", 150)  # a quick classifier for the tests
        torch.set_num_threads(1)
        out = root / "run"
        code = main(
            [
                "train",
                "--data",
                "digits",
                "--epochs",
                "2",
                "--hidden-dims",
                "32",
                "--latent-dim",
                "2",
                "--batch-size",
                "128",
                "--out",
                str(out),
            ]
        )
        assert code == 0
        yield out


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_train_writes_the_report_with_table_and_pictures(run):
    page = (run / "report.html").read_text()
    for quantity in ("nll", "bits/dim", "ELBO", "KL", "active units", "Fréchet classifier"):
        assert f"<td>{quantity}" in page
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    names = [
        "curves",
        "reconstructions",
        "samples",
        "interpolations",
        "traversals",
        "latent_map",
        "manifold",
        "kl_per_dim",
    ]
    assert len(images) == len(names)
    for name in names:
        assert f"id='fig-{name}'" in page
    assert base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page and "https://" not in page  # self-contained
    result = json.loads((run / "eval.json").read_text())
    assert result["num_samples"] == 100 and result["split"] == "test"  # the quick K
    config = json.loads((run / "config.json").read_text())
    assert result["model_sha256"] == config["weights"]["sha256"]


def test_evaluate_json(run, capsys):
    code = main(
        ["evaluate", str(run), "--num-samples", "20", "--max-examples", "50", "--json", "--no-fcd"]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    for key in (
        "nll",
        "nll_stderr",
        "bits_per_dim",
        "elbo",
        "log_px_z",
        "kl",
        "kl_per_dim",
        "active_units",
        "num_samples",
        "num_examples",
        "split",
        "aggregate_posterior",
    ):
        assert key in result
    assert result["num_samples"] == 20 and result["num_examples"] == 50
    assert len(result["kl_per_dim"]) == 2
    assert result["nll"] <= -result["elbo"] + 3 * result["nll_stderr"] + 1.0
    assert json.loads((run / "eval.json").read_text())["num_samples"] == 20


def test_evaluate_with_fcd_uses_the_cached_classifier(run, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("VAEKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(feature_net.RECIPE, "steps", 100)
    assert main(["evaluate", str(run), "--num-samples", "5", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["frechet_classifier_distance"] > 0
    info = first["fcd_classifier"]
    assert 0.3 < info["test_accuracy"] <= 1.0  # 100 steps already beat chance (0.1)
    cached = sorted(p.name for p in (tmp_path / "feature-nets").iterdir())
    assert cached == [f"{info['key']}.json", f"{info['key']}.safetensors"]

    def no_training(dataset):
        raise AssertionError("the cached classifier should have been used")

    monkeypatch.setattr(feature_net, "_train", no_training)
    assert main(["evaluate", str(run), "--num-samples", "5", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["frechet_classifier_distance"] == pytest.approx(
        first["frechet_classifier_distance"]
    )
    # a tampered cache entry is not trusted: it is retrained
    weights = tmp_path / "feature-nets" / f"{info['key']}.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(AssertionError, match="cached classifier"):
        feature_net.frechet_classifier_distance(load(run), _dataset())


def _dataset():
    from vaekit.data import load_dataset

    return load_dataset("digits")


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        ("reconstruct", ["-n", "6"]),
        ("interpolate", ["--pairs", "3", "--steps", "5"]),
        ("traverse", ["--max-dims", "2", "--steps", "7"]),
        ("latent-map", []),
    ],
)
def test_picture_commands(run, tmp_path, command, extra):
    output = tmp_path / f"{command}.png"
    assert main([command, str(run), "-o", str(output), *extra]) == 0
    width, height = _png(output)
    assert width > 200 and height > 90  # reconstruct -n 6: one row of 8x8 digits, 48 px each
    if command == "latent-map":  # 2-D latent: the decoded manifold comes with it
        assert _png(tmp_path / "latent-map-manifold.png")[0] > 200


def test_picture_command_errors(run, tmp_path, capsys):
    assert main(["reconstruct", str(run), "-o", str(tmp_path / "x.jpg")]) == 2
    assert "must be a .png" in capsys.readouterr().err
    assert main(["traverse", str(run), "-o", str(tmp_path / "t.png"), "--index", "999"]) == 2
    assert "--index 999" in capsys.readouterr().err


def test_encode_decode_round_trip(run, tmp_path):
    from sklearn.datasets import load_digits

    raw = load_digits().images[:7].astype(np.uint8)[:, None]  # stored form: 0..16 levels
    np.save(tmp_path / "x.npy", raw)
    assert (
        main(
            [
                "encode",
                str(run),
                str(tmp_path / "x.npy"),
                "-o",
                str(tmp_path / "z.npy"),
                "--log-var",
                str(tmp_path / "lv.npy"),
                "--sample",
                str(tmp_path / "s.npy"),
            ]
        )
        == 0
    )
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (7, 2) and z.dtype == np.float32
    assert np.load(tmp_path / "lv.npy").shape == (7, 2)
    assert not np.allclose(np.load(tmp_path / "s.npy"), z)  # a draw, not the mean
    model = load(run)
    from vaekit.data import transform_from_dict

    x = transform_from_dict(model.data_info["transform"])(
        torch.from_numpy(raw), torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        expected = model.encode(x.float()).mean.numpy()
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-6)

    assert main(["decode", str(run), str(tmp_path / "z.npy"), "-o", str(tmp_path / "x.npy")]) == 0
    decoded = np.load(tmp_path / "x.npy")
    assert decoded.shape == (7, 1, 8, 8)
    with torch.no_grad():  # in the data's units: digits' levels, E[v|z] = 17 E[x|z] - 1/2
        levels = (17 * model.decode_mean(torch.from_numpy(z)) - 0.5).clamp(0, 16).numpy()
    np.testing.assert_allclose(decoded, levels, rtol=1e-5, atol=1e-5)


def test_encode_decode_errors(run, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((3, 5)))
    assert main(["decode", str(run), str(tmp_path / "bad.npy"), "-o", str(tmp_path / "o.npy")]) == 2
    assert "expected codes of shape [N, 2]" in capsys.readouterr().err
    assert main(["encode", str(run), str(tmp_path / "bad.npy"), "-o", str(tmp_path / "o.npy")]) == 2
    assert "bad.npy" in capsys.readouterr().err
    assert main(["encode", str(run), str(tmp_path / "missing.npy"), "-o", "o.npy"]) == 2
    capsys.readouterr()
    np.save(tmp_path / "z.npy", np.zeros((3, 2)))
    argv = ["decode", str(run), str(tmp_path / "z.npy"), "-o", str(tmp_path / "o.npy")]
    assert main([*argv, "--label", "1"]) == 2  # a class for a model without classes
    assert "--label: model 'vae' is not conditioned on labels" in capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()


def test_report_command_reuses_matching_eval_json(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    stored = json.loads((copy / "eval.json").read_text())
    stored["nll"] = 123.456  # marks this eval.json: the report must show it, not recompute
    (copy / "eval.json").write_text(json.dumps(stored))
    assert main(["report", str(copy)]) == 0
    assert "123.456" in (copy / "report.html").read_text()
    stored["model_sha256"] = "0" * 64  # from other weights: stale, so it is recomputed
    (copy / "eval.json").write_text(json.dumps(stored))
    assert main(["report", str(copy), "--num-samples", "10", "--max-examples", "20"]) == 0
    assert "123.456" not in (copy / "report.html").read_text()
    assert json.loads((copy / "eval.json").read_text())["num_samples"] == 10


def test_training_curves_tolerate_step_records_and_extra_keys(tmp_path):
    lines = [
        {"kind": "step", "step": 1, "elbo": -50.0, "lr": 1e-3},
        {"kind": "step", "step": 2, "elbo": -40.0, "lr": 5e-4},
        {
            "kind": "epoch",
            "epoch": 1,
            "train_elbo": -45.0,
            "val_elbo": -44.0,
            "train_kl": 1.0,
            "val_kl": 1.2,
            "train_log_px_z": -44.0,
            "val_log_px_z": -42.8,
            "new_key": [1, 2],
        },
        {"epoch": 2, "train_elbo": -30.0, "val_elbo": -31.0, "examples_per_s": 10.0},
        {"kind": "something-new", "x": 1},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    epochs, steps = read_metrics(path)
    assert [r["epoch"] for r in epochs] == [1, 2] and [r["step"] for r in steps] == [1, 2]
    width, _ = _png(save_training_curves(path, tmp_path / "curves.png"))
    assert width > 4 * 300  # ELBO, reconstruction, KL and learning-rate panels
    path.write_text('{"epoch": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2"):
        read_metrics(path)


def test_interval_means_are_drawn_at_the_middle_of_their_interval():
    # log_every 4 over 2 epochs of 8 steps: each step record is the mean of the 4 steps
    # since the previous one, so it belongs at their middle, 2 steps before its own step
    steps = [
        {"kind": "step", "step": s, "epoch": 1 + (s - 1) // 8, "elbo": -s} for s in (4, 8, 12, 16)
    ]
    epochs = [
        {"epoch": 1, "step": 8, "train_elbo": -5.0, "val_elbo": -4.0},
        {"epoch": 2, "step": 16, "train_elbo": -3.0, "val_elbo": -2.5},
    ]
    assert interval_midpoints(steps) == [2.0, 6.0, 10.0, 14.0]
    xs, ys = step_curve(epochs, steps, "elbo")
    assert xs == [0.25, 0.75, 1.25, 1.75] and ys == [-4, -8, -12, -16]  # in epochs (8 steps)
    assert epoch_curve(epochs, "train", "elbo") == ([0.5, 1.5], [-5.0, -3.0])  # mid-epoch
    assert epoch_curve(epochs, "val", "elbo") == ([1, 2], [-4.0, -2.5])  # measured at the end


def _chromium_available() -> str | None:
    if not CHROMIUM.exists():
        return "Chromium is not installed (scripts/ensure-chromium.sh installs it with apt-get)"
    return None


@pytest.mark.skipif(_chromium_available() is not None, reason=str(_chromium_available()))
def test_report_renders_in_headless_chromium(run, tmp_path):
    """Chromium loads the page offline; a probe script appended to a copy writes each image's
    decoded size and the table's row count into the DOM, which --dump-dom prints."""
    page = (run / "report.html").read_text()
    probe = (
        "<script>window.addEventListener('load', () => {"
        "const out = document.createElement('pre'); out.id = 'probe';"
        "out.textContent = JSON.stringify({rows: document.querySelectorAll("
        "'#evaluation tbody tr').length, images: Array.from(document.images).map("
        "i => [i.alt, i.naturalWidth, i.naturalHeight, i.complete])});"
        "document.body.appendChild(out);});</script>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", probe + "</body>"))
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probed.as_uri(),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="probe">(.*?)</pre>', completed.stdout)
    assert match, completed.stderr[-2000:]
    probe_result = json.loads(match.group(1).replace("&quot;", '"'))
    assert probe_result["rows"] >= 9  # nll .. FCD
    assert len(probe_result["images"]) == 8
    for alt, width, height, complete in probe_result["images"]:
        assert complete and width > 100 and height > 100, alt


def test_autoencoder_report_has_pictures_and_no_likelihood(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEKIT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "ae"
    args = [
        "train",
        "--data",
        "digits",
        "--model",
        "ae",
        "--objective",
        "reconstruction",
        "--epochs",
        "1",
        "--hidden-dims",
        "16",
        "--latent-dim",
        "3",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    page = (out / "report.html").read_text()
    assert "defines no likelihood p(x)" in page and "<table" not in page
    top = page[page.index("id='headline'") : page.index("id='evaluation'")]
    assert "not available" in top and "defines no likelihood" in top  # the headline says why
    for name in ("reconstructions", "samples", "interpolations", "traversals", "latent_map"):
        assert f"id='fig-{name}'" in page
    assert "fig-kl_per_dim" not in page and not (out / "eval.json").exists()
