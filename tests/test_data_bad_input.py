"""Each bad input: one clear DataError naming the file (and row/column for tables); from the CLI
a one-line ``vaekit: error:`` and exit status 2."""

import gzip

import numpy as np
import pytest
from PIL import Image

from vaekit.cli import main
from vaekit.data import DataError, load_dataset
from vaekit.data.idx import write_idx


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path}: no PNG or JPEG images found"):
        load_dataset(str(tmp_path))


def test_truncated_image(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ok.png")
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "bad.png")
    blob = (tmp_path / "bad.png").read_bytes()
    (tmp_path / "bad.png").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"bad\.png: unreadable or truncated image"):
        load_dataset(str(tmp_path))


def test_not_an_image(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"hello")
    with pytest.raises(DataError, match=r"x\.jpg: unreadable or truncated image"):
        load_dataset(str(tmp_path))


def test_mixed_sizes_need_image_size(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(
        DataError, match=r"b\.png: image is 9x8 but a\.png is 8x8.*image_size=\[H, W\]"
    ):
        load_dataset(str(tmp_path))
    assert load_dataset(str(tmp_path), image_size=[8, 8]).shape == (1, 8, 8)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a,b\n1,2\n3,nan\n", r"t\.csv: row 3, column 2 \('b'\): 'nan' is not finite"),
        ("a,b\n1,2\ninf,4\n", r"t\.csv: row 3, column 1 \('a'\): 'inf' is not finite"),
        ("a,b\n1,2\n3,x\n", r"t\.csv: row 3, column 2 \('b'\): 'x' is not a number"),
        ("1,2\n3,\n", r"t\.csv: row 2, column 2 \('2'\): '' is not a number"),
        ("a,b\n1,2\n3\n", r"t\.csv: row 3 has 1 columns, expected 2"),
        ("", r"t\.csv: empty CSV file"),
    ],
)
def test_bad_csv(tmp_path, text, match):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        load_dataset(str(tmp_path / "t.csv"))


def test_nan_in_npy_names_row_and_column(tmp_path):
    x = np.zeros((5, 2, 3))
    x[3, 1, 2] = np.inf
    np.save(tmp_path / "a.npy", x)
    with pytest.raises(DataError, match=r"a\.npy: row 4, column 6: inf is not finite"):
        load_dataset(str(tmp_path / "a.npy"))


def test_bad_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, 2.0], "name": ["x", "y"]}), tmp_path / "s.parquet")
    with pytest.raises(DataError, match=r"s\.parquet: column 2 \('name'\): type string is not"):
        load_dataset(str(tmp_path / "s.parquet"))
    pq.write_table(pa.table({"a": [1.0, None, 3.0]}), tmp_path / "n.parquet")
    with pytest.raises(DataError, match=r"n\.parquet: column 1 \('a'\), row 2: missing value"):
        load_dataset(str(tmp_path / "n.parquet"))
    pq.write_table(pa.table({"a": [1.0, 2.0, float("nan")]}), tmp_path / "f.parquet")
    with pytest.raises(DataError, match=r"f\.parquet: column 1 \('a'\), row 3: nan is not finite"):
        load_dataset(str(tmp_path / "f.parquet"))


def test_truncated_idx_in_a_data_dir(tmp_path):
    names = {
        "train-images-idx3-ubyte": np.zeros((60000, 28, 28), np.uint8),
        "train-labels-idx1-ubyte": np.zeros(60000, np.uint8),
        "t10k-images-idx3-ubyte": np.zeros((10000, 28, 28), np.uint8),
        "t10k-labels-idx1-ubyte": np.zeros(10000, np.uint8),
    }
    for name, array in names.items():
        (tmp_path / name).write_bytes(write_idx(array))
    blob = write_idx(names["t10k-labels-idx1-ubyte"])
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(blob[:-100]))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: truncated IDX file"):
        load_dataset("kmnist", data_dir=str(tmp_path))


def test_wrong_data_path_and_unknown_name(tmp_path):
    with pytest.raises(DataError, match=r"dataset .*nope\.npy: no such file or folder"):
        load_dataset(str(tmp_path / "nope.npy"))
    with pytest.raises(DataError, match=r"dataset 'mnistt': not a registered dataset"):
        load_dataset("mnistt")
    (tmp_path / "x.txt").write_text("1")
    with pytest.raises(DataError, match=r"unknown format '\.txt'"):
        load_dataset(str(tmp_path / "x.txt"))


def test_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,oops\n")
    code = main(["train", "--data", str(tmp_path / "t.csv"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        f"vaekit: error: {tmp_path / 't.csv'}: row 3, column 2 ('b'): 'oops' is not a number"
    )
    assert not (tmp_path / "run").exists()  # nothing written for a failed run
    code = main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    assert code == 2 and "no such file or folder" in capsys.readouterr().err


def test_bad_image_size_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--data", str(tmp_path), "--image-size", "abc", "--out", str(tmp_path)])
    assert info.value.code == 2 and "--image-size 'abc': expected HxW" in capsys.readouterr().err
