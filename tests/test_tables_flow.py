"""The whole path of a mixed table with missing cells, from the command line and from the
Python API: train -> evaluate --data -> impute -> sample -> score -> encode/decode/reconstruct
-> report -> explore, every output in the table's own types (category names stay names,
counts integers, observed cells untouched); and bad tables refused in one line."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from test_tables import HEADER, TINY, mixed_rows, write_csv
from vaekit.cli import main

pd = pytest.importorskip("pandas")

CATEGORIES = {"smoker": {"no", "yes"}, "colour": {"blue", "green", "red", "violet"}}
GRADES = {"1", "2", "3", "4"}


def read_rows(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def check_typed(header, rows, blanks_allowed=False):
    """Every cell in its column's type: age and income numbers, visits an integer >= 0,
    smoker, colour and grade one of the training table's category texts."""
    where = {name: j for j, name in enumerate(header)}
    for row in rows:
        cells = {name: row[where[name]] for name in HEADER if name in where}
        if blanks_allowed and "" in cells.values():
            continue
        float(cells["age"]), float(cells["income"])
        assert cells["visits"].isdigit(), cells["visits"]
        assert cells["smoker"] in CATEGORIES["smoker"]
        assert cells["colour"] in CATEGORIES["colour"]
        assert cells["grade"] in GRADES


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """A table whose last row holds a category no other row has, with cells missing in every
    column; a run trained a few steps on it."""
    root = tmp_path_factory.mktemp("flow")
    rows = mixed_rows(80)
    rows[-1][4] = "violet"  # known only if the schema reads the whole file
    table = write_csv(root / "people.csv", HEADER, rows)
    run = root / "run"
    assert main(["train", "--data", str(table), "--out", str(run), *TINY]) == 0
    return root, table, run


def test_the_cli_path_keeps_the_tables_types(flow, capsys):
    root, table, run = flow
    config = json.loads((run / "config.json").read_text())
    colour = next(c for c in config["model"]["columns"] if c["name"] == "colour")
    assert colour["categories"] == ["blue", "green", "red", "violet"]
    capsys.readouterr()

    assert main(["evaluate", str(run), "--data", str(table), "--num-samples", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["num_examples"] == 80 and np.isfinite(result["nll"])

    # impute: only the blanks change, each filled in its column's type
    assert main(["impute", str(run), "--data", str(table), "-o", str(root / "filled.csv")]) == 0
    header, filled = read_rows(root / "filled.csv")
    _, given = read_rows(table)
    assert header == HEADER and len(filled) == len(given)
    missing = {"", "na", "nan", "null"}
    for before, after in zip(given, filled, strict=True):
        for b, a in zip(before, after, strict=True):
            assert a == b if b.lower() not in missing else a.strip() != ""
    check_typed(header, filled)

    assert main(["sample", str(run), "-n", "12", "-o", str(root / "rows.csv")]) == 0
    header, sampled = read_rows(root / "rows.csv")
    assert header == HEADER and len(sampled) == 12
    check_typed(header, sampled)

    assert main(["score", str(run), "--data", str(table), "-o", str(root / "s.csv")]) == 0
    header, scored = read_rows(root / "s.csv")
    assert [h for h in header if h.startswith("share_")] == [f"share_{n}_nats" for n in HEADER]
    assert len(scored) == 80 and all(np.isfinite(float(r[1])) for r in scored)
    assert "-0" not in {c for r in scored for c in r}  # a missing cell's share is 0

    codes, decoded, recon = root / "z.csv", root / "decoded.csv", root / "recon.csv"
    assert main(["encode", str(run), "--data", str(table), "-o", str(codes)]) == 0
    assert main(["decode", str(run), str(codes), "-o", str(decoded)]) == 0
    assert main(["reconstruct", str(run), "--data", str(table), "-o", str(recon)]) == 0
    for path in (decoded, recon):
        header, rows = read_rows(path)
        assert header == HEADER and len(rows) == 80
        check_typed(header, rows)
    assert read_rows(decoded) == read_rows(recon)  # decode(encode(x)) is reconstruct(x)

    # the report's table of rows and the explorer's row, in the table's types
    capsys.readouterr()
    assert main(["report", str(run), "--num-samples", "5"]) == 0
    page = (run / "report.html").read_text()
    assert "id='table-reconstructions'" in page and "id='table-samples'" in page
    assert "reconstruction</td>" in page and any(f">{c}</td>" in page for c in ("red", "blue"))
    assert main(["explore", str(run)]) == 0
    assert '"heads":[{"name":"age","kind":"real"' in (run / "explore.html").read_text()
    assert main(["reconstruct", str(run), "-o", str(root / "r.png")]) == 2
    assert "reconstruct rows with --data TABLE.csv" in capsys.readouterr().err


def test_new_data_with_an_unseen_category_writes_nothing(flow, capsys):
    root, _, run = flow
    rows = mixed_rows(6)
    rows[2][4] = "purple"
    new = write_csv(root / "new.csv", HEADER, rows)
    out = root / "new-filled.csv"
    assert main(["impute", str(run), "--data", str(new), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists()
    assert "new.csv: row 4, column 'colour': 'purple' is a category training never saw" in err


def test_the_api_path_keeps_the_frames_types(flow):
    from vaekit import VAEEstimator

    _, table, _ = flow
    df = pd.read_csv(table, keep_default_na=True, na_values=["NA", "NaN", "null"])
    assert df.isna().sum().sum() > 0
    est = VAEEstimator(latent_dim=2, hidden_dims=(16,), max_steps=10, num_samples=5)
    est.fit(df)
    assert est.column_types_["colour"] == "categorical" and est.column_types_["visits"] == "count"
    codes = est.transform(df)
    assert codes.shape == (80, 2)
    for out in (est.inverse_transform(codes), est.sample(15)):
        assert list(out.columns) == HEADER
        assert set(out["colour"]) <= CATEGORIES["colour"]
        assert set(out["smoker"]) <= CATEGORIES["smoker"]
        # a count comes back in the frame's own dtype (float64 once NaN is in), as integers
        assert out["visits"].dtype == df["visits"].dtype
        assert (out["visits"] == np.round(out["visits"])).all() and (out["visits"] >= 0).all()
        assert set(out["grade"].astype(int).astype(str)) <= GRADES
    filled = est.impute(df)
    assert filled.notna().all().all() and list(filled.dtypes) == list(df.dtypes)
    observed = df.notna()
    for name in HEADER:  # observed cells bit for bit
        pd.testing.assert_series_equal(filled[name][observed[name]], df[name][observed[name]])
    assert set(filled["colour"]) <= CATEGORIES["colour"]
    scores = est.score_samples(df)
    assert scores.shape == (80,) and np.isfinite(scores).all()


@pytest.mark.parametrize(
    "header, rows, message",
    [
        (["id", "b"], [[f"u{i}", str(i % 3)] for i in range(12)], r"column 1 \('id'\): fits no"),
        (["a", "b"], [["x", ""], ["y", "NA"], ["x", "1"]] * 2, r"\('b'\): a single observed"),
        (["a", "b"], [["x", ""], ["y", "NA"]] * 3, r"column 2 \('b'\): every cell is missing"),
        (["a", "a"], [["x", "1"], ["y", "2"], ["", "3"]], r"column 2 repeats the name 'a'"),
    ],
)
def test_a_bad_table_is_one_line_and_no_run(tmp_path, capsys, header, rows, message):
    path = write_csv(tmp_path / "bad.csv", header, rows)
    out = tmp_path / "run"
    assert main(["train", "--data", str(path), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.csv" in err
    assert re.search(message, err), err
    assert not out.exists()
