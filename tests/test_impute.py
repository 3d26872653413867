"""vaekit impute and vaekit sample on a mixed-type table: observed cells untouched bit for bit,
missing ones filled in the column's type, and on strongly correlated columns the model's
imputations beat mean/mode imputation; evaluate --data on such a table."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from vaekit.cli import main

N = 400
MISSING_SHARE = 0.2


def truth(seed=0):
    """Five columns driven by one latent number: two reals, a log-normal, a count and a
    three-level category."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=N)
    a = z + 0.1 * rng.normal(size=N)
    b = 5 + 2 * z + 0.2 * rng.normal(size=N)
    c = np.exp(1 + 0.6 * z + 0.05 * rng.normal(size=N))
    n = rng.poisson(np.exp(1.5 + 0.6 * z))
    level = np.where(z < -0.5, "low", np.where(z < 0.5, "mid", "high"))
    return {"a": a, "b": b, "c": c, "n": n, "level": level}


def text(column, value):
    if column == "level":
        return str(value)
    if column == "n":
        return str(int(value))
    return f"{value:.4f}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The true table, a copy with 20 % of its cells missing (spelt in every way), and a
    run trained on that copy."""
    tmp = tmp_path_factory.mktemp("impute")
    values = truth()
    names = list(values)
    rng = np.random.default_rng(1)
    hidden = rng.random((N, len(names))) < MISSING_SHARE
    spellings = ["", "NA", "NaN", "null", " nan "]
    with open(tmp / "holes.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for i in range(N):
            writer.writerow(
                [
                    spellings[(i + j) % 5] if hidden[i, j] else text(name, values[name][i])
                    for j, name in enumerate(names)
                ]
            )
    run = tmp / "run"
    args = ["train", "--data", str(tmp / "holes.csv"), "--out", str(run), "--epochs", "60"]
    args += [
        "--hidden-dims",
        "32",
        "--latent-dim",
        "2",
        "--batch-size",
        "32",
        "--seed",
        "0",
        "--lr",
        "5e-3",
    ]
    args += ["--no-report", "--no-tensorboard", "--progress", "plain"]
    # not the table defaults: the ELBO without decay, and independent heads, so that each
    # column's score share is its own cell's alone
    args += ["--objective", "elbo", "--weight-decay", "0", "--set", "model.rank=none"]
    assert main(args) == 0
    return tmp, run, values, hidden


def read(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_observed_cells_untouched_and_missing_ones_typed(trained, capsys):
    tmp, run, _, hidden = trained
    out = tmp / "filled.csv"
    assert main(["impute", str(run), "--data", str(tmp / "holes.csv"), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    before, after = read(tmp / "holes.csv"), read(out)
    assert after[0] == before[0] == ["a", "b", "c", "n", "level"]
    assert len(after) == len(before)
    for i in range(N):
        for j in range(5):
            if hidden[i, j]:
                cell = after[i + 1][j]
                if j == 4:
                    assert cell in ("low", "mid", "high")
                elif j == 3:
                    assert cell == str(int(cell)) and int(cell) >= 0
                else:
                    float(cell)
                    assert j != 2 or float(cell) > 0
            else:
                assert after[i + 1][j] == before[i + 1][j]


def test_imputation_beats_mean_and_mode(trained):
    tmp, run, values, hidden = trained
    out = tmp / "means.csv"
    assert main(["impute", str(run), "--data", str(tmp / "holes.csv"), "-o", str(out)]) == 0
    filled = read(out)[1:]
    # the best possible RMSE over the mean's: about 0.1 for a, b and c; about 0.55 for the
    # count, whose Poisson noise no other column predicts (this run: 0.13, 0.14, 0.11, 0.61)
    for j, (name, bound) in enumerate([("a", 0.3), ("b", 0.3), ("c", 0.3), ("n", 0.75)]):
        rows = np.flatnonzero(hidden[:, j])
        true = values[name][rows].astype(float)
        imputed = np.array([float(filled[i][j]) for i in rows])
        mean = values[name][~hidden[:, j]].astype(float).mean()
        model_rmse = np.sqrt(np.mean((imputed - true) ** 2))
        mean_rmse = np.sqrt(np.mean((mean - true) ** 2))
        assert model_rmse < bound * mean_rmse, (name, model_rmse, mean_rmse)
    rows = np.flatnonzero(hidden[:, 4])
    observed = list(values["level"][~hidden[:, 4]])
    mode = max(set(observed), key=observed.count)
    model_accuracy = np.mean([filled[i][4] == values["level"][i] for i in rows])
    mode_accuracy = np.mean(values["level"][rows] == mode)
    assert model_accuracy > mode_accuracy + 0.2


def test_imputed_means_stay_in_the_training_range(trained):
    """The schema records each number column's observed range, and a missing cell's mean is
    a weighted sum of per-draw means each held to it: with the count's range cut to [2, 3],
    every imputed count lies in it, where the unheld means go beyond."""
    import torch

    from vaekit.checkpoint import load
    from vaekit.data.tables import read_new_table
    from vaekit.impute import impute

    tmp, run, values, hidden = trained
    model = load(run)
    columns = {c.name: c for c in model.config.columns}
    for j, name in enumerate(["a", "b", "c", "n"]):
        seen = np.array([float(text(name, v)) for v in values[name][~hidden[:, j]]])
        assert (columns[name].low, columns[name].high) == (seen.min(), seen.max())
    assert columns["level"].low is None and columns["level"].high is None
    _, x = read_new_table(tmp / "holes.csv", model.config.columns)
    x, rows = torch.from_numpy(x), np.flatnonzero(hidden[:, 3])

    def imputed_counts() -> np.ndarray:
        torch.manual_seed(0)
        return impute(model, x).means[3][rows]

    columns["n"].low, columns["n"].high = None, None
    free = imputed_counts()
    assert free.min() < 2 and free.max() > 3
    columns["n"].low, columns["n"].high = 2.0, 3.0
    held = imputed_counts()
    assert held.min() >= 2 - 1e-9 and held.max() <= 3 + 1e-9  # weights sum to 1 in float64


def test_multiple_imputations(trained):
    tmp, run, _, hidden = trained
    out = tmp / "draw.csv"
    args = ["impute", str(run), "--data", str(tmp / "holes.csv"), "-o", str(out)]
    assert main([*args, "--draws", "2"]) == 0
    first, second = read(tmp / "draw-1.csv"), read(tmp / "draw-2.csv")
    before = read(tmp / "holes.csv")
    observed = [(i, j) for i in range(N) for j in range(5) if not hidden[i, j]]
    assert all(first[i + 1][j] == second[i + 1][j] == before[i + 1][j] for i, j in observed)
    missing = [(i, j) for i in range(N) for j in range(4) if hidden[i, j]]
    assert sum(first[i + 1][j] != second[i + 1][j] for i, j in missing) > len(missing) // 2


def test_synthetic_rows_in_the_table_types(trained):
    tmp, run, _, _ = trained
    out = tmp / "rows.csv"
    assert main(["sample", str(run), "-n", "50", "-o", str(out)]) == 0
    rows = read(out)
    assert rows[0] == ["a", "b", "c", "n", "level"] and len(rows) == 51
    assert {r[4] for r in rows[1:]} <= {"low", "mid", "high"}
    assert all(float(r[2]) > 0 and int(r[3]) >= 0 for r in rows[1:])
    # the shared latent carries the correlation of a and b into the synthetic rows
    a, b = (np.array([float(r[j]) for r in rows[1:]]) for j in (0, 1))
    assert np.corrcoef(a, b)[0, 1] > 0.8


def test_evaluate_new_table_data(trained, capsys):
    tmp, run, _, _ = trained
    rows = read(tmp / "holes.csv")[:40]
    rows[5][4] = "extreme"
    with open(tmp / "new.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    args = ["evaluate", str(run), "--data", str(tmp / "new.csv"), "--num-samples", "10"]
    assert main(args) == 2
    assert "new.csv: row 6, column 'level': 'extreme' is a category training never saw" in (
        capsys.readouterr().err
    )
    rows[5][4] = "low"
    with open(tmp / "new.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["num_examples"] == 39 and "observed cells" in result["space"]


def test_score_finds_rows_that_break_the_correlation(trained, capsys):
    """Rows whose b no longer follows a (b = 5 +- 4, the sign drawn at random) score as
    anomalies: the per-row -log p of the observed cells, an ood column read as labels."""
    tmp, run, values, _ = trained
    rng = np.random.default_rng(2)
    names = list(values)
    with open(tmp / "mixed-ood.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*names, "ood"])
        for i in range(100):
            row = [text(name, values[name][i]) for name in names]
            if i % 2:
                row[1] = text("b", 5 + 2 * rng.choice([-2.0, 2.0]) * np.sign(values["a"][i]))
            row[3 + i % 2] = ""  # a missing cell in every row
            writer.writerow([*row, str(i % 2)])
    out = tmp / "scores.csv"
    args = ["score", str(run), "--data", str(tmp / "mixed-ood.csv"), "-o", str(out)]
    assert main([*args, "--num-samples", "20", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "observed cells" in summary["space"]
    assert summary["metrics"]["nll_nats"]["auroc"] > 0.95
    rows = read(out)
    shares = [f"share_{name}_nats" for name in values]
    assert rows[0] == ["row", "ood", "nll_nats", "nll_stderr_nats", "neg_elbo_nats", *shares]
    table = np.array([[float(v) for v in row] for row in rows[1:]])
    ood = table[:, 1] == 1
    # the broken column carries the excess score; a missing cell has no share
    excess = table[ood, 5:].mean(0) - table[~ood, 5:].mean(0)
    assert excess.argmax() == 1 and excess[1] > 3 * np.abs(np.delete(excess, 1)).max()
    assert (table[::2, 5 + 3] == 0).all() and (table[1::2, 5 + 4] == 0).all()


def test_encode_decode_reconstruct_in_the_table_types(trained):
    tmp, run, values, _ = trained
    data, z = tmp / "holes.csv", tmp / "z.npy"
    assert main(["encode", str(run), str(data), "-o", str(z)]) == 0
    codes = np.load(z)
    assert codes.shape == (N, 2)
    # the code carries the latent number behind the row: a linear fit of a on it explains it
    design = np.column_stack([codes, np.ones(N)])
    fit, *_ = np.linalg.lstsq(design, values["a"], rcond=None)
    residual = values["a"] - design @ fit
    assert residual.var() < 0.1 * values["a"].var()
    assert main(["decode", str(run), str(z), "-o", str(tmp / "decoded.csv")]) == 0
    assert main(["reconstruct", str(run), "--data", str(data), "-o", str(tmp / "rec.csv")]) == 0
    decoded, reconstructed = read(tmp / "decoded.csv"), read(tmp / "rec.csv")
    assert decoded == reconstructed  # E[v|z] at the posterior mean either way
    assert decoded[0] == ["a", "b", "c", "n", "level"] and len(decoded) == N + 1
    rows = decoded[1:]
    assert {r[4] for r in rows} <= {"low", "mid", "high"}
    assert all(float(r[2]) > 0 and r[3] == str(int(r[3])) for r in rows)
    a = np.array([float(r[0]) for r in rows])
    assert np.sqrt(np.mean((a - values["a"]) ** 2)) < 0.3  # a's sd is 1


def test_unknown_categories_error_or_missing(trained, capsys):
    """A category training never saw refuses the file by default (one line: file, row,
    column, value); with --unknown-categories missing each command reads the cell as a
    missing one (its score, code and reconstruction those of the row with the cell blank)
    and says on stderr how many cells it read so; impute fills it."""
    tmp, run, _, _ = trained
    rows = read(tmp / "holes.csv")[:30]
    rows[3][4], rows[7][4] = "extreme", "huge"
    blank = [list(r) for r in rows]
    blank[3][4] = blank[7][4] = ""
    for name, table in (("unseen.csv", rows), ("blank.csv", blank)):
        with open(tmp / name, "w", newline="") as handle:
            csv.writer(handle).writerows(table)
    unseen, blanks = str(tmp / "unseen.csv"), str(tmp / "blank.csv")
    capsys.readouterr()
    commands = {
        "score": lambda data, out: ["score", str(run), "--data", data, "-o", out],
        "encode": lambda data, out: ["encode", str(run), data, "-o", out],
        "reconstruct": lambda data, out: ["reconstruct", str(run), "--data", data, "-o", out],
        "impute": lambda data, out: ["impute", str(run), "--data", data, "-o", out],
        "evaluate": lambda data, out: ["evaluate", str(run), "--data", data, "-o", out],
    }
    suffix = {"encode": ".npy", "evaluate": ".json"}
    for command, line in commands.items():
        out = str(tmp / f"{command}-u{suffix.get(command, '.csv')}")
        assert main(line(unseen, out)) == 2, command
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "unseen.csv: row 4, column 'level': 'extreme'" in err
        assert "--unknown-categories missing" in err
        assert main([*line(unseen, out), "--unknown-categories", "missing"]) == 0, command
        err = capsys.readouterr().err
        note = (
            "vaekit: note: " + unseen + ": 2 cells held a category training never saw "
            "('level' 2), read as missing (--unknown-categories missing)"
        )
        assert note in err.splitlines(), command
        blank_out = str(tmp / f"{command}-b{suffix.get(command, '.csv')}")
        assert main(line(blanks, blank_out)) == 0
        assert "note" not in capsys.readouterr().err
        if command == "encode":
            assert np.array_equal(np.load(out), np.load(blank_out))
        elif command == "evaluate":
            got, want = (json.loads(Path(p).read_text()) for p in (out, blank_out))
            assert (got["nll"], got["elbo"]) == (want["nll"], want["elbo"])
        elif command == "impute":
            filled = read(out)
            assert filled == read(blank_out) and {filled[3][4], filled[7][4]} <= {
                "low",
                "mid",
                "high",
            }
        else:
            assert read(out) == read(blank_out)
    with pytest.raises(SystemExit) as exit_:
        main(["score", str(run), "--data", unseen, "--unknown-categories", "unknown"])
    assert exit_.value.code == 2 and "invalid choice: 'unknown'" in capsys.readouterr().err


def test_estimator_unknown_categories(trained):
    """The Python API: VAEEstimator(unknown_categories="missing") scores a row with an
    unseen category as the row with that cell blank, and warns how many cells it read so;
    the default refuses it, naming the keyword."""
    import pandas as pd

    from vaekit import VAEEstimator
    from vaekit.data.errors import DataError

    _, run, values, _ = trained
    frame = pd.DataFrame({name: column[:20] for name, column in values.items()}, dtype=object)
    frame.loc[2, "level"] = "extreme"
    blank = frame.copy()
    blank.loc[2, "level"] = None
    est = VAEEstimator.load(run)
    with pytest.raises(DataError, match=r"'level': 'extreme' .* unknown_categories='missing'"):
        est.score_samples(frame)
    est.set_params(unknown_categories="missing")
    with pytest.warns(UserWarning, match=r"1 cell held a category training never saw"):
        scores = est.score_samples(frame)
    assert np.array_equal(scores, est.score_samples(blank))
    est.set_params(unknown_categories="drop")
    with pytest.raises(ValueError, match="unknown_categories must be one of error, missing"):
        est.transform(frame)
