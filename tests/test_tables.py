"""Mixed-type tables: the inferred schema, its overrides, bad input as one-line errors naming
file and column, and train -> evaluate through the CLI on a tiny table with missing cells."""

import csv
import json
import math

import numpy as np
import pytest

from vaekit.cli import main
from vaekit.data import DataError, load_dataset
from vaekit.data.table_schema import infer_schema, read_text_table
from vaekit.data.tables import encode, take_label_cells

TINY = ["--epochs", "2", "--hidden-dims", "16", "--latent-dim", "2", "--batch-size", "16"]
TINY += ["--no-report", "--no-tensorboard", "--progress", "plain"]


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def mixed_rows(n=60, seed=0):
    """age (real), income (right-skewed, positive), visits (count), smoker (binary words),
    colour (categorical words), grade (few integers: categorical), with missing cells."""
    rng = np.random.default_rng(seed)
    rows = []
    missing = ["", "NA", "NaN", "null"]
    for i in range(n):
        z = rng.normal()
        row = [
            f"{40 + 10 * z:.1f}",
            f"{np.exp(10 + 0.8 * z + 0.5 * rng.normal()):.2f}",
            str(int(rng.poisson(np.exp(2 + 0.5 * z))) + (30 if i % 9 == 0 else 0)),
            "yes" if z > 0 else "no",
            ["red", "green", "blue"][i % 3],
            str(1 + i % 4),
        ]
        if i % 5 == 1:
            row[i % 6] = missing[i % 4]
        rows.append(row)
    return rows


HEADER = ["age", "income", "visits", "smoker", "colour", "grade"]


@pytest.fixture
def table(tmp_path):
    return write_csv(tmp_path / "people.csv", HEADER, mixed_rows())


def test_inferred_schema(table):
    text = read_text_table(table)
    schema = infer_schema(text)
    kinds = {c.name: c.kind for c in schema}
    assert kinds == {
        "age": "real",
        "income": "positive",
        "visits": "count",
        "smoker": "binary",
        "colour": "categorical",
        "grade": "categorical",
    }
    by_name = {c.name: c for c in schema}
    assert by_name["colour"].categories == ["blue", "green", "red"]
    assert by_name["grade"].categories == ["1", "2", "3", "4"]
    assert by_name["smoker"].categories == ["no", "yes"]
    ages = np.array([float(c) for c in text.cells[0] if c is not None])
    assert by_name["age"].loc == pytest.approx(ages.mean())
    assert by_name["age"].scale == pytest.approx(ages.std())
    # every missing spelling is missing, and only those cells
    missing = sum(c is None for column in text.cells for c in column)
    assert missing == sum(1 for i in range(60) if i % 5 == 1)
    x = encode(text, schema)
    assert x.shape == (60, 1 + 1 + 1 + 1 + 3 + 4 + 6)
    assert x[:, -6:].sum() == 60 * 6 - missing


def test_overrides_and_their_errors(table):
    text = read_text_table(table)
    schema = infer_schema(text, {"grade": "count", "visits": "poisson", "age": "categorical"})
    kinds = {c.name: c.kind for c in schema}
    assert (kinds["grade"], kinds["visits"], kinds["age"]) == ("count", "poisson", "categorical")
    with pytest.raises(DataError, match=r"people\.csv: --column-type names column 'height'"):
        infer_schema(text, {"height": "real"})
    with pytest.raises(DataError, match=r"column 5 \('colour'\): type real: 'red' is not a num"):
        infer_schema(text, {"colour": "real"})
    with pytest.raises(DataError, match=r"--column-type age=interval: unknown type"):
        infer_schema(text, {"age": "interval"})


@pytest.mark.parametrize(
    "header, rows, message",
    [
        (["a", "b"], [["x", ""], ["y", "NA"], ["x", "null"]], r"column 2 \('b'\): every cell"),
        (["a", "b"], [["x", "7"], ["y", "7.0"], ["x", ""]], r"\('b'\): a single observed"),
        (
            ["a", "a"],
            [["x", "x"], ["y", "y"], ["x", ""]],
            r"column 2 repeats the name 'a' of column 1",
        ),
        (
            ["id", "b"],
            [[f"u{i}", str(i % 2)] for i in range(12)],
            r"column 1 \('id'\): fits no type: 12 distinct values",
        ),
    ],
)
def test_bad_tables_name_file_and_column(tmp_path, header, rows, message):
    path = write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(DataError, match=rf"bad\.csv: .*{message}"):
        load_dataset(str(path))


def test_unseen_category_in_new_data(table, tmp_path):
    schema = infer_schema(read_text_table(table))
    rows = mixed_rows(6)
    rows[3][4] = "purple"
    new = write_csv(tmp_path / "new.csv", HEADER, rows)
    with pytest.raises(DataError, match=r"new\.csv: row 5, column 'colour': 'purple' is a categ"):
        encode(read_text_table(new), schema)


def test_clean_numeric_tables_keep_the_numeric_path(tmp_path):
    path = write_csv(tmp_path / "n.csv", ["a", "b"], [[str(i), str(i * i / 3)] for i in range(20)])
    assert load_dataset(str(path)).support == "real"
    typed = load_dataset(str(path), columns={"a": "count"})
    assert typed.support == "table" and [c.kind for c in typed.schema] == ["count", "real"]


def test_train_and_evaluate_a_mixed_table(table, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", str(table), "--out", str(out), *TINY]
    assert main([*args, "--column-type", "grade=count"]) == 0
    printed = capsys.readouterr().out
    assert "income  positive     log-normal" in printed
    assert "grade   count        negative binomial" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["likelihood"] == "tabular"
    assert [c["kind"] for c in config["model"]["columns"]][-1] == "count"
    assert config["config"]["data"]["columns"] == {"grade": "count"}
    assert main(["evaluate", str(out), "--num-samples", "20", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "observed cells of the table" in result["space"]
    assert "bits_per_dim" not in result
    assert result["elbo"] <= -result["nll"] + 3 * result["nll_stderr"]


def test_a_bad_override_writes_no_run(table, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(table), "--out", str(out), "--column-type", "x=real"]) == 2
    assert "people.csv: --column-type names column 'x'" in capsys.readouterr().err
    assert not out.exists()


def test_parquet_nulls_nan_and_strings(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    n = 40
    values = {
        "x": [None if i % 7 == 0 else float("nan") if i % 11 == 0 else i * 0.37 for i in range(n)],
        "k": [None if i % 5 == 0 else i % 3 for i in range(n)],
        "flag": [i % 2 == 0 for i in range(n)],
        "word": [None if i % 6 == 0 else ["ant", "bee", "cat"][i % 3] for i in range(n)],
    }
    pq.write_table(pa.table(values), tmp_path / "t.parquet")
    data = load_dataset(str(tmp_path / "t.parquet"))
    assert data.support == "table"
    kinds = [(c.name, c.kind, c.categories) for c in data.schema]
    assert kinds == [
        ("x", "real", []),
        ("k", "categorical", ["0", "1", "2"]),
        ("flag", "binary", ["false", "true"]),
        ("word", "categorical", ["ant", "bee", "cat"]),
    ]
    text = read_text_table(tmp_path / "t.parquet")
    observed = [sum(c is not None for c in column) for column in text.cells]
    missing_x = sum(1 for i in range(n) if i % 7 == 0 or i % 11 == 0)
    assert observed == [n - missing_x, n - 8, n, n - 7]


def test_toml_columns_table_and_flags_merge(table, tmp_path, capsys):
    from vaekit.config import Config, dump_toml, load_config

    (tmp_path / "c.toml").write_text('[data.columns]\ngrade = "count"\nage = "positive"\n')
    config = load_config(tmp_path / "c.toml")
    assert config.data.columns == {"grade": "count", "age": "positive"}
    assert load_config_text(dump_toml(config), tmp_path) == config
    out = tmp_path / "run"
    args = ["train", "--config", str(tmp_path / "c.toml"), "--data", str(table), "--out", str(out)]
    assert main([*args, *TINY, "--column-type", "age=real"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["data"]["columns"] == {"grade": "count", "age": "real"}
    kinds = {c["name"]: c["kind"] for c in saved["model"]["columns"]}
    assert (kinds["grade"], kinds["age"]) == ("count", "real")
    assert isinstance(Config.from_dict(saved["config"]), Config)


def load_config_text(text, tmp_path):
    from vaekit.config import load_config

    (tmp_path / "dumped.toml").write_text(text)
    return load_config(tmp_path / "dumped.toml")


def test_a_word_label_column_conditions_a_cvae(table, tmp_path, capsys):
    """--label-column on a mixed table: the label's words become classes 0..C-1 (sorted),
    the column leaves the features, and new data's labels are read by the same words."""
    rows = mixed_rows()
    for i, row in enumerate(rows):
        row.append(["tabby", "siamese", "persian"][i % 3])
    path = write_csv(tmp_path / "cats.csv", [*HEADER, "breed"], rows)
    out = tmp_path / "run"
    args = ["train", "--data", str(path), "--out", str(out), "--model", "cvae", *TINY]
    assert main([*args, "--label-column", "breed"]) == 0
    capsys.readouterr()
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["label_classes"] == ["persian", "siamese", "tabby"]
    assert config["model"]["num_classes"] == 3
    assert [c["name"] for c in config["model"]["columns"]] == HEADER
    rest, y, classes = take_label_cells(read_text_table(path), "breed")
    assert rest.names == HEADER and rest.header == HEADER and len(rest.raw[0]) == len(HEADER)
    assert y.tolist() == [classes.index(row[-1]) for row in rows]
    assert main(["evaluate", str(out), "--data", str(path), "--num-samples", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert math.isfinite(result["nll"])
    # score, encode, decode and reconstruct pass the labels to the model
    scores, codes, recon = tmp_path / "s.csv", tmp_path / "z.csv", tmp_path / "r.csv"
    assert (
        main(["score", str(out), "--data", str(path), "--num-samples", "5", "-o", str(scores)]) == 0
    )
    assert "share_colour_nats" in scores.read_text().splitlines()[0].split(",")
    assert main(["encode", str(out), "--data", str(path), "-o", str(codes)]) == 0
    assert main(["decode", str(out), str(codes), "--label", "1", "-o", str(recon)]) == 0
    assert len(recon.read_text().splitlines()) == len(rows) + 1
    assert main(["reconstruct", str(out), "--data", str(path), "-o", str(recon)]) == 0
    assert recon.read_text().splitlines()[0].split(",") == HEADER
    assert main(["impute", str(out), "--data", str(path), "-o", str(tmp_path / "f.csv")]) == 2
    assert "need an unconditional model" in capsys.readouterr().err
    rows[4][-1] = "sphynx"
    bad = write_csv(tmp_path / "bad.csv", [*HEADER, "breed"], rows)
    assert main(["evaluate", str(out), "--data", str(bad), "--num-samples", "5"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv: row 6, column 'breed': 'sphynx' is not a class label the model knows" in err
    rows[4][-1] = ""
    gap = write_csv(tmp_path / "gap.csv", [*HEADER, "breed"], rows)
    with pytest.raises(DataError, match=r"gap.csv: row 6, column 'breed': the class label is"):
        load_dataset(str(gap), label_column="breed")


def test_integers_far_from_zero_are_measurements_not_counts(tmp_path):
    """Integers with more than ten values read as counts only where they reach down to
    within one standard deviation of zero: whole-year ages 40-79 and mg/dL 150-190 are real
    (or positive, skewed), visits 0-30 and bills 1-300 (skewed, from 1) are counts, and a
    bracket code 1-24 leaning left (most rows near 24) is real: no count leans left."""
    rng = np.random.default_rng(0)
    n = 200
    columns = {
        "age": rng.integers(40, 80, n),  # min 40, sd ~ 11.5
        "chol": rng.integers(150, 191, n),  # min 150, sd ~ 12
        "visits": rng.integers(0, 31, n),  # from 0
        "bills": np.minimum(1 + rng.geometric(0.02, n), 300),  # min 1, sd ~ 50
        "skewed": 100 + rng.geometric(0.05, n),  # min ~ 101, sd ~ 20, skewed
        "bracket": 25 - np.minimum(rng.geometric(0.12, n), 24),  # 1-24, leaning left
    }
    path = write_csv(tmp_path / "ints.csv", list(columns), np.stack(list(columns.values()), 1))
    kinds = {c.name: c.kind for c in infer_schema(read_text_table(path))}
    assert kinds == {
        "age": "real",
        "chol": "real",
        "visits": "count",
        "bills": "count",
        "skewed": "positive",
        "bracket": "real",
    }
    # an override still reads such a column as counts
    text = read_text_table(path)
    assert infer_schema(text, {"age": "count"})[0].kind == "count"


def test_few_distinct_numbers_are_categories_even_when_not_integers(tmp_path):
    """Ages coded as bracket midpoints (17.5, 22, 27, 32.5: four values) are categories, as
    integer codes are; eleven distinct non-integers are real."""
    brackets = ["17.5", "22", "27", "32.5"]
    rows = [[brackets[i % 4], f"{0.37 * (i % 11):.2f}"] for i in range(44)]
    path = write_csv(tmp_path / "codes.csv", ["age", "dose"], rows)
    schema = infer_schema(read_text_table(path))
    assert [(c.name, c.kind) for c in schema] == [("age", "categorical"), ("dose", "real")]
    assert schema[0].categories == ["17.5", "22", "27", "32.5"]
