"""Your own data all the way round, from the CLI and from Python: a table and an image folder
each go train -> evaluate on new data -> encode -> decode -> reconstruct -> score, with every
output in the user's units (tiny data, a few epochs)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.cli import main
from vaekit.codes import decode_array, encode_array, reconstruct_data
from vaekit.data import DataError
from vaekit.evaluate import evaluate_run
from vaekit.score import score_run

TINY = ["--epochs", "3", "--hidden-dims", "16", "--latent-dim", "2", "--batch-size", "16"]
MEAN, STD = np.array([170.0, 70.0, 40.0]), np.array([10.0, 12.0, 15.0])


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def read_csv(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], np.array(rows[1:], dtype=object)


def people(rng, n):
    """[n, 3] correlated height (cm), weight (kg), age (years)."""
    z = rng.normal(size=(n, 1))
    return MEAN + STD * (0.8 * z + 0.6 * rng.normal(size=(n, 3)))


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    train = people(rng, 120)
    (tmp / "train.csv").write_text(
        "height,weight,age\n" + "\n".join(",".join(f"{v:.3f}" for v in r) for r in train)
    )
    new_in, new_out = people(rng, 20), people(rng, 20)
    new_out[:, 0] += 6 * STD[0]  # implausibly tall: out of distribution
    lines = ["id,age,ood,weight,height"]  # other order, an extra column, the labels
    for i, (row, ood) in enumerate([(r, 0) for r in new_in] + [(r, 1) for r in new_out]):
        lines.append(f"{i},{row[2]:.3f},{ood},{row[1]:.3f},{row[0]:.3f}")
    (tmp / "new.csv").write_text("\n".join(lines) + "\n")
    assert main(["train", "--data", str(tmp / "train.csv"), "--out", str(tmp / "run"), *TINY]) == 0
    return tmp


def test_table_all_the_way_round_from_the_cli(table_run, capsys):
    tmp, run = table_run, str(table_run / "run")
    capsys.readouterr()
    eval_json = (tmp / "run" / "eval.json").read_bytes()  # the run's own, from training
    assert (
        main(
            [
                "evaluate",
                run,
                "--data",
                str(tmp / "new.csv"),
                "--num-samples",
                "20",
                "-o",
                str(tmp / "ev.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "in its own units" in out and "nll (model space)" in out
    assert "model space: standardised" in out
    result = json.loads((tmp / "ev.json").read_text())
    train_std = json.loads((tmp / "run" / "config.json").read_text())["data"]["transform"]["std"]
    log_std = float(np.log(train_std).sum())
    assert result["nll"] - result["nll_model_space"] == pytest.approx(log_std, rel=1e-9)
    assert result["num_examples"] == 40
    assert (tmp / "run" / "eval.json").read_bytes() == eval_json  # new data: not overwritten

    assert main(["encode", run, str(tmp / "new.csv"), "-o", str(tmp / "z.csv")]) == 0
    header, codes = read_csv(tmp / "z.csv")
    assert header == ["row", "z1", "z2"] and codes.shape == (40, 3)
    assert codes[:, 0].tolist() == [str(i) for i in range(40)]  # each code's source row

    assert main(["decode", run, str(tmp / "z.csv"), "-o", str(tmp / "dec.csv")]) == 0
    header, decoded = read_csv(tmp / "dec.csv")
    assert header == ["height", "weight", "age"]  # the training table's names and order
    means = decoded.astype(float).mean(0)
    assert np.all(np.abs(means - MEAN) < 3 * STD)  # the table's units, not standardised ~0
    assert abs(means[0] - MEAN[0]) < 40 and means[0] > 100

    assert main(["reconstruct", run, "--data", str(tmp / "new.csv"), "-o", str(tmp / "r.csv")]) == 0
    header, rec = read_csv(tmp / "r.csv")
    assert header == ["height", "weight", "age"] and rec.shape == (40, 3)
    assert float(rec[:, 0].astype(float).min()) > 100  # centimetres

    assert (
        main(
            [
                "score",
                run,
                "--data",
                str(tmp / "new.csv"),
                "-o",
                str(tmp / "s.csv"),
                "--num-samples",
                "20",
                "--remedy",
                "typicality",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "AUROC" in out and "20 out, 20 in" in out and "typicality reference" in out
    header, scores = read_csv(tmp / "s.csv")
    assert header[:3] == ["row", "ood", "nll_nats"] and "typicality_nats" in header
    nll = scores[:, 2].astype(float)
    assert nll[20:].mean() > nll[:20].mean()  # the tall people are less likely

    # the same table in other units (height in metres) is refused, naming file and feature
    text = (tmp / "new.csv").read_text().splitlines()
    rows = [line.split(",") for line in text[1:]]
    metres = [text[0]] + [",".join([*r[:4], f"{float(r[4]) / 100:.4f}"]) for r in rows]
    (tmp / "metres.csv").write_text("\n".join(metres) + "\n")
    assert main(["encode", run, str(tmp / "metres.csv"), "-o", str(tmp / "zz.npy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vaekit: error: {tmp / 'metres.csv'}: feature 1: typical value")
    assert "expected data on the training data's scale" in err and not (tmp / "zz.npy").exists()


def test_table_all_the_way_round_from_python(table_run, capsys):
    tmp, run = table_run, table_run / "run"
    result = evaluate_run(run, data=tmp / "new.csv", num_samples=20, fcd=False)
    assert result["nll_model_space"] < result["nll"]  # std > 1 for every column here
    assert "own units" in result["space"] and math.isfinite(result["nll"])
    encode_array(run, tmp / "new.csv", tmp / "zp.npy")
    decode_array(run, tmp / "zp.npy", tmp / "decp.npy")
    decoded = np.load(tmp / "decp.npy")
    assert decoded.shape == (40, 3) and decoded[:, 0].mean() > 100  # table units
    reconstruct_data(run, tmp / "new.csv", tmp / "rp.parquet" if _has_pyarrow() else tmp / "rp.npy")
    summary = score_run(run, tmp / "new.csv", tmp / "sp.csv", num_samples=20)
    assert set(summary["metrics"]) >= {"nll_nats", "neg_elbo_nats", "recon_sq_error"}
    assert 0.0 <= summary["metrics"]["nll_nats"]["auroc"] <= 1.0
    assert "own units" in summary["space"]
    with pytest.raises(DataError, match=r"missing column\(s\) 'height'"):
        (tmp / "bad.csv").write_text("weight,age\n70,40\n")
        encode_array(run, tmp / "bad.csv", tmp / "never.npy")


def _has_pyarrow():
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _pixels(path):
    with Image.open(path) as image:
        return np.asarray(image)


def stripes(rng, n):
    """[n, 8, 8] uint8 images: bright horizontal stripes on even rows, a little noise."""
    x = np.zeros((n, 8, 8))
    x[:, ::2] = 200
    return np.clip(x + rng.normal(0, 20, (n, 8, 8)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    (tmp / "train").mkdir()
    for i, image in enumerate(stripes(rng, 60)):
        Image.fromarray(image).save(tmp / "train" / f"{i:03d}.png")
    for name, images in (("in", stripes(rng, 8)), ("out", rng.integers(0, 256, (8, 8, 8)))):
        (tmp / "new" / name).mkdir(parents=True)
        for i, image in enumerate(images.astype(np.uint8)):
            Image.fromarray(image).save(tmp / "new" / name / f"{name}{i}.png")
    assert main(["train", "--data", str(tmp / "train"), "--out", str(tmp / "run"), *TINY]) == 0
    return tmp


def test_images_all_the_way_round_from_the_cli(image_run, capsys):
    tmp, run = image_run, str(image_run / "run")
    capsys.readouterr()
    assert main(["evaluate", run, "--data", str(tmp / "new"), "--num-samples", "20"]) == 0
    out = capsys.readouterr().out
    assert "integer levels 0..255" in out and "bits/dim" in out

    assert main(["encode", run, str(tmp / "new"), "-o", str(tmp / "z.npy")]) == 0
    assert np.load(tmp / "z.npy").shape == (16, 2)
    assert main(["decode", run, str(tmp / "z.npy"), "-o", str(tmp / "decoded")]) == 0
    pngs = sorted((tmp / "decoded").iterdir())
    assert len(pngs) == 16
    with Image.open(pngs[0]) as image:
        assert image.mode == "L" and image.size == (8, 8)  # 8-bit greyscale PNG

    assert main(["reconstruct", run, "--data", str(tmp / "new"), "-o", str(tmp / "rec")]) == 0
    assert (tmp / "rec" / "in" / "in0.png").exists() and (tmp / "rec" / "out" / "out7.png").exists()

    assert (
        main(
            [
                "score",
                run,
                "--data",
                str(tmp / "new"),
                "-o",
                str(tmp / "s.csv"),
                "--num-samples",
                "20",
                "--remedy",
                "complexity",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "complexity_corrected_bits" in out and "8 out, 8 in" in out
    header, scores = read_csv(tmp / "s.csv")
    assert header[:3] == ["row", "file", "ood"] and scores[0, 1] == "in/in0.png"

    # the same images scaled to [0, 1] are refused: the model was trained on 8-bit levels
    arrays = np.stack([_pixels(p) for p in sorted((tmp / "new" / "in").iterdir())])
    np.save(tmp / "unit.npy", arrays / 255.0)
    assert main(["encode", run, str(tmp / "unit.npy"), "-o", str(tmp / "never.npy")]) == 2
    err = capsys.readouterr().err
    assert "expected integer levels 0..255 like the training data" in err
    assert "unit.npy" in err and "scaled to [0, 1]" in err


def test_images_all_the_way_round_from_python(image_run):
    tmp, run = image_run, image_run / "run"
    rng = np.random.default_rng(5)
    np.save(tmp / "flat.npy", stripes(rng, 5).reshape(5, 64))  # [N, 64] for a [1, 8, 8] model
    result = evaluate_run(run, data=tmp / "flat.npy", num_samples=20, fcd=False)
    d = 64
    assert result["bits_per_dim"] == pytest.approx(result["nll"] / (d * math.log(2)), rel=1e-9)
    encode_array(run, tmp / "flat.npy", tmp / "zf.npy")
    decode_array(run, tmp / "zf.npy", tmp / "df.npy")
    decoded = np.load(tmp / "df.npy")
    assert decoded.shape == (5, 1, 8, 8) and decoded.max() > 50 and decoded.max() <= 255
    reconstruct_data(run, tmp / "flat.npy", tmp / "rf.npy")
    rec = np.load(tmp / "rf.npy")
    assert rec.shape == (5, 64)  # rows in the input's own shape, on its 0..255 scale
    summary = score_run(run, tmp / "new", tmp / "sf.csv", num_samples=20, remedy="complexity")
    assert summary["metrics"]["complexity_corrected_bits"]["auroc"] >= 0.0


def test_evaluate_says_how_to_use_new_data_when_the_training_file_moved(table_run, capsys):
    tmp = table_run
    (tmp / "train.csv").rename(tmp / "moved.csv")
    try:
        assert main(["evaluate", str(tmp / "run"), "--num-samples", "5"]) == 2
    finally:
        (tmp / "moved.csv").rename(tmp / "train.csv")
    err = capsys.readouterr().err
    assert "train.csv: no such file or folder" in err and "for new data give --data PATH" in err
