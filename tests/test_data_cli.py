"""`vaekit train` end to end on user data in tmp_path: an image folder, an .npy file, a CSV."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.checkpoint import load
from vaekit.cli import main
from vaekit.data import transform_from_dict

TINY = ["--epochs", "1", "--hidden-dims", "16", "--latent-dim", "2", "--batch-size", "16"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_train(tmp_path, data, *extra):
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, *extra]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (out / "model.safetensors").exists()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    return out, config


def test_train_on_an_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(24):
        size = (12, 10) if i % 2 else (10, 12)  # mixed sizes: resized by --image-size
        (tmp_path / "imgs" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            tmp_path / "imgs" / f"c{i % 2}" / f"{i}.png"
        )
    out, config = run_train(tmp_path, tmp_path / "imgs", "--image-size", "8x8")
    assert config["data"]["shape"] == [3, 8, 8] and config["data"]["classes"] == ["c0", "c1"]
    assert config["config"]["data"]["image_size"] == [8, 8]
    assert config["model"]["likelihood"] == "gaussian-learned"
    assert (out / "samples.png").exists() and (out / "reconstructions.png").exists()


def test_train_on_npy(tmp_path):
    x = (np.random.default_rng(1).random((64, 20)) < 0.4).astype(np.uint8)
    np.save(tmp_path / "b.npy", x)
    out, config = run_train(tmp_path, tmp_path / "b.npy")
    assert config["data"]["support"] == "binary" and config["model"]["likelihood"] == "bernoulli"
    assert load(out).data_shape == (20,) or list(load(out).data_shape) == [20]


def test_train_on_csv_saves_the_standardisation(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal([10.0, -3.0, 0.5], [2.0, 0.1, 5.0], size=(80, 3))
    lines = ["u,v,w"] + [",".join(f"{v:.6f}" for v in row) for row in x]
    (tmp_path / "t.csv").write_text("\n".join(lines))
    _, config = run_train(tmp_path, tmp_path / "t.csv")
    transform = transform_from_dict(config["data"]["transform"])
    assert config["data"]["columns"] == ["u", "v", "w"] and config["data"]["support"] == "real"
    mean = transform.mean.numpy()
    assert np.all(np.abs(mean - [10.0, -3.0, 0.5]) < 5 * np.array([2.0, 0.1, 5.0]) / 8)
    # the saved transform standardises new rows exactly as training did
    z = transform(torch.tensor([[10.0, -3.0, 0.5]], dtype=torch.float64))
    expected = (np.array([10.0, -3.0, 0.5]) - mean) / transform.std.numpy()
    np.testing.assert_allclose(z.double().numpy()[0], expected, rtol=1e-5, atol=1e-6)
