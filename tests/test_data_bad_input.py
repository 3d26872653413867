"""Each bad input: one clear DataError naming the file (and row/column for tables); from the CLI
a one-line ``vaekit: error:`` and exit status 2."""

import gzip
import hashlib

import numpy as np
import pytest
from PIL import Image

import vaekit
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
    for i in range(8):  # enough images to split into train, validation and test
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / f"c{i}.png")
    with pytest.raises(
        DataError, match=r"b\.png: image is 9x8 but a\.png is 8x8.*image_size=\[H, W\]"
    ):
        load_dataset(str(tmp_path))
    assert load_dataset(str(tmp_path), image_size=[8, 8]).shape == (1, 8, 8)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        # words and missing cells make a mixed-type table (test_tables.py); these stay errors
        ("a,b\n1,2\n3,nan\n", r"t\.csv: column 2 \('b'\): a single observed value \('2'\)"),
        ("a,b\n1,2\ninf,4\n", r"t\.csv: row 3, column 1 \('a'\): 'inf' is not finite"),
        ("1,2\n3,\n", r"t\.csv: column 2 \('2'\): a single observed value"),
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

    # strings, nulls and NaN make a mixed-type table (test_tables.py); these stay errors
    pq.write_table(
        pa.table({"a": [1.0, 2.0, 4.0], "name": ["x", None, "x"]}), tmp_path / "s.parquet"
    )
    with pytest.raises(DataError, match=r"s\.parquet: column 2 \('name'\): a single observed"):
        load_dataset(str(tmp_path / "s.parquet"))
    pq.write_table(pa.table({"a": [1.0, None, 3.0], "b": [None] * 3}), tmp_path / "n.parquet")
    with pytest.raises(DataError, match=r"n\.parquet: column 2 \('b'\): every cell is missing"):
        load_dataset(str(tmp_path / "n.parquet"))
    pq.write_table(pa.table({"a": [1.0, 2.0, float("inf")]}), tmp_path / "f.parquet")
    with pytest.raises(DataError, match=r"f\.parquet: row 3, column 1 \('a'\): 'inf' is not"):
        load_dataset(str(tmp_path / "f.parquet"))


def _kmnist_folder(tmp_path, monkeypatch, arrays):
    """KMNIST-named .gz files in ``tmp_path`` whose MD5s are made the published ones, so the
    structural checks behind the checksum are what is tested."""
    from vaekit.data import builtin as builtin_module

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for key, (stem, _, _) in builtin_module.IDX_FILES.items():
        blob = arrays[stem] if isinstance(arrays[stem], bytes) else write_idx(arrays[stem])
        gz = blob if blob == b"" else gzip.compress(blob)
        (tmp_path / f"{stem}.gz").write_bytes(gz)
        monkeypatch.setitem(builtin_module.KMNIST.file_md5, key, hashlib.md5(gz).hexdigest())


IDX_SET = {
    "train-images-idx3-ubyte": np.zeros((60000, 28, 28), np.uint8),
    "train-labels-idx1-ubyte": np.zeros(60000, np.uint8),
    "t10k-images-idx3-ubyte": np.zeros((10000, 28, 28), np.uint8),
    "t10k-labels-idx1-ubyte": np.zeros(10000, np.uint8),
}


def test_truncated_idx_in_a_data_dir(tmp_path, monkeypatch):
    arrays = dict(IDX_SET)
    arrays["t10k-labels-idx1-ubyte"] = write_idx(IDX_SET["t10k-labels-idx1-ubyte"])[:-100]
    _kmnist_folder(tmp_path, monkeypatch, arrays)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: truncated IDX file"):
        load_dataset("kmnist", data_dir=str(tmp_path))


# --- the corpus: every format x {empty file, header without rows, too few rows to split} ------
#
# Each case writes its bad input under tmp_path and returns (the --data argument, the file the
# message must name, a regex the message must match).


def _parquet(path, columns):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)


def _images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((4, 4), 10 * i, np.uint8)).save(folder / f"{i}.png")


def empty_npy(tmp):
    (tmp / "e.npy").write_bytes(b"")
    return tmp / "e.npy", tmp / "e.npy", "empty file"


def empty_npz(tmp):
    (tmp / "e.npz").write_bytes(b"")
    return tmp / "e.npz", tmp / "e.npz", "empty file"


def empty_csv(tmp):
    (tmp / "e.csv").write_text("")
    return tmp / "e.csv", tmp / "e.csv", "empty CSV file"


def empty_parquet(tmp):
    (tmp / "e.parquet").write_bytes(b"")
    return tmp / "e.parquet", tmp / "e.parquet", "not a readable Parquet file"


def empty_image_file(tmp):
    (tmp / "imgs").mkdir()
    (tmp / "imgs" / "a.png").write_bytes(b"")
    return tmp / "imgs", tmp / "imgs" / "a.png", "unreadable or truncated image"


def empty_image_folder(tmp):
    (tmp / "imgs").mkdir()
    return tmp / "imgs", tmp / "imgs", "no PNG or JPEG images found"


def header_npy(tmp):
    np.save(tmp / "h.npy", np.zeros((0, 3)))
    return tmp / "h.npy", tmp / "h.npy", r"N >= 1 rows, got shape \[0, 3\]"


def header_npz(tmp):
    np.savez(tmp / "h.npz", x=np.zeros((0, 3)))
    return tmp / "h.npz", tmp / "h.npz", r"N >= 1 rows, got shape \[0, 3\]"


def header_npy_no_columns(tmp):
    np.save(tmp / "h0.npy", np.zeros((5, 0)))
    return tmp / "h0.npy", tmp / "h0.npy", "rows hold no values"


def header_csv(tmp):
    (tmp / "h.csv").write_text("a,b,c\n")
    return tmp / "h.csv", tmp / "h.csv", "has a header but no data rows"


def header_parquet(tmp):
    _parquet(tmp / "h.parquet", {"a": np.zeros(0), "b": np.zeros(0)})
    return tmp / "h.parquet", tmp / "h.parquet", "has columns but no rows"


def header_image_folder(tmp):
    (tmp / "imgs" / "cats").mkdir(parents=True)  # class folders, no images in them
    (tmp / "imgs" / "dogs").mkdir()
    return tmp / "imgs", tmp / "imgs", "no PNG or JPEG images found"


SMALL = r"too few to split into train, validation and test"


def small_npy(tmp):
    np.save(tmp / "s.npy", np.arange(6.0).reshape(2, 3))
    return tmp / "s.npy", tmp / "s.npy", "2 rows are " + SMALL


def small_npz(tmp):
    np.savez(tmp / "s.npz", x=np.arange(6.0).reshape(2, 3))
    return tmp / "s.npz", tmp / "s.npz", "2 rows are " + SMALL


def small_csv(tmp):
    (tmp / "s.csv").write_text("a,b\n1,2\n")  # one row: it used to train and save a model
    return tmp / "s.csv", tmp / "s.csv", "1 rows are " + SMALL


def small_parquet(tmp):
    _parquet(tmp / "s.parquet", {"a": np.arange(6.0), "b": np.ones(6)})
    return tmp / "s.parquet", tmp / "s.parquet", "6 rows are " + SMALL + r" \(the val split"


def small_image_folder(tmp):
    _images(tmp / "imgs", 3)
    return tmp / "imgs", tmp / "imgs", "3 rows are " + SMALL


CORPUS = {
    "empty file": [
        empty_npy,
        empty_npz,
        empty_csv,
        empty_parquet,
        empty_image_file,
        empty_image_folder,
    ],
    "header without rows": [
        header_npy,
        header_npz,
        header_npy_no_columns,
        header_csv,
        header_parquet,
        header_image_folder,
    ],
    "too small to split": [small_npy, small_npz, small_csv, small_parquet, small_image_folder],
}
CASES = [
    pytest.param(make, id=f"{category}: {make.__name__}")
    for category, makers in CORPUS.items()
    for make in makers
]


@pytest.mark.parametrize("make", CASES)
def test_corpus_one_line_naming_the_file_and_no_run(tmp_path, capsys, make):
    data, named, message = make(tmp_path)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(str(data))
    assert str(named) in str(info.value) and "\n" not in str(info.value)
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("vaekit: error: ") and str(named) in err
    assert not (tmp_path / "run").exists()  # nothing that looks like a run


def empty_idx(tmp, monkeypatch):
    arrays = dict(IDX_SET)
    arrays["t10k-images-idx3-ubyte"] = b""
    _kmnist_folder(tmp, monkeypatch, arrays)
    return tmp / "t10k-images-idx3-ubyte.gz", r"not an IDX file \(bad magic number empty\)"


def header_idx(tmp, monkeypatch):
    arrays = dict(IDX_SET)
    arrays["t10k-images-idx3-ubyte"] = np.zeros((0, 28, 28), np.uint8)
    _kmnist_folder(tmp, monkeypatch, arrays)
    return tmp / "t10k-images-idx3-ubyte.gz", r"expected shape \[10000, 28, 28\], IDX header"


def small_idx(tmp, monkeypatch):
    arrays = dict(IDX_SET)
    arrays["train-labels-idx1-ubyte"] = np.zeros(2, np.uint8)
    _kmnist_folder(tmp, monkeypatch, arrays)
    return tmp / "train-labels-idx1-ubyte.gz", r"expected shape \[60000\], IDX header says \[2\]"


@pytest.mark.parametrize("make", [empty_idx, header_idx, small_idx])
def test_corpus_idx_in_a_data_dir(tmp_path, monkeypatch, capsys, make):
    named, message = make(tmp_path, monkeypatch)
    with pytest.raises(DataError, match=message) as info:
        load_dataset("kmnist", data_dir=str(tmp_path), progress=False)
    assert str(named) in str(info.value)
    code = main(
        ["train", "--data", "kmnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(named) in err
    assert not (tmp_path / "run").exists()


@pytest.fixture
def table_model(tmp_path):
    """An untrained model of a 3-column table, saved as a run (its config records the
    columns and the standardisation)."""
    from vaekit.data.transforms import Standardize
    from vaekit.models import VAE, VAEConfig

    config = VAEConfig(
        latent_dim=2, network="mlp", hidden_dims=[4], likelihood="gaussian", data_shape=[3]
    )
    model = VAE(config)
    model.data_info = {
        "shape": [3],
        "support": "real",
        "num_levels": None,
        "columns": ["a", "b", "c"],
        "transform": Standardize([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]).to_dict(),
    }
    vaekit.save(model, tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize(
    "make",
    [
        empty_npy,
        empty_npz,
        empty_csv,
        empty_parquet,
        header_npy,
        header_npz,
        header_csv,
        header_parquet,
    ],
)
@pytest.mark.parametrize("command", ["encode", "reconstruct", "evaluate", "score"])
def test_corpus_new_data_for_every_command(tmp_path, table_model, capsys, make, command):
    data, named, _ = make(tmp_path)
    out = tmp_path / "out.npy"
    argv = {
        "encode": ["encode", str(table_model), str(data), "-o", str(out)],
        "reconstruct": ["reconstruct", str(table_model), "--data", str(data), "-o", str(out)],
        "evaluate": ["evaluate", str(table_model), "--data", str(data), "-o", str(out)],
        "score": ["score", str(table_model), "--data", str(data), "-o", str(tmp_path / "s.csv")],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vaekit: error: ") and str(named) in err
    assert not out.exists() and not (tmp_path / "s.csv").exists()


def test_wrong_data_path_and_unknown_name(tmp_path):
    with pytest.raises(DataError, match=r"dataset .*nope\.npy: no such file or folder"):
        load_dataset(str(tmp_path / "nope.npy"))
    with pytest.raises(DataError, match=r"dataset 'mnistt': not a registered dataset"):
        load_dataset("mnistt")
    (tmp_path / "x.txt").write_text("1")
    with pytest.raises(DataError, match=r"unknown format '\.txt'"):
        load_dataset(str(tmp_path / "x.txt"))


def test_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,oops\n5,yes\n")
    code = main(["train", "--data", str(tmp_path / "t.csv"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        f"vaekit: error: {tmp_path / 't.csv'}: column 2 ('b'): fits no type: 3 distinct values "
        "in 3 cells, and words such as 'oops' (categories need at most 2; free text or an "
        "identifier? leave the column out)"
    )
    assert not (tmp_path / "run").exists()  # nothing written for a failed run
    code = main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    assert code == 2 and "no such file or folder" in capsys.readouterr().err


def test_bad_image_size_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--data", str(tmp_path), "--image-size", "abc", "--out", str(tmp_path)])
    assert info.value.code == 2 and "--image-size 'abc': expected HxW" in capsys.readouterr().err
