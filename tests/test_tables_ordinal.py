"""The ordinal column type (a cumulative-link, ordered logit, likelihood over a number
column's sorted distinct values): its exact probabilities, its cut points kept in order, its
overrides and bad input, and a trained model's imputations, samples, scores and weights file
(every value one of the column's levels)."""

import csv
import math

import numpy as np
import pytest
import torch

from test_tables import write_csv
from vaekit.cli import main
from vaekit.data import DataError
from vaekit.data.table_schema import infer_schema, read_text_table, schema_lines
from vaekit.data.tables import encode, encoded_cells
from vaekit.distributions.ordinal import OrdinalCuts
from vaekit.distributions.table_values import column_draws, column_means
from vaekit.distributions.tabular import TabularLikelihood


def test_the_level_probabilities_are_the_ordered_logit(tmp_path, float64):
    """log p of a cell is log(sigmoid(c_k - eta) - sigmoid(c_{k-1} - eta)) for its level k
    among the sorted distinct values (here 1, 2.5, 4, 10); the levels' probabilities sum to
    1; a missing cell counts nothing; E[v|z] is the levels' mean under them."""
    cells = ["2.5", "10", "", "1", "4", "2.50", "1"]
    rows = [[c, str(i)] for i, c in enumerate(cells)]
    path = write_csv(tmp_path / "t.csv", ["grade", "x"], rows)
    text = read_text_table(path)
    schema = infer_schema(text, {"grade": "ordinal", "x": "real"})
    grade = schema[0]
    assert grade.levels == [1.0, 2.5, 4.0, 10.0] and (grade.low, grade.high) == (1.0, 10.0)
    index = np.array([1, 3, 0, 2, 1, 0])  # the observed cells' levels
    assert (grade.loc, grade.scale) == pytest.approx((index.mean(), index.std()), rel=1e-12)
    line = next(line for line in schema_lines(schema) if "grade" in line)
    assert "ordered logit" in line and "4 ordered levels: 1, 2.5, 4, 10" in line
    x = torch.from_numpy(encode(text, schema))  # [7, 1 + 1 + 2]
    assert [r[0] for r in encoded_cells(x.numpy(), schema)] == [
        "2.5",
        "10",
        "",
        "1",
        "4",
        "2.5",
        "1",
    ]
    likelihood = TabularLikelihood((4,), schema).double()
    cuts = torch.tensor([-1.3, 0.2, 2.9], dtype=torch.float64)
    with torch.no_grad():  # the first cut, then the gaps' pre-activations (softplus^-1)
        raw = torch.cat([cuts[:1], torch.log(torch.expm1(cuts.diff() - 1e-4))])
        likelihood.ordinal.raw_cuts_over_gain.copy_(raw / likelihood.ordinal.gain)
    torch.testing.assert_close(likelihood.ordinal.cuts()[0], cuts)
    torch.manual_seed(0)
    out = 3 * torch.randn(5, len(cells), 2)  # [K, B, outputs]: grade's eta, x's mean
    lp = likelihood.cell_log_probs(out, x)[..., 0]  # [K, B]
    bounds = torch.cat([torch.tensor([-math.inf]), cuts, torch.tensor([math.inf])])
    levels = grade.levels
    for i, cell in enumerate(cells):
        eta = out[:, i, 0]
        if cell == "":
            expected = torch.zeros(5)
        else:
            k = levels.index(float(cell))
            expected = (torch.sigmoid(bounds[k + 1] - eta) - torch.sigmoid(bounds[k] - eta)).log()
        torch.testing.assert_close(lp[:, i], expected, rtol=1e-10, atol=1e-12)
    probs = likelihood.ordinal_log_probs(out).exp()[..., 0, :]  # [K, B, 4]
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, len(cells)))
    torch.testing.assert_close(
        column_means(likelihood, out)[0], (probs * torch.tensor(levels)).sum(-1)
    )
    draws = column_draws(likelihood, out)[0]
    assert set(draws.flatten().tolist()) <= set(levels)


def test_extreme_locations_keep_finite_exact_log_probabilities(float64):
    """Far from the cuts (eta = +-60) the differences of sigmoids are below float64's
    resolution near 1, yet each level's log p is finite and matches the log-space value."""
    cuts = OrdinalCuts([3], gain=1.0).double()
    eta = torch.tensor([[-60.0], [60.0]])
    lp = cuts.level_log_probs(eta)[:, 0]  # [2, 3]
    c = cuts.cuts()[0]
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(lp[0, 2], torch.nn.functional.logsigmoid(-60.0 - c[1]))
    torch.testing.assert_close(lp[1, 0], torch.nn.functional.logsigmoid(c[0] - 60.0))
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(2))


def test_cut_points_stay_ordered_after_training_steps():
    """A loss that pulls the cuts across each other (every row at the top level, then every
    row at the bottom one, with a large step) leaves them increasing, and moves them."""
    torch.manual_seed(0)
    cuts = OrdinalCuts([5, 3], gain=10.0)
    before = cuts.cuts().detach().clone()
    optimiser = torch.optim.Adam(cuts.parameters(), lr=0.5)
    eta = torch.randn(64, 2)
    for step in range(60):
        level = torch.full((64, 2, 1), 0 if step % 2 else 4)
        level[:, 1] = level[:, 1].clamp(max=2)
        loss = -cuts.level_log_probs(eta).gather(-1, level).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        after = cuts.cuts().detach()
        assert (after[0].diff() > 0).all() and (after[1, :2].diff() > 0).all()
    assert not torch.allclose(after, before)


def test_ordinal_on_words_or_unseen_levels_is_a_one_line_error(tmp_path, capsys):
    rows = [[w, str(i)] for i, w in enumerate(["low", "high", "mid", "low", "high", "mid"])]
    path = write_csv(tmp_path / "t.csv", ["size", "i"], rows)
    with pytest.raises(DataError) as error:
        infer_schema(read_text_table(path), {"size": "ordinal"})
    message = str(error.value)
    assert str(path) in message and "'size'" in message and "'low' is not a number" in message
    assert "\n" not in message
    out = tmp_path / "run"
    args = ["train", "--data", str(path), "--out", str(out), "--epochs", "1", "--no-report"]
    assert main([*args, "--column-type", "size=ordinal"]) != 0
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "'size'" in err and len(err.splitlines()) == 1
    assert not (out / "model.safetensors").exists()
    # a value that is not among the training levels, read against that schema
    train = write_csv(tmp_path / "n.csv", ["grade"], [["1"], ["2"], ["3"], ["2"]])
    schema = infer_schema(read_text_table(train), {"grade": "ordinal"})
    new = write_csv(tmp_path / "new.csv", ["grade"], [["2"], ["2.5"], ["3.0"]])
    with pytest.raises(DataError) as error:
        encode(read_text_table(new), schema)
    message = str(error.value)
    assert str(new) in message and "'grade'" in message and "'2.5'" in message
    assert "levels training saw" in message and "\n" not in message
    with pytest.warns(UserWarning, match="'grade' 1"):
        x = encode(read_text_table(new), schema, unknown_categories="missing")
    assert x[:, -1].tolist() == [1.0, 0.0, 1.0]  # 3.0 is the level 3


N = 300
LEVELS = [1.0, 2.0, 3.0, 5.0, 8.0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A table whose ``rating`` is one of five levels (1, 2, 3, 5, 8), rising with a real
    column ``load``, with 15 % of its cells missing; a run trained on it."""
    tmp = tmp_path_factory.mktemp("ordinal")
    rng = np.random.default_rng(0)
    z = rng.normal(size=N)
    load = 10 + 3 * z + 0.3 * rng.normal(size=N)
    level = np.clip(np.round(2 + 1.2 * z + 0.4 * rng.normal(size=N)), 0, 4).astype(int)
    hidden = rng.random((N, 2)) < 0.15
    hidden[:, 1] &= ~hidden[:, 0]
    rows = [
        ["" if hidden[i, 0] else f"{load[i]:.4f}", "" if hidden[i, 1] else f"{LEVELS[level[i]]:g}"]
        for i in range(N)
    ]
    path = write_csv(tmp / "work.csv", ["load", "rating"], rows)
    run = tmp / "run"
    args = ["train", "--data", str(path), "--out", str(run), "--epochs", "15", "--seed", "0"]
    args += ["--hidden-dims", "32", "--latent-dim", "2", "--batch-size", "32", "--lr", "5e-3"]
    args += ["--no-report", "--no-tensorboard", "--progress", "plain"]
    args += ["--column-type", "rating=ordinal"]
    assert main(args) == 0
    return tmp, path, run, hidden


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_the_schema_and_cut_points_are_saved_and_loaded(trained):
    from vaekit.checkpoint import load

    _, _, run, _ = trained
    model = load(run)
    rating = model.config.columns[1]
    assert (rating.kind, rating.levels) == ("ordinal", LEVELS)
    cuts = model.likelihood.ordinal.cuts()[0].detach()
    assert (cuts.diff() > 0).all()
    initial = OrdinalCuts([5], gain=model.likelihood.ordinal.gain).cuts()[0]
    assert (cuts - initial).abs().max() > 1e-2  # learned, and read back from the weights file
    again = load(run).likelihood.ordinal.cuts()[0].detach()
    torch.testing.assert_close(again, cuts)


def test_impute_and_sample_give_only_the_columns_levels(trained):
    tmp, path, run, hidden = trained
    filled = tmp / "filled.csv"
    assert main(["impute", str(run), "--data", str(path), "-o", str(filled)]) == 0
    before, after = read_rows(path), read_rows(filled)
    assert len(after) == len(before)
    imputed = {after[i + 1][1] for i in range(N) if hidden[i, 1]}
    assert imputed and imputed <= {f"{v:g}" for v in LEVELS}
    for i in range(N):
        if not hidden[i, 1]:
            assert after[i + 1][1] == before[i + 1][1]
    assert (
        main(["impute", str(run), "--data", str(path), "-o", str(tmp / "d.csv"), "--draws", "2"])
        == 0
    )
    drawn = {r[1] for r in read_rows(tmp / "d-1.csv")[1:]}
    assert drawn <= {f"{v:g}" for v in LEVELS}
    rows = tmp / "rows.csv"
    assert main(["sample", str(run), "-n", "500", "-o", str(rows), "--seed", "1"]) == 0
    sampled = [float(r[1]) for r in read_rows(rows)[1:]]
    assert set(sampled) <= set(LEVELS) and len(set(sampled)) >= 3


def test_score_shares_and_an_unseen_level(trained, capsys):
    tmp, path, run, hidden = trained
    out = tmp / "scores.csv"
    assert main(["score", str(run), "--data", str(path), "-o", str(out), "--num-samples", "8"]) == 0
    rows = read_rows(out)
    share = rows[0].index("share_rating_nats")
    values = [float(r[share]) for r in rows[1:]]
    assert all(math.isfinite(v) for v in values)
    assert all((v == 0) == bool(hidden[i, 1]) for i, v in enumerate(values))
    assert all(v >= 0 for v in values)  # -log of a probability
    bad = write_csv(tmp / "bad.csv", ["load", "rating"], [["10.0", "2"], ["11.0", "4"]])
    capsys.readouterr()
    assert main(["score", str(run), "--data", str(bad), "-o", str(tmp / "s.csv")]) != 0
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and "'rating'" in err and "'4'" in err and len(err.splitlines()) == 1


def test_the_estimator_imputes_samples_and_reloads_levels(tmp_path):
    """VAEEstimator with an ordinal override: its imputations, draws and synthetic rows are
    levels of the column in its float dtype, and a saved model reloads its cut points."""
    pd = pytest.importorskip("pandas")
    from vaekit import VAEEstimator

    rng = np.random.default_rng(1)
    z = rng.normal(size=200)
    df = pd.DataFrame(
        {"score": 3 * z + 0.2 * rng.normal(size=200), "rating": np.clip(np.round(3 + z), 1, 5)}
    )
    df.loc[rng.random(200) < 0.2, "rating"] = np.nan
    settings = dict(latent_dim=2, hidden_dims=(16,), max_steps=30, num_samples=8, batch_size=32)
    est = VAEEstimator(**settings, column_types={"rating": "ordinal"}).fit(df)
    assert est.column_types_ == {"score": "real", "rating": "ordinal"}
    levels = {1.0, 2.0, 3.0, 4.0, 5.0}
    filled = est.impute(df)
    assert filled["rating"].dtype == np.float64 and set(filled["rating"]) <= levels
    assert set(est.impute(df, draws=1)[0]["rating"]) <= levels
    assert set(est.sample(50)["rating"]) <= levels
    loaded = VAEEstimator.load(est.save(tmp_path / "model"))
    torch.testing.assert_close(
        loaded.model_.likelihood.ordinal.cuts(), est.model_.likelihood.ordinal.cuts()
    )
    pd.testing.assert_frame_equal(loaded.sample(9), est.sample(9))


def test_the_reports_rows_show_levels(trained):
    """The report's reconstructions and synthetic rows write an ordinal cell as a level."""
    from vaekit.checkpoint import load
    from vaekit.report.table_rows import table_rows

    _, path, run, _ = trained
    model = load(run)
    x = torch.from_numpy(encode(read_text_table(path), model.config.columns))
    rows = table_rows(model, x, count=40)
    texts = {f"{v:g}" for v in LEVELS}
    assert {recon[1] for _, recon in rows.pairs} <= texts
    assert {row[1] for row in rows.samples} <= texts
    assert {cells[1] for cells, _ in rows.pairs} <= texts | {""}
