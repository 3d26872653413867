"""The report for a person in a hurry: the headline with units, no panel that carries nothing,
legible pixels, the configuration folded away; and one page writer for every HTML page."""

from __future__ import annotations

import hashlib
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
from vaekit import feature_net
from vaekit.cli import main
from vaekit.metrics import metric
from vaekit.report.curves import constant_learning_rate, save_training_curves
from vaekit.report.html import format_seconds, headline
from vaekit.report.latent_plots import colours_by_label
from vaekit.report.page import GENERATOR, Page, write_page
from vaekit.report.plots import pixel_scale, save_grid

SRC = Path(vaekit.__file__).parent


def _train(out: Path, *extra: str) -> Path:
    args = ["train", "--epochs", "2", "--hidden-dims", "16", "--latent-dim", "2"]
    assert main([*args, "--batch-size", "128", "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A digits VAE trained 2 epochs at the default constant learning rate, with its report."""
    root = tmp_path_factory.mktemp("page")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAEKIT_CACHE_DIR", str(root / "cache"))
        mp.setitem(feature_net.RECIPE, "steps", 60)
        yield _train(root / "run", "--data", "digits")


def _section(page: str, tag: str, ident: str) -> str:
    match = re.search(rf"<{tag} [^>]*id='{ident}'[^>]*>(.*?)</{tag}>", page, re.S)
    assert match, f"no <{tag} id='{ident}'>"
    return match.group(1)


def test_report_opens_with_the_headline_and_its_units(run):
    page = (run / "report.html").read_text()
    result = json.loads((run / "eval.json").read_text())
    metadata = json.loads((run / "config.json").read_text())["metadata"]
    top = _section(page, "section", "headline")
    assert page.index("id='headline'") < page.index("id='evaluation'")  # it comes first
    nll, bpd = metric("nll"), metric("bits_per_dim")
    assert html.escape(nll.value_text(result)) in top and " ± " in nll.value_text(result)
    assert nll.unit in top and "standard error" in top
    assert html.escape(bpd.value_text(result)) in top and bpd.unit in top
    assert metadata["train_seconds"] > 0 and result["eval_seconds"] > 0
    assert f"training {format_seconds(metadata['train_seconds'])}" in top
    assert f"evaluation {format_seconds(result['eval_seconds'])}" in top
    assert html.escape(metadata["device"]) in top and metadata["device"].startswith("cpu")
    assert torch.__version__ in top and vaekit.__version__ in top


def test_headline_says_why_a_number_is_missing():
    no_likelihood = headline(None, {})
    assert "not available" in no_likelihood and "defines no likelihood" in no_likelihood
    assert "training not recorded" in no_likelihood  # a run from before the metadata
    continuous = {"nll": -20.0, "nll_stderr": 0.1, "split": "test"}
    assert "not applicable" in headline(continuous, {"train_seconds": 75.0})
    assert "training 1 min 15 s" in headline(continuous, {"train_seconds": 75.0})
    assert "not finite" in headline({"nll": float("nan"), "nll_stderr": 0.1}, {})


def test_constant_learning_rate_has_no_panel(run, tmp_path):
    page = (run / "report.html").read_text()
    assert constant_learning_rate(run / "metrics.jsonl") == pytest.approx(1e-3)
    caption = _section(page, "figure", "fig-curves")
    assert "constant at 0.001, so it has no panel" in caption
    records = [
        {"kind": "epoch", "epoch": e, "train_elbo": -10.0 / e, "val_elbo": -9.0 / e, "lr": lr}
        for e, lr in ((1, 1e-3), (2, 1e-3))
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    with Image.open(save_training_curves(path, tmp_path / "flat.png")) as image:
        one_panel = image.size[0]
    records[1]["lr"] = 5e-4  # a changing rate gets its panel back
    path.write_text("\n".join(json.dumps(r) for r in records))
    assert constant_learning_rate(path) is None
    with Image.open(save_training_curves(path, tmp_path / "moving.png")) as image:
        assert image.size[0] >= 2 * one_panel - 10  # ELBO + learning rate


def test_the_configuration_is_folded_into_a_details_element(run):
    page = (run / "report.html").read_text()
    match = re.search(
        r"<details id='config'><summary>([^<]*)</summary><pre>(.*?)</pre></details>", page, re.S
    )
    assert match, "the config is not in a collapsed <details id='config'>"
    assert "Configuration" in match.group(1)
    shown = json.loads(html.unescape(match.group(2)))
    assert shown == json.loads((run / "config.json").read_text())["config"]
    assert page.count("&quot;optim&quot;") == 1  # nowhere else on the page
    assert "<details id='config' open" not in page  # collapsed


def test_tiny_images_are_enlarged_by_whole_pixels(run, tmp_path):
    assert pixel_scale(8 * 9 + 1, 8) == 6  # 8 digits a row: 48 px each
    assert pixel_scale(16 * 29 + 1, 28) == 2  # 16 MNIST digits a row: 930 px fit the page
    assert pixel_scale(16 * 33 + 1, 32) == 1  # 16 CIFAR images: twice would not fit
    values = np.random.default_rng(0).integers(0, 200, size=(16, 16, 1)) / 255.0
    path = save_grid(values.astype(np.float32), tmp_path / "g.png", "", cell=8)
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L")).astype(int)
    rows, cols = np.nonzero(pixels < 250)  # the picture: every value is below 200/255
    top, left = rows.min(), cols.min()
    assert (rows.max() - top + 1, cols.max() - left + 1) == (96, 96)  # 16 px x 6
    blocks = pixels[top : top + 96, left : left + 96].reshape(16, 6, 16, 6)
    assert (blocks.max(axis=(1, 3)) == blocks.min(axis=(1, 3))).all()  # no resampling
    np.testing.assert_allclose(blocks[:, 0, :, 0], values[..., 0] * 255, atol=1)
    page = (run / "report.html").read_text()
    assert "<figure id='fig-samples'><img class='pixels' alt='samples'" in page
    assert "<figure id='fig-curves'><img alt='curves'" in page  # plots are not pixel art
    with Image.open(run / "figures" / "samples.png") as image:
        assert image.size[0] >= 8 * 8 * 6  # 8 samples a row, 48 px each


def test_unlabelled_data_gets_no_label_colouring(tmp_path, monkeypatch):
    from sklearn.datasets import load_digits

    monkeypatch.setenv("VAEKIT_CACHE_DIR", str(tmp_path / "cache"))
    np.save(tmp_path / "x.npy", load_digits().images[:300].astype(np.uint8)[:, None])
    run = _train(tmp_path / "run", "--data", str(tmp_path / "x.npy"))
    caption = _section((run / "report.html").read_text(), "figure", "fig-latent_map")
    assert "fewer than two labels" in caption and "coloured by label" not in caption
    assert not colours_by_label(torch.zeros(5, dtype=torch.long))  # one class: one colour
    assert colours_by_label(torch.tensor([0, 1, 1])) and not colours_by_label(None)


def test_one_page_writer_for_every_page(run, tmp_path):
    writers = [
        path.relative_to(SRC).as_posix()
        for path in SRC.rglob("*.py")
        if "<!doctype" in path.read_text().lower()
    ]
    assert writers == ["report/page.py"]
    png = (run / "figures" / "samples.png").read_bytes()
    contrast = write_page(tmp_path, "t", ["intro"], [("s", ["p"], [("a.png", png, "c")])])
    pages = [(run / "report.html").read_text(), contrast.read_text()]
    styles = [re.search(r"<style>(.*?)</style>", page, re.S).group(1) for page in pages]
    assert styles[0] == styles[1]
    for page in pages:
        assert f"<meta name='generator' content='{GENERATOR}'>" in page
    assert Page("x").render().count("<!DOCTYPE html>") == 1


def test_training_time_adds_up_over_resumed_sessions(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(feature_net.RECIPE, "steps", 30)
    run = tmp_path / "run"
    args = ["train", "--data", "digits", "--hidden-dims", "8", "--batch-size", "256"]
    assert main([*args, "--max-steps", "3", "--out", str(run)]) == 0
    state_path = run / "checkpoints" / "last" / "trainer.json"
    state = json.loads(state_path.read_text())
    assert 0 < state["loop"]["train_seconds"] < 1000
    state["loop"]["train_seconds"] = 1000.0  # as if the first session had taken that long
    state_path.write_text(json.dumps(state))
    # trainer.json is hashed in the checkpoint's config.json: sign the edited state again.
    config_path = state_path.parent / "config.json"
    descriptor = json.loads(config_path.read_text())
    digest = hashlib.sha256(state_path.read_bytes()).hexdigest()
    descriptor["metadata"]["trainer_json_sha256"] = digest
    config_path.write_text(json.dumps(descriptor))
    assert main(["train", "--resume", str(run), "--max-steps", "6"]) == 0
    seconds = json.loads((run / "config.json").read_text())["metadata"]["train_seconds"]
    assert 1000 < seconds < 1000 + 600
