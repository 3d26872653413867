"""TensorBoard as users expect it: pictures every N epochs, HPARAMS, the embedding projector.
Everything is read back with tensorboard's own readers."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import model_names, tiny, tiny_model, tiny_model_overrides
from vaekit.config import ConfigError, apply_overrides

pytest.importorskip("tensorboard")
from google.protobuf import text_format
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

import vaekit
from vaekit.report.plots import image_grid
from vaekit.training.tensorboard import _upscale, log_embedding, log_pictures


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from vaekit.training import train

    out = tmp_path_factory.mktemp("tb") / "run"
    config = tiny("train.tensorboard=true", "train.epochs=3", "train.tensorboard_images_every=2")
    result = train(config, out=out, log=lambda _: None)
    events = EventAccumulator(
        str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0}
    )
    events.Reload()
    return out, result, events


def _png(event) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))


def test_pictures_every_n_epochs_and_after_the_last(run):
    out, result, events = run
    steps = {r["epoch"]: r["step"] for r in result.history}
    assert set(events.Tags()["images"]) == {"pictures/samples", "pictures/reconstructions"}
    for tag in ("pictures/samples", "pictures/reconstructions"):
        assert [e.step for e in events.Images(tag)] == [steps[2], steps[3]]
    # The last samples grid is the trained model's E[x|z] for the 64 seeded draws.
    model = vaekit.load(out)
    samples = model.sample(64, generator=torch.Generator().manual_seed(0))
    expected = image_grid(_upscale(samples.clamp(0, 1)))
    got = _png(events.Images("pictures/samples")[-1]).astype(np.float32) / 255
    if got.ndim == 3:
        got = got[..., 0]
    assert got.shape == expected.shape[:2] and got.shape[0] > 8 * 28  # digits scaled up
    assert np.abs(got - expected[..., 0]).max() <= 1 / 255 + 1e-6
    # Reconstructions: 16 pairs, input then reconstruction, 8 images per row.
    recon = _png(events.Images("pictures/reconstructions")[-1])
    cell = 32 + 1  # 8x8 digits repeated 4 times, 1 pixel of padding
    assert recon.shape[:2] == (4 * cell + 1, 8 * cell + 1)


def test_hparams_tab_holds_the_config_and_final_metrics(run):
    out, result, events = run
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]
    ).experiment
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info
    hparams = {k: v for k, v in start.hparams.items()}
    assert hparams["model.latent_dim"].number_value == 2
    assert hparams["model.hidden_dims"].string_value == "[32]"
    assert hparams["data.name"].string_value == "digits"
    assert hparams["optim.lr"].number_value == pytest.approx(1e-3)
    metric_tags = {m.name.tag for m in experiment.metric_infos}
    assert {"epoch/val_elbo", "final/best_val_elbo", "final/test_nll"} <= metric_tags
    # Every metric the tab lists is a scalar in the run, with the value it names.
    scalars = set(events.Tags()["scalars"])
    assert metric_tags <= scalars
    evaluated = json.loads((out / "eval.json").read_text())
    assert events.Scalars("final/test_nll")[-1].value == pytest.approx(evaluated["nll"], rel=1e-6)
    assert events.Scalars("final/test_active_units")[-1].value == evaluated["active_units"]
    best = max(r["val_elbo"] for r in result.history)
    assert events.Scalars("final/best_val_elbo")[-1].value == pytest.approx(best, rel=1e-6)


def test_projector_has_posterior_means_labels_and_sprite(run):
    out, _, _ = run
    logdir = out / "tensorboard"
    config = text_format.Parse((logdir / "projector_config.pbtxt").read_text(), ProjectorConfig())
    (embedding,) = config.embeddings
    means = np.loadtxt(logdir / embedding.tensor_path, delimiter="\t")
    model, dataset = vaekit.load(out), vaekit.load_dataset("digits")
    x = dataset.fixed("test", seed=0)
    with torch.no_grad():
        expected = model.encode(x).mean.numpy()
    assert means.shape == expected.shape == (300, 2)
    np.testing.assert_allclose(means, expected, rtol=1e-5, atol=1e-6)
    labels = (logdir / embedding.metadata_path).read_text().split()
    assert labels == [str(v) for v in dataset.test.y.tolist()]
    assert list(embedding.sprite.single_image_dim) == [32, 32]
    with Image.open(logdir / embedding.sprite.image_path) as image:
        sprite = np.asarray(image)
    side = math.ceil(math.sqrt(300)) * 32
    assert sprite.shape[:2] == (side, side)
    # Tile k of the sprite is input image k (scaled up), row-major.
    k = 23
    row, col = divmod(k, math.ceil(math.sqrt(300)))
    tile = sprite[row * 32 : (row + 1) * 32, col * 32 : (col + 1) * 32, 0] / 255
    np.testing.assert_allclose(tile, _upscale(x[k : k + 1])[0, 0].numpy(), atol=1 / 255 + 1e-6)


def test_images_every_must_be_positive():
    with pytest.raises(ConfigError, match="tensorboard_images_every"):
        apply_overrides(tiny(), ["train.tensorboard_images_every=0"])


def test_no_tensorboard_directory_when_switched_off(tmp_path):
    from vaekit.training import train

    train(tiny("train.max_steps=2"), out=tmp_path / "run", log=lambda _: None)
    assert not Path(tmp_path / "run" / "tensorboard").exists()


def test_logging_pictures_leaves_training_unchanged(run, tmp_path):
    """The pictures use their own generator: the same run without TensorBoard ends with
    bitwise the same weights."""
    from vaekit.training import train

    out, _, _ = run
    config = tiny("train.tensorboard=false", "train.epochs=3", "train.tensorboard_images_every=2")
    plain = train(config, out=tmp_path / "plain", log=lambda _: None).model
    logged = vaekit.load(out)
    for (name, a), b in zip(plain.state_dict().items(), logged.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def _texts(events, tag: str) -> list[str]:
    """The strings written with ``add_text(tag, ...)``."""
    full = f"{tag}/text_summary"
    if full not in events.Tags()["tensors"]:
        return []
    return [e.tensor_proto.string_val[0].decode() for e in events.Tensors(full)]


@pytest.mark.parametrize("name", model_names())
def test_every_registered_model_logs_what_it_has(name, tmp_path):
    """One epoch of each registered model: samples always (one row per class for a
    conditional model), reconstructions where the inputs suffice, the projector where the
    latent is continuous; what is skipped says why, and nothing fails."""
    from vaekit.training import train

    base = tiny("train.tensorboard=true", "train.epochs=1", "train.tensorboard_images_every=1")
    config = apply_overrides(base, tiny_model_overrides(name))  # the model kind first
    lines: list[str] = []
    out = tmp_path / "run"
    train(config, out=out, log=lines.append)
    assert not [line for line in lines if "TensorBoard" in line and "not written" in line]
    events = EventAccumulator(
        str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0}
    )
    events.Reload()
    model = vaekit.load(out)
    images = set(events.Tags()["images"])
    cell = 32 + 1  # 8x8 digits repeated 4 times, 1 pixel of padding
    samples = _png(events.Images("pictures/samples")[-1])
    rows = model.num_classes if model.takes_labels else 8  # a conditional model: one per class
    assert samples.shape[0] == rows * cell + 1
    # The trainer hands the pictures the test inputs' labels, so a conditional model's
    # reconstructions are drawn too.
    assert "pictures/reconstructions" in images and not _texts(events, "pictures/notes")
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
    projector = out / "tensorboard" / "projector_config.pbtxt"
    if model.has_continuous_latent:
        config = text_format.Parse(projector.read_text(), ProjectorConfig())
        (embedding,) = config.embeddings
        means = np.loadtxt(out / "tensorboard" / embedding.tensor_path, delimiter="\t")
        assert means.shape == (300, model.latent_dim) and np.isfinite(means).all()
    else:
        assert not projector.exists()
        (note,) = _texts(events, "projector/notes")
        assert "discrete code" in note


def test_conditional_pictures_with_labels(tmp_path):
    """Given the inputs' labels, a conditional model's reconstructions are x beside
    reconstruct(x, y) (the label changes them)."""
    from torch.utils.tensorboard import SummaryWriter

    torch.manual_seed(0)
    model = tiny_model("cvae").eval()
    dataset = vaekit.load_dataset("digits")
    x, y = dataset.fixed("test", seed=0)[:16], dataset.test.y[:16]
    with SummaryWriter(str(tmp_path)) as writer:
        log_pictures(writer, model, x, 3, y_test=y)
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    got = _png(events.Images("pictures/reconstructions")[-1]).astype(np.float32) / 255
    with torch.no_grad():
        recon = model.reconstruct(x, y=y)
    pairs = torch.stack([x, recon], dim=1).flatten(0, 1)
    expected = image_grid(_upscale(pairs.clamp(0, 1)), ncols=8)
    got = got[..., 0] if got.ndim == 3 else got
    assert np.abs(got - expected[..., 0]).max() <= 1 / 255 + 1e-6
    assert not _texts(events, "pictures/notes")


@pytest.mark.parametrize("settings", [['model.posterior="iaf"'], tiny_model_overrides("hvae")])
def test_monte_carlo_means_leave_the_global_rng_alone(settings, tmp_path):
    """The IAF posterior's mean and the hierarchical VAE's latent moments are Monte-Carlo
    estimates: drawing the pictures and the projector does not move the training RNG."""
    from torch.utils.tensorboard import SummaryWriter

    config = apply_overrides(
        tiny(), [*settings, "model.data_shape=[1, 8, 8]", 'model.likelihood="gaussian-learned"']
    )
    model = vaekit.models.build_model(config.model).eval()
    dataset = vaekit.load_dataset("digits")
    torch.manual_seed(123)
    state = torch.get_rng_state()
    with SummaryWriter(str(tmp_path)) as writer:
        log_pictures(writer, model, dataset.fixed("test")[:16], 0)
        assert log_embedding(writer, model, dataset, 0) == 300
    assert torch.equal(torch.get_rng_state(), state)
