"""Class names travel: an image folder's sub-folders and the built-in sets' classes name the
latent map's legend, the explorer's points and each row of `encode`'s table; and the run-level
helpers take one argument order."""

from __future__ import annotations

import csv
import inspect

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.checkpoint import read_descriptor
from vaekit.cli import main
from vaekit.codes import decode_array, encode_array, reconstruct_data
from vaekit.data import builtin, load_dataset
from vaekit.evaluate import evaluate_run
from vaekit.explore import build_explorer
from vaekit.report import latent_plots
from vaekit.report.figures import latent_map_run
from vaekit.report.plots import class_names
from vaekit.score import score_run

TINY = ["--epochs", "2", "--hidden-dims", "16", "--latent-dim", "2", "--batch-size", "16"]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A tiny VAE on a folder of 8x8 images in class sub-folders cat/ and dog/."""
    tmp = tmp_path_factory.mktemp("classes")
    rng = np.random.default_rng(0)
    stripes = np.zeros((12, 8, 8), dtype=np.uint8)
    stripes[:, ::2] = 200
    for name, images in (("cat", stripes), ("dog", rng.integers(0, 256, (12, 8, 8)))):
        (tmp / "train" / name).mkdir(parents=True)
        for i, image in enumerate(images.astype(np.uint8)):
            Image.fromarray(image).save(tmp / "train" / name / f"{name}{i:02d}.png")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    args = ["train", "--data", str(tmp / "train"), "--out", str(tmp / "run"), "--no-report"]
    assert main([*args, *TINY]) == 0
    torch.set_num_threads(threads)
    return tmp


def test_the_latent_map_legend_names_the_folders(folder_run, monkeypatch):
    assert read_descriptor(folder_run / "run")["data"]["classes"] == ["cat", "dog"]
    legends = []
    save = latent_plots.save_figure

    def keep_legend(fig, path):
        legend = fig.axes[0].get_legend()
        legends.append((legend.get_title().get_text(), [t.get_text() for t in legend.texts]))
        return save(fig, path)

    monkeypatch.setattr(latent_plots, "save_figure", keep_legend)
    latent_map_run(folder_run / "run", folder_run / "map.png", split="train")
    assert legends == [("class", ["cat", "dog"])]


def test_the_explorer_gets_the_class_names(folder_run):
    page, data = build_explorer(folder_run / "run")
    assert data["points"]["class_names"] == ["cat", "dog"]
    assert "className(P.labels[i])" in page  # the page shows names, not numbers


def test_encode_names_each_rows_file_and_decode_reads_the_table_back(folder_run):
    run, folder = folder_run / "run", folder_run / "train"
    encode_array(run, folder, folder_run / "z.csv")
    with open(folder_run / "z.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["row", "file", "z1", "z2"]
    assert [r[:2] for r in rows[1:3]] == [["0", "cat/cat00.png"], ["1", "cat/cat01.png"]]
    assert rows[13][1] == "dog/dog00.png" and len(rows) == 25
    encode_array(run, folder, folder_run / "z.npy")
    z = np.load(folder_run / "z.npy")
    np.testing.assert_allclose(np.array([r[2:] for r in rows[1:]], dtype=float), z, rtol=1e-6)
    decode_array(run, folder_run / "z.csv", folder_run / "from_csv.npy")
    decode_array(run, folder_run / "z.npy", folder_run / "from_npy.npy")
    np.testing.assert_allclose(
        np.load(folder_run / "from_csv.npy"), np.load(folder_run / "from_npy.npy"), atol=1e-4
    )


def test_encode_a_parquet_table_of_codes_with_its_files(folder_run):
    pq = pytest.importorskip("pyarrow.parquet")
    run, folder = folder_run / "run", folder_run / "train"
    encode_array(run, folder, folder_run / "z.parquet")
    table = pq.read_table(folder_run / "z.parquet")
    assert table.column_names == ["row", "file", "z1", "z2"]
    assert table.column("file").to_pylist()[0] == "cat/cat00.png"
    decode_array(run, folder_run / "z.parquet", folder_run / "from_parquet.npy")
    assert np.load(folder_run / "from_parquet.npy").shape == (24, 1, 8, 8)


def test_old_keyword_names_still_work_with_a_deprecation_warning(folder_run):
    run, folder = folder_run / "run", folder_run / "train"
    with pytest.warns(DeprecationWarning) as caught:
        encode_array(run, input_path=folder, output_path=folder_run / "old.npy")
    assert [str(w.message) for w in caught] == [
        "encode_array(): the keyword 'input_path' is now 'data'",
        "encode_array(): the keyword 'output_path' is now 'output'",
    ]
    encode_array(run, folder, folder_run / "new.npy")
    np.testing.assert_array_equal(np.load(folder_run / "old.npy"), np.load(folder_run / "new.npy"))
    with pytest.raises(TypeError, match="'input_path' is the old name of 'data'"):
        encode_array(run, data=folder, input_path=folder, output=folder_run / "x.npy")


def test_run_level_helpers_share_one_argument_order():
    for helper in (evaluate_run, score_run, encode_array, reconstruct_data):
        assert list(inspect.signature(helper).parameters)[:3] == ["run", "data", "output"]
    assert list(inspect.signature(decode_array).parameters)[:3] == ["run", "codes", "output"]


def test_class_names_fall_back_to_numbers():
    assert class_names({"classes": ["a", "b"]}, 3) == ["a", "b", "2"]
    assert class_names(None, 2) == ["0", "1"]


def test_built_in_sets_carry_their_class_names():
    assert builtin.FASHION_MNIST.classes[0] == "T-shirt/top"
    assert builtin.FASHION_MNIST.classes[9] == "Ankle boot"
    assert builtin.CIFAR10.classes[1] == "automobile"
    assert builtin.MNIST.classes == tuple("0123456789")
    assert load_dataset("digits").info()["classes"] == list("0123456789")
