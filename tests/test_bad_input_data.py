"""Data that vaekit reads and writes is never silently wrong, by category: CSV written and
read with a real CSV writer and reader (vaekit reads back its own tables), repeated column
names, a UTF-8 byte-order mark, every Pillow image mode (16-bit levels scaled, not clipped),
decompression bombs, big-endian arrays, file names that are not UTF-8, the classifier cache's
place, and text embedded in the explorer page's script."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
from vaekit.checkpoint import save_model
from vaekit.cli import main
from vaekit.data import DataError, load_dataset
from vaekit.data.files import read_csv
from vaekit.data.images import image_values
from vaekit.data.new_data import read_codes
from vaekit.data.transforms import Standardize
from vaekit.data.writers import printable, write_table
from vaekit.models import VAE, VAEConfig

ODD_NAMES = ["a,b", 'say "hi"', "two\nlines", "plain"]


def _write_csv(path, header, rows, bom=False):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows([[f"{v:.6g}" for v in row] for row in rows])
    path.write_text(("\ufeff" if bom else "") + buffer.getvalue(), encoding="utf-8")
    return path


def _table_run(tmp_path, columns, name="run"):
    """An untrained model of a table with ``columns``, standardised by (0, 1), saved as a run."""
    d = len(columns)
    config = VAEConfig(
        latent_dim=2, network="mlp", hidden_dims=[4], likelihood="gaussian", data_shape=[d]
    )
    torch.manual_seed(0)
    model = VAE(config)
    model.data_info = {
        "shape": [d],
        "support": "real",
        "num_levels": None,
        "columns": list(columns),
        "transform": Standardize([0.0] * d, [1.0] * d).to_dict(),
    }
    vaekit.save(model, tmp_path / name)
    return tmp_path / name


def _one_line_error(capsys, code, named):
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("vaekit: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and str(named) in err
    return err


# --- CSV: a real writer and reader; vaekit reads back what it writes --------------------------


def test_csv_column_names_with_commas_quotes_and_newlines_are_read(tmp_path):
    rows = np.arange(12.0).reshape(3, 4)
    stored = read_csv(_write_csv(tmp_path / "t.csv", ODD_NAMES, rows))
    assert stored.extra["columns"] == ["a,b", 'say "hi"', "two\nlines", "plain"]
    assert stored.x.tolist() == rows.tolist()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_written_tables_read_back_cell_for_cell(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    values = np.array([[1.5, -2.0, 3.25, 1e-7], [0.0, 7.0, -1.0, 2.0]])
    path = write_table(tmp_path / f"out{suffix}", values, ODD_NAMES)
    stored = vaekit.data.files.FORMATS[suffix](path)
    assert stored.extra["columns"] == ODD_NAMES
    assert stored.x.tolist() == values.tolist()


def test_reconstruct_then_encode_its_own_csv_output(tmp_path):
    run = _table_run(tmp_path, ODD_NAMES)
    rows = np.random.default_rng(0).normal(size=(12, 4))
    data = _write_csv(tmp_path / "new.csv", ODD_NAMES[::-1], rows[:, ::-1])  # any order
    assert main(["reconstruct", str(run), "--data", str(data), "-o", str(tmp_path / "r.csv")]) == 0
    with open(tmp_path / "r.csv", newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ODD_NAMES and len(table) == 13 and all(len(r) == 4 for r in table)
    encode = ["encode", str(run), str(tmp_path / "r.csv"), "-o", str(tmp_path / "z.csv")]
    assert main([*encode, "--trust-scale"]) == 0  # an untrained model's output has no spread
    codes = read_codes(tmp_path / "z.csv", 2)
    assert codes.shape == (12, 2)
    decoded = tmp_path / "d.csv"
    assert main(["decode", str(run), str(tmp_path / "z.csv"), "-o", str(decoded)]) == 0
    assert read_csv(decoded).extra["columns"] == ODD_NAMES


def test_headerless_table_output_reads_back_without_an_extra_row(tmp_path):
    # A model of a table without a header knows its columns as 1..D; a header row "1,2,3"
    # would be read back as a row of data.
    run = _table_run(tmp_path, ["1", "2", "3"])
    rows = np.random.default_rng(1).normal(size=(5, 3))
    data = _write_csv(tmp_path / "new.csv", None, rows)
    assert main(["reconstruct", str(run), "--data", str(data), "-o", str(tmp_path / "r.csv")]) == 0
    again = read_csv(tmp_path / "r.csv")
    assert again.x.shape == (5, 3) and again.extra["columns"] == ["1", "2", "3"]


# --- repeated column names ------------------------------------------------------------------


def test_repeated_csv_column_is_refused_at_training(tmp_path, capsys):
    rows = np.random.default_rng(0).normal(size=(30, 3))
    data = _write_csv(tmp_path / "t.csv", ["a", "a", "b"], rows)
    with pytest.raises(DataError, match=r"t\.csv: column 2 repeats the name 'a' of column 1"):
        load_dataset(str(data))
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1"])
    _one_line_error(capsys, code, data)
    assert not (tmp_path / "run").exists()


def test_repeated_parquet_column_is_refused_and_written_columns_are_kept(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    values = np.random.default_rng(0).normal(size=(30, 3))
    table = pa.table([pa.array(values[:, j]) for j in range(3)], names=["a", "b", "a"])
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"t\.parquet: column 3 repeats the name 'a' of column 1"):
        load_dataset(str(tmp_path / "t.parquet"))
    code = main(["train", "--data", str(tmp_path / "t.parquet"), "--out", str(tmp_path / "run")])
    _one_line_error(capsys, code, tmp_path / "t.parquet")
    # a run of an older version may hold repeated names: its outputs keep every column
    write_table(tmp_path / "o.parquet", values, ["a", "b", "a"])
    back = pq.ParquetFile(tmp_path / "o.parquet").read()
    assert back.column_names == ["a", "b", "a"]
    assert np.array_equal(np.stack([c.to_numpy() for c in back.columns], 1), values)


def test_repeated_column_in_new_data_is_refused(tmp_path, capsys):
    run = _table_run(tmp_path, ["a", "b"])
    data = _write_csv(tmp_path / "n.csv", ["a", "b", "a"], np.zeros((4, 3)))
    code = main(["encode", str(run), str(data), "-o", str(tmp_path / "z.npy")])
    _one_line_error(capsys, code, data)
    assert not (tmp_path / "z.npy").exists()


# --- UTF-8 byte-order mark ------------------------------------------------------------------


def test_bom_headerless_csv_keeps_its_first_row(tmp_path):
    rows = np.arange(10.0).reshape(5, 2) + 1
    stored = read_csv(_write_csv(tmp_path / "t.csv", None, rows, bom=True))
    assert stored.x.tolist() == rows.tolist() and stored.extra["columns"] == ["1", "2"]


def test_bom_does_not_stick_to_the_first_column_name(tmp_path):
    run = _table_run(tmp_path, ["height", "width"])
    data = _write_csv(tmp_path / "t.csv", ["height", "width"], np.ones((3, 2)), bom=True)
    assert read_csv(data).extra["columns"] == ["height", "width"]
    assert main(["encode", str(run), str(data), "-o", str(tmp_path / "z.npy")]) == 0


# --- image modes ------------------------------------------------------------------------------

GREY = np.array([[0, 17, 255], [128, 3, 200]], np.uint8)
RGB = np.stack([GREY, 255 - GREY, np.full_like(GREY, 9)], axis=-1)
OPAQUE = np.full_like(GREY, 255)
LEVELS16 = np.array([[0, 1000, 65535], [257, 40000, 7]], np.uint16)


def _with_alpha(mode, alpha):
    if mode in ("LA", "La"):
        return Image.merge(mode, [Image.fromarray(GREY), Image.fromarray(alpha)])
    bands = [Image.fromarray(RGB[..., i]) for i in range(3)] + [Image.fromarray(alpha)]
    return Image.merge(mode, bands)


def _palette(transparency=None):
    image = Image.fromarray(RGB).quantize(colors=8)  # 6 colours: an exact palette
    if transparency is not None:
        image.info["transparency"] = transparency
    return image


def _sixteen(mode):
    order = ">u2" if mode == "I;16B" else "<u2"
    if mode == "I":
        return Image.fromarray(LEVELS16.astype(np.int32))
    return Image.frombytes(mode, (3, 2), LEVELS16.astype(order).tobytes())


READ_MODES = {  # mode -> (image, the pixels vaekit must read)
    "1": (Image.fromarray(GREY > 100), np.where(GREY > 100, 255, 0)),
    "L": (Image.fromarray(GREY), GREY),
    "LA": (_with_alpha("LA", OPAQUE), GREY),
    "La": (_with_alpha("La", OPAQUE), GREY),
    "P": (_palette(), RGB),
    "PA": (_palette().convert("PA"), RGB),
    "RGB": (Image.fromarray(RGB), RGB),
    "RGBA": (_with_alpha("RGBA", OPAQUE), RGB),
    "RGBa": (_with_alpha("RGBa", OPAQUE), RGB),
    "RGBX": (Image.fromarray(RGB).convert("RGBX"), RGB),
    "CMYK": (Image.new("CMYK", (3, 2), (255, 0, 0, 0)), np.tile([0, 255, 255], (2, 3, 1))),
    "YCbCr": (Image.new("YCbCr", (3, 2), (128, 128, 128)), np.full((2, 3, 3), 128)),
    "HSV": (Image.new("HSV", (3, 2), (0, 255, 255)), np.tile([255, 0, 0], (2, 3, 1))),
    **{m: (_sixteen(m), LEVELS16) for m in ("I;16", "I;16L", "I;16B", "I;16N", "I")},
}
REFUSED_MODES = {  # mode -> (image, what the one-line error says)
    "LA": (_with_alpha("LA", GREY), "transparent pixels"),
    "RGBA": (_with_alpha("RGBA", GREY), "transparent pixels"),
    "PA": (_with_alpha("RGBA", GREY).convert("PA"), "transparent pixels"),
    "P": (_palette(transparency=0), "transparent pixels"),
    "LAB": (Image.new("LAB", (3, 2)), "mode LAB is not supported"),
    "F": (Image.new("F", (3, 2), 0.5), "mode F is not supported.*npy"),
    "I": (Image.fromarray(np.array([[-1, 70000]], np.int32)), r"span -1\.\.70000"),
}


@pytest.mark.parametrize("mode", list(READ_MODES))
def test_every_mode_is_read_on_purpose(tmp_path, mode):
    image, expected = READ_MODES[mode]
    assert image.mode == mode
    values = image_values(tmp_path / "a.png", image)
    wide = mode.startswith("I")
    assert values.dtype == (np.uint16 if wide else np.uint8)
    assert values.tolist() == np.asarray(expected).tolist()


@pytest.mark.parametrize("mode", list(REFUSED_MODES))
def test_modes_that_cannot_be_read_exactly_are_refused(tmp_path, mode):
    image, message = REFUSED_MODES[mode]
    assert image.mode == mode
    with pytest.raises(DataError, match=f"a\\.png: .*{message}"):
        image_values(tmp_path / "a.png", image)


def _png16(path, levels):
    Image.frombytes("I;16", levels.shape[::-1], levels.astype("<u2").tobytes()).save(path)


def test_sixteen_bit_pngs_are_levels_0_to_65535_not_clipped(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 65536, size=(10, 4, 5), dtype=np.uint16)
    (tmp_path / "imgs").mkdir()
    for i, levels in enumerate(images):
        _png16(tmp_path / "imgs" / f"{i}.png", levels)
    with Image.open(tmp_path / "imgs" / "0.png") as image:
        assert image.mode == "I;16"
    dataset = load_dataset(str(tmp_path / "imgs"))
    stored = torch.cat([dataset.train.x, dataset.val.x, dataset.test.x])
    assert sorted(map(tuple, stored.reshape(10, -1).tolist())) == sorted(
        map(tuple, images.reshape(10, -1).tolist())
    )
    assert dataset.transform.to_dict() == {"kind": "dequantize", "levels": 65536}
    assert dataset.num_levels == 65536 and dataset.shape == (1, 4, 5)
    x = dataset.transform(dataset.train.x, torch.Generator().manual_seed(0))
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0  # v / 65536 + noise, in [0, 1]


def test_eight_bit_images_among_sixteen_bit_ones_are_scaled_by_257(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.fromarray(GREY).save(tmp_path / "imgs" / "a.png")
    _png16(tmp_path / "imgs" / "b.png", LEVELS16)
    for i in range(8):
        _png16(tmp_path / "imgs" / f"c{i}.png", LEVELS16)
    dataset = load_dataset(str(tmp_path / "imgs"))
    stored = torch.cat([dataset.train.x, dataset.val.x, dataset.test.x]).reshape(10, -1)
    assert (GREY.astype(np.int64) * 257).reshape(-1).tolist() in stored.tolist()


def test_sixteen_bit_grey_with_colour_images_is_refused(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.fromarray(RGB).save(tmp_path / "imgs" / "a.png")
    _png16(tmp_path / "imgs" / "b.png", LEVELS16)
    with pytest.raises(DataError, match=r"b\.png: a 16-bit grey image .*colour images \(a\.png\)"):
        load_dataset(str(tmp_path / "imgs"))


def test_eight_bit_images_for_a_sixteen_bit_model_are_refused(tmp_path, capsys):
    (tmp_path / "deep").mkdir()
    (tmp_path / "flat").mkdir()
    for i in range(10):
        _png16(tmp_path / "deep" / f"{i}.png", LEVELS16)
        Image.fromarray(GREY).save(tmp_path / "flat" / f"{i}.png")
    info = load_dataset(str(tmp_path / "deep")).info()
    config = VAEConfig(
        latent_dim=2, network="mlp", hidden_dims=[4], likelihood="gaussian", data_shape=[1, 2, 3]
    )
    save_model(VAE(config), tmp_path / "run", data=info)
    out = tmp_path / "z.npy"
    assert main(["encode", str(tmp_path / "run"), str(tmp_path / "deep"), "-o", str(out)]) == 0
    code = main(["encode", str(tmp_path / "run"), str(tmp_path / "flat"), "-o", str(out) + "2"])
    err = _one_line_error(capsys, code, tmp_path / "flat")
    assert "levels 0..255; the model was trained on levels 0..65535" in err


def test_transparent_png_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    for i in range(10):
        Image.fromarray(GREY).save(tmp_path / "imgs" / f"{i}.png")
    _with_alpha("RGBA", GREY).save(tmp_path / "imgs" / "see-through.png")
    code = main(["train", "--data", str(tmp_path / "imgs"), "--out", str(tmp_path / "run")])
    err = _one_line_error(capsys, code, tmp_path / "imgs" / "see-through.png")
    assert "transparent pixels (mode RGBA)" in err


# --- decompression bombs --------------------------------------------------------------------


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims ``width`` x ``height`` grey pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b""))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + idat + chunk(b"IEND", b"")


def test_png_claiming_20000_by_20000_pixels_is_one_line(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "bomb.png").write_bytes(_png_claiming(20000, 20000))
    assert len((tmp_path / "imgs" / "bomb.png").read_bytes()) < 100
    with pytest.raises(DataError, match=r"bomb\.png: image claims more pixels than"):
        load_dataset(str(tmp_path / "imgs"))
    code = main(["train", "--data", str(tmp_path / "imgs"), "--out", str(tmp_path / "run")])
    _one_line_error(capsys, code, tmp_path / "imgs" / "bomb.png")
    assert not (tmp_path / "run").exists()


def test_image_over_the_warning_limit_is_refused_too(tmp_path, monkeypatch):
    # Pillow only warns between its limit and twice it; that warning is an error here
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "imgs" / "big.png")
    with pytest.raises(DataError, match=r"big\.png: image claims more pixels than .* 100"):
        load_dataset(str(tmp_path / "imgs"))


# --- big-endian arrays ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">i2", ">u2"])
@pytest.mark.parametrize("in_memory", [True, False])
def test_big_endian_npy_reads_like_native(tmp_path, dtype, in_memory):
    values = np.random.default_rng(0).integers(0, 300, size=(40, 3)).astype(dtype)
    np.save(tmp_path / "big.npy", values)
    np.save(tmp_path / "native.npy", values.astype(values.dtype.newbyteorder("=")))
    big = load_dataset(str(tmp_path / "big.npy"), in_memory=in_memory)
    native = load_dataset(str(tmp_path / "native.npy"), in_memory=in_memory)
    assert ("streamed" in big.description) == (not in_memory)
    for split in ("train", "val", "test"):
        assert torch.equal(big.split(split).x, native.split(split).x)
    assert big.transform.to_dict() == native.transform.to_dict()
    generator = torch.Generator().manual_seed(0)
    (batch, _), *_ = big.batches("train", 8, True, generator)
    (expected, _), *_ = native.batches("train", 8, True, torch.Generator().manual_seed(0))
    assert torch.equal(batch, expected)


def test_big_endian_npz_labels_and_codes(tmp_path):
    x = np.random.default_rng(0).normal(size=(30, 2)).astype(">f8")
    y = (np.arange(30) % 3).astype(">i8")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    dataset = load_dataset(str(tmp_path / "d.npz"))
    labels = torch.cat([dataset.train.y, dataset.val.y, dataset.test.y])
    assert sorted(labels.tolist()) == sorted(y.tolist())
    np.save(tmp_path / "z.npy", x.astype(">f4"))
    assert read_codes(tmp_path / "z.npy", 2).tolist() == x.astype("<f4").tolist()
    run = _table_run(tmp_path, ["a", "b"])
    assert main(["decode", str(run), str(tmp_path / "z.npy"), "-o", str(tmp_path / "d.npy")]) == 0
    assert main(["encode", str(run), str(tmp_path / "z.npy"), "-o", str(tmp_path / "e.npy")]) == 0
    assert np.load(tmp_path / "e.npy").shape == (30, 2)


# --- file names that are not UTF-8 -------------------------------------------------------------


def test_printable_escapes_only_bytes_that_are_not_utf8():
    assert printable(os.fsdecode(b"\xff-\xc3\xa9.png")) == "\\xff-\u00e9.png"
    assert printable("caf\u00e9 a,b.png") == "caf\u00e9 a,b.png"


def test_score_writes_names_that_are_not_utf8(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = [os.fsdecode(b"\xff.png"), 'a,"b\nc.png'] + [f"{i}.png" for i in range(8)]
    for i, name in enumerate(names):
        Image.fromarray(np.full((2, 3), 20 * i, np.uint8)).save(folder / name)
    info = load_dataset(str(folder)).info()
    config = VAEConfig(
        latent_dim=2, network="mlp", hidden_dims=[4], likelihood="gaussian", data_shape=[1, 2, 3]
    )
    save_model(VAE(config), tmp_path / "run", data=info)
    out = tmp_path / "s.csv"
    argv = ["score", str(tmp_path / "run"), "--data", str(folder), "-o", str(out)]
    assert main([*argv, "--num-samples", "2"]) == 0, capsys.readouterr().err
    with open(out, newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    assert table[0][:2] == ["row", "file"] and len(table) == 11
    files = [row[1] for row in table[1:]]
    assert sorted(files) == sorted(["\\xff.png", 'a,"b\nc.png', *names[2:]])
    assert all(len(row) == len(table[0]) for row in table)


# --- the Fréchet-distance classifier's cache --------------------------------------------------


@pytest.fixture
def labelled_npz(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data"
    folder.mkdir()
    np.savez(folder / "d.npz", x=rng.normal(size=(40, 4)), y=np.arange(40) % 2)
    return folder / "d.npz"


@pytest.mark.parametrize("variable", ["VAEKIT_CACHE_DIR", "XDG_CACHE_HOME"])
def test_classifier_cache_lives_in_the_cache_never_beside_the_data(
    tmp_path, monkeypatch, labelled_npz, variable
):
    from vaekit import feature_net

    monkeypatch.setitem(feature_net.RECIPE, "steps", 3)
    monkeypatch.delenv("VAEKIT_CACHE_DIR", raising=False)
    monkeypatch.setenv(variable, str(tmp_path / "cache"))
    before = sorted(labelled_npz.parent.iterdir())
    folder_mode = labelled_npz.parent.stat().st_mode
    labelled_npz.parent.chmod(0o555)  # a read-only data mount
    try:
        dataset = load_dataset(str(labelled_npz))
        _, meta = feature_net.load_or_train(dataset)
        _, again = feature_net.load_or_train(dataset)  # read back from the cache
    finally:
        labelled_npz.parent.chmod(folder_mode)
    assert sorted(labelled_npz.parent.iterdir()) == before
    root = tmp_path / "cache" / ("" if variable == "VAEKIT_CACHE_DIR" else "vaekit")
    cached = sorted(p.name for p in (root / "feature-nets").iterdir())
    assert cached == [f"{meta['key']}.json", f"{meta['key']}.safetensors"]
    assert meta["key"].startswith("d.npz-") and again == meta


# --- the explorer page's embedded JSON --------------------------------------------------------


def test_explorer_page_survives_hostile_column_names(tmp_path):
    from helpers import tiny
    from vaekit.config import to_dict
    from vaekit.explore import build_explorer
    from vaekit.training import train

    columns = ["<!--<script>", "</script>", "a&b>c"]
    rows = np.random.default_rng(0).normal(size=(40, 3))
    data = _write_csv(tmp_path / "t.csv", columns, rows)
    config = tiny(f"data.name={data}", "model.latent_dim=2", "train.max_steps=1")
    model = train(config, log=lambda _line: None).model
    dataset = load_dataset(str(data))
    save_model(model, tmp_path / "run", data=dataset.info(), config=to_dict(config))
    page, _ = build_explorer(tmp_path / "run")
    start = page.index("const DATA = ") + len("const DATA = ")
    end = page.index(";\n</script>", start)
    payload = page[start:end]
    assert "<" not in payload and ">" not in payload and "&" not in payload
    assert "</script" not in page[start:end] and "<!--" not in page
    embedded = json.loads(payload)

    def strings(value):
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []

    assert set(columns) <= set(strings(embedded))


def test_sixteen_bit_levels_survive_resizing(tmp_path):
    (tmp_path / "imgs").mkdir()
    for i in range(10):
        _png16(tmp_path / "imgs" / f"{i}.png", np.full((6, 8), 40000 + i, np.uint16))
    dataset = load_dataset(str(tmp_path / "imgs"), image_size=[3, 4])
    stored = torch.cat([dataset.train.x, dataset.val.x, dataset.test.x])
    assert dataset.shape == (1, 3, 4)
    assert sorted(set(stored.reshape(-1).tolist())) == list(range(40000, 40010))


def test_exif_orientation_is_applied(tmp_path):
    (tmp_path / "imgs").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned 90 degrees clockwise
    for i in range(10):
        Image.fromarray(np.full((2, 3), 10 * i, np.uint8)).save(
            tmp_path / "imgs" / f"{i}.jpg", exif=exif
        )
    assert load_dataset(str(tmp_path / "imgs")).shape == (1, 3, 2)
