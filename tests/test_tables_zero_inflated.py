"""The zero-inflated column type (a mass at exactly 0 plus a log-normal above it): its
log-probability under the mixed measure, its inference and overrides, and a trained model's
imputations and synthetic rows (exact zeros at the learned rate)."""

import csv
import math

import numpy as np
import pytest
import torch
from torch import distributions as D

from test_tables import write_csv
from vaekit.cli import main
from vaekit.data import DataError
from vaekit.data.table_schema import infer_schema, read_text_table, schema_lines
from vaekit.data.tables import encode, encoded_cells
from vaekit.distributions.table_values import column_means
from vaekit.distributions.tabular import SCALAR_GAIN, TabularLikelihood


def kinds(path):
    return {c.name: c.kind for c in infer_schema(read_text_table(path))}


def test_the_log_probability_is_the_mixed_measure_value(tmp_path, float64):
    """A 0 counts log P(0); a v > 0 counts log(1 - P(0)) plus the log-normal density of v in
    its own units; a missing cell counts nothing. The table's cells go through the encoder."""
    cells = ["0", "2.5", "", "0.07", "0", "13.25"]
    path = write_csv(tmp_path / "t.csv", ["spend", "x"], [[c, str(i)] for i, c in enumerate(cells)])
    text = read_text_table(path)
    schema = infer_schema(text, {"spend": "zero-inflated", "x": "real"})
    spend = schema[0]
    logs = np.log([2.5, 0.07, 13.25])
    assert (spend.loc, spend.scale) == pytest.approx((logs.mean(), logs.std()), rel=1e-12)
    assert (spend.low, spend.high) == (0.0, 13.25)
    x = torch.from_numpy(encode(text, schema))  # [6, 2 + 1 + 2]
    assert encoded_cells(x.numpy(), schema)[3][0] == "0.07"  # the inverse of the encoding
    likelihood = TabularLikelihood((5,), schema).double()
    with torch.no_grad():
        likelihood.zero_raw_scale_over_gain.fill_(0.4 / SCALAR_GAIN)
    torch.manual_seed(0)
    out = torch.randn(3, len(cells), 3)  # [K, B, outputs]: logit of P(0), mean, real's mean
    lp = likelihood.cell_log_probs(out, x)[..., 0]  # [K, B]
    sigma = likelihood.zero_scale()[0]
    for i, cell in enumerate(cells):
        logit, mu = out[:, i, 0], out[:, i, 1]
        if cell == "":
            expected = torch.zeros(3)
        elif float(cell) == 0:
            expected = torch.sigmoid(logit).log()
        else:
            v = torch.tensor(float(cell))
            lognormal = D.LogNormal(spend.loc + spend.scale * mu, spend.scale * sigma)
            expected = (1 - torch.sigmoid(logit)).log() + lognormal.log_prob(v)
        torch.testing.assert_close(lp[:, i], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        likelihood.log_density(out, x), likelihood.cell_log_probs(out, x).sum(-1)
    )
    # E[v|z] = (1 - P(0)) times the log-normal's mean
    mean = column_means(likelihood, out)[0]
    lognormal = D.LogNormal(spend.loc + spend.scale * out[..., 1], spend.scale * sigma)
    torch.testing.assert_close(mean, torch.sigmoid(-out[..., 0]) * lognormal.mean)


def column_with_zeros(rng, n, share):
    v = np.exp(rng.normal(0.5, 1.0, n))
    v[rng.random(n) < share] = 0.0
    return v


def test_inference_picks_zero_inflated_only_for_many_exact_zeros(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    columns = {
        "spend": column_with_zeros(rng, n, 0.4),  # many zeros, the rest log-normal
        "income": np.exp(rng.normal(1.0, 0.9, n)),  # skewed, all > 0: positive
        "few_zeros": column_with_zeros(rng, n, 0.02),  # a handful of zeros: real
        "shifted": column_with_zeros(rng, n, 0.4) - 1.0,  # below 0 too: real
        "visits": rng.negative_binomial(1, 0.15, n),  # integers, 15 % zeros: a count
    }
    columns["few_zeros"][:3] = 0.0
    rows = [[f"{columns[k][i]:.6g}" for k in columns] for i in range(n)]
    path = write_csv(tmp_path / "t.csv", list(columns), rows)
    assert kinds(path) == {
        "spend": "zero-inflated",
        "income": "positive",
        "few_zeros": "real",
        "shifted": "real",
        "visits": "count",
    }
    lines = schema_lines(infer_schema(read_text_table(path)))
    assert "mass at 0 + log-normal" in next(line for line in lines if "spend" in line)
    assert "per unit of v" in lines[-1]


def test_an_override_on_a_negative_column_names_file_and_column(tmp_path, capsys):
    rows = [[f"{v:g}", str(i)] for i, v in enumerate([0, 0, 1.5, -0.25, 3, 0, 2.5, 4.75])]
    path = write_csv(tmp_path / "t.csv", ["delta", "i"], rows)
    with pytest.raises(DataError) as error:
        infer_schema(read_text_table(path), {"delta": "zero-inflated"})
    message = str(error.value)
    assert str(path) in message and "'delta'" in message and "-0.25 is not >= 0" in message
    assert "\n" not in message
    out = tmp_path / "run"
    args = ["train", "--data", str(path), "--out", str(out), "--epochs", "1"]
    assert main([*args, "--column-type", "delta=zero-inflated", "--no-report"]) != 0
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "'delta'" in err and len(err.splitlines()) == 1
    assert not (out / "model.safetensors").exists()


N = 400
ZERO_SHARE = 0.35


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A table whose ``hours`` are 0 for about 35 % of rows (more often when ``load`` is
    low) and log-normal otherwise, with 15 % of its cells missing; a run trained on it."""
    tmp = tmp_path_factory.mktemp("zero")
    rng = np.random.default_rng(0)
    z = rng.normal(size=N)
    load = 10 + 3 * z + 0.3 * rng.normal(size=N)
    hours = np.exp(1.0 + 0.5 * z + 0.2 * rng.normal(size=N))
    hours[rng.random(N) < 1 / (1 + np.exp(2.0 * z + 0.6))] = 0.0
    hidden = rng.random((N, 2)) < 0.15
    hidden[:, 1] &= ~hidden[:, 0]  # a row of blanks only is no row of the file
    rows = [
        ["" if hidden[i, 0] else f"{load[i]:.4f}", "" if hidden[i, 1] else f"{hours[i]:.4f}"]
        for i in range(N)
    ]
    path = write_csv(tmp / "work.csv", ["load", "hours"], rows)
    run = tmp / "run"
    args = ["train", "--data", str(path), "--out", str(run), "--epochs", "40", "--seed", "0"]
    args += ["--hidden-dims", "32", "--latent-dim", "2", "--batch-size", "32", "--lr", "5e-3"]
    args += ["--no-report", "--no-tensorboard", "--progress", "plain"]
    assert main(args) == 0
    return tmp, path, run, hours, hidden


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_the_schema_is_inferred_saved_and_loaded(trained):
    from vaekit.checkpoint import load

    _, _, run, _, _ = trained
    model = load(run)
    assert [c.kind for c in model.config.columns] == ["real", "zero-inflated"]
    likelihood = model.likelihood
    assert likelihood.rank == 0 or len(likelihood.gauss_columns) == 1  # not in the joint block
    # the learned scale came back from the weights file, not the initial 0.5
    assert abs(likelihood.zero_scale().item() - 0.5) > 1e-3


def test_impute_fills_only_missing_cells_with_values_at_least_zero(trained, capsys):
    tmp, path, run, _, hidden = trained
    filled = tmp / "filled.csv"
    assert main(["impute", str(run), "--data", str(path), "-o", str(filled)]) == 0
    before, after = read_rows(path), read_rows(filled)
    assert after[0] == before[0] and len(after) == len(before)
    for i in range(N):
        for j in range(2):
            if hidden[i, j]:
                assert after[i + 1][j] != "" and math.isfinite(float(after[i + 1][j]))
            else:
                assert after[i + 1][j] == before[i + 1][j]  # the text as read
    imputed = np.array([float(after[i + 1][1]) for i in range(N) if hidden[i, 1]])
    assert (imputed >= 0).all() and imputed.max() > 0
    drawn = tmp / "drawn.csv"
    assert main(["impute", str(run), "--data", str(path), "-o", str(drawn), "--draws", "2"]) == 0
    draws = read_rows(tmp / "drawn-1.csv")
    cells = [float(draws[i + 1][1]) for i in range(N) if hidden[i, 1]]
    assert min(cells) >= 0 and 0.0 in cells  # multiple imputations draw exact zeros


def test_sample_draws_exact_zeros_at_the_learned_rate(trained):
    """The share of exact zeros among synthetic rows is the model's own P(0) averaged over
    z ~ p(z) (within 5 standard errors), and near the training table's share."""
    from vaekit.checkpoint import load
    from vaekit.impute import sample_values

    tmp, _, run, hours, hidden = trained
    rows = tmp / "rows.csv"
    assert main(["sample", str(run), "-n", "4000", "-o", str(rows), "--seed", "1"]) == 0
    drawn = np.array([float(r[1]) for r in read_rows(rows)[1:]])
    assert (drawn >= 0).all()
    share = float((drawn == 0).mean())
    model = load(run)
    torch.manual_seed(2)
    with torch.no_grad():
        p = model.decode(model.prior.sample(100000))
        learned = torch.sigmoid(p.decoder_output[..., 1]).mean().item()  # hours' logit of P(0)
    assert abs(share - learned) < 5 * math.sqrt(learned * (1 - learned) / len(drawn))
    observed = hours[~hidden[:, 1]]
    assert abs(learned - float((observed == 0).mean())) < 0.08
    torch.manual_seed(3)
    assert (sample_values(model, 500)[1] == 0).any()
