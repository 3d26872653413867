"""`vaekit train` end to end on user data in tmp_path: an image folder, an .npy file, a CSV."""

import json
import re

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
    kinds = [json.loads(line)["kind"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert kinds == ["compile", "epoch"]  # train.compile's decision, then the one epoch
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


def labelled_table(tmp_path, rows: int = 90, suffix: str = ".csv"):
    """Three Gaussian classes in 3 features plus a 'kind' column of labels 0, 1, 2 placed
    between the features (the label column need not be last)."""
    rng = np.random.default_rng(3)
    y = np.arange(rows) % 3
    x = rng.normal(size=(rows, 3)) + 4.0 * y[:, None]
    path = tmp_path / f"labelled{suffix}"
    if suffix == ".csv":
        cells = zip(x, y, strict=True)
        lines = ["u,kind,v,w"] + [f"{a:.5f},{k},{b:.5f},{c:.5f}" for (a, b, c), k in cells]
        path.write_text("\n".join(lines))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = {"u": x[:, 0], "kind": y, "v": x[:, 1], "w": x[:, 2]}
        pq.write_table(pa.table(table), path)
    return path, y


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_conditional_vae_trains_on_a_tables_label_column(tmp_path, suffix):
    path, y = labelled_table(tmp_path, suffix=suffix)
    out, config = run_train(
        tmp_path, path, "--model", "cvae", "--label-column", "kind", "--no-report"
    )
    assert config["data"]["columns"] == ["u", "v", "w"]  # the labels are not a feature
    assert config["data"]["label_column"] == "kind"
    model = load(out)
    assert model.config.num_classes == 3 and model.data_shape == (3,)
    # New data: the label column is found by name again and conditions the model.
    recon = tmp_path / f"recon{suffix}"
    assert main(["reconstruct", str(out), "--data", str(path), "-o", str(recon)]) == 0
    assert main(["encode", str(out), str(path), "-o", str(tmp_path / "z.npy")]) == 0
    assert np.load(tmp_path / "z.npy").shape == (len(y), 2)
    report = tmp_path / "eval.json"
    evaluate = ["evaluate", str(out), "--data", str(path), "--num-samples", "4", "-o"]
    assert main([*evaluate, str(report)]) == 0
    assert np.isfinite(json.loads(report.read_text())["nll"])


def test_the_label_column_conditions_what_the_model_sees(tmp_path):
    # A run evaluated on the same rows with the labels permuted must give a different
    # log p(x|y): the labels reach the model (and are not silently dropped).
    path, y = labelled_table(tmp_path)
    out, _ = run_train(tmp_path, path, "--model", "cvae", "--label-column", "kind", "--no-report")
    shuffled = tmp_path / "shuffled.csv"
    lines = path.read_text().splitlines()
    rows = [r.split(",") for r in lines[1:]]
    for r, k in zip(rows, np.roll(y, 1), strict=True):
        r[1] = str(k)
    shuffled.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]))
    results = []
    for data in (path, shuffled):
        target = tmp_path / f"{data.stem}.json"
        cmd = ["evaluate", str(out), "--data", str(data), "--num-samples", "8", "--seed", "0"]
        assert main([*cmd, "-o", str(target)]) == 0
        results.append(json.loads(target.read_text())["nll"])
    assert results[0] != results[1]


@pytest.mark.parametrize(
    "table, flag_value, message",
    [
        ("u,kind\n1,0\n2,1\n", "label", r"no column 'label' for --label-column; the columns are"),
        ("u,kind\n1,0\n2,1.5\n", "kind", r"row 2, column 'kind': 1.5 is not a class label"),
        ("u,kind\n1,0\n2,-1\n", "kind", r"row 2, column 'kind': -1 is not a class label"),
        ("kind\n0\n1\n", "kind", r"--label-column 'kind' leaves no feature columns"),
    ],
)
def test_bad_label_columns_are_one_line_errors(tmp_path, capsys, table, flag_value, message):
    path = tmp_path / "t.csv"
    path.write_text(table)
    out = tmp_path / "run"
    code = main(
        ["train", "--data", str(path), "--out", str(out), *TINY, "--label-column", flag_value]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(path) in err[0]
    assert re.search(message, err[0])
    assert not out.exists()


def test_the_label_column_is_refused_for_data_that_is_not_a_table(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.zeros((20, 4), dtype=np.float32))
    for data in (str(tmp_path / "a.npy"), "digits"):
        code = main(["train", "--data", data, "--out", str(tmp_path / "r"), "--label-column", "k"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "--label-column applies to" in err and "\n" not in err
