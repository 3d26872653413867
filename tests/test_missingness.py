"""The self-masking model of missing cells: its log p(s|x) by hand, the default untouched
(no parameter, no random draw), and on a table whose high cells hide more often its
imputations less biased than the at-random model's."""

import csv
import json
import math

import numpy as np
import pytest
import torch

from vaekit.cli import main
from vaekit.distributions.likelihoods import build_likelihood
from vaekit.distributions.tabular import TabularLikelihood
from vaekit.models.vae import VAEConfig
from vaekit.settings import TableColumn

COLUMNS = [
    TableColumn("a", "real", loc=1.0, scale=2.0),
    TableColumn("b", "positive", loc=0.5, scale=0.25),
    TableColumn("k", "binary", categories=["no", "yes"]),
]


def test_log_prob_of_the_mask_by_hand():
    torch.manual_seed(0)
    at_random = TabularLikelihood((6,), COLUMNS)
    masking = TabularLikelihood((6,), COLUMNS, missing="self-masking")
    masking.load_state_dict(at_random.state_dict(), strict=False)
    slope, offset = torch.tensor([1.5, -0.7]), torch.tensor([-0.3, 0.2])
    masking.missingness.slope_over_gain.data = slope / 10
    masking.missingness.offset_over_gain.data = offset / 10
    out = torch.randn(4, 3)
    # row 0: all observed; row 1: a missing; rows 2-3: b missing, k missing
    x = torch.tensor(
        [
            [0.4, -1.0, 1.0, 1, 1, 1],
            [0.0, 0.3, 0.0, 0, 1, 1],
            [-0.2, 0.0, 0.0, 1, 0, 0],
            [1.1, 0.0, 1.0, 1, 0, 1],
        ]
    )
    filled = torch.tensor([[0.4, -1.0], [2.0, 0.3], [-0.2, 0.9], [1.1, -2.5]])
    got = masking.log_density(out, x, filled) - at_random.log_density(out, x)

    def log_sigmoid(v):
        return -math.log1p(math.exp(-v))

    want = []
    for row, values in zip(x.tolist(), filled.tolist(), strict=True):
        total = 0.0
        for j in range(2):
            logit = slope[j].item() * values[j] + offset[j].item()
            total += log_sigmoid(-logit) if row[3 + j] == 1 else log_sigmoid(logit)
        want.append(total)
    assert got.tolist() == pytest.approx(want, abs=1e-5)
    # the binary column's missing cell has no term: the same with it observed
    x3 = x.clone()
    x3[2, 5] = 1
    difference = masking.log_density(out, x3, filled) - at_random.log_density(out, x3)
    assert difference[2].item() == pytest.approx(want[2], abs=1e-5)
    # drawn values where missing, observed ones kept
    draws = masking.filled(out, x)
    assert torch.equal(draws[0], x[0, :2]) and draws[1, 1].item() == pytest.approx(0.3)
    assert draws[1, 0].item() != 0.0


def test_at_random_adds_no_parameter_and_no_draw():
    torch.manual_seed(0)
    plain = TabularLikelihood((6,), COLUMNS)
    assert not any("missing" in name for name in plain.state_dict())
    out, x = torch.randn(5, 3), torch.tensor([[0.0, 0.3, 0.0, 0, 1, 0]]).expand(5, -1)
    torch.manual_seed(1)
    value = plain.log_density(out, x)
    after = torch.rand(1)
    torch.manual_seed(1)
    assert torch.rand(1) == after  # log_density drew nothing
    assert torch.equal(value, plain.cell_log_probs(out, x).sum(-1))


def test_bad_missing_value_is_one_line_naming_the_flag(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,4\n")
    args = ["train", "--data", str(tmp_path / "t.csv"), "--out", str(tmp_path / "run")]
    assert main([*args, "--missing", "sometimes"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--missing" in err[0] and "sometimes" in err[0]
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="--missing must be one of"):
        TabularLikelihood((6,), COLUMNS, missing="sometimes")
    only_binary = [TableColumn("k", "binary", categories=["no", "yes"])]
    with pytest.raises(ValueError, match=r"--missing self-masking .* has none"):
        TabularLikelihood((2,), only_binary, missing="self-masking")
    config = VAEConfig(likelihood="gaussian", data_shape=[3], missing="self-masking")
    with pytest.raises(ValueError, match="--missing self-masking models a mixed-type table"):
        build_likelihood(config)


N = 600


def hidden_table(tmp_path):
    """Three correlated standard normal columns; a cell above 0 is hidden with probability
    0.6, any other with 0.1."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(N, 1))
    values = 0.85 * z + math.sqrt(1 - 0.85**2) * rng.normal(size=(N, 3))
    hidden = rng.random((N, 3)) < np.where(values > 0, 0.6, 0.1)
    hidden[hidden.all(1), 0] = False  # every row keeps a cell
    path = tmp_path / "holes.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "c"])
        for row, holes in zip(values, hidden, strict=True):
            writer.writerow(["" if h else f"{v:.5f}" for v, h in zip(row, holes, strict=True)])
    return path, values, hidden


def imputation_bias(tmp_path, path, values, hidden, missing):
    run = tmp_path / missing
    args = ["train", "--data", str(path), "--out", str(run), "--max-steps", "1500"]
    args += ["--hidden-dims", "32", "--latent-dim", "2", "--batch-size", "64", "--seed", "0"]
    args += ["--lr", "3e-3", "--no-report", "--no-tensorboard", "--progress", "plain"]
    args += ["--set", "model.rank=none", "--missing", missing]
    assert main(args) == 0
    out = tmp_path / f"{missing}.csv"
    assert (
        main(["impute", str(run), "--data", str(path), "-o", str(out), "--num-samples", "200"]) == 0
    )
    with open(out) as handle:
        filled = np.array([[float(v) for v in row] for row in list(csv.reader(handle))[1:]])
    return float(np.mean(filled[hidden] - values[hidden])), run


def test_self_masking_imputes_hidden_high_cells_with_less_bias(tmp_path):
    path, values, hidden = hidden_table(tmp_path)
    at_random, _ = imputation_bias(tmp_path, path, values, hidden, "at-random")
    masking, run = imputation_bias(tmp_path, path, values, hidden, "self-masking")
    assert json.loads((run / "config.json").read_text())["model"]["missing"] == "self-masking"
    from safetensors.torch import load_file

    weights = [k for k in load_file(next(run.glob("**/*.safetensors"))) if "missingness" in k]
    assert weights
    # at random the imputations fall short of the hidden cells, which are mostly high
    assert at_random < -0.15, (at_random, masking)
    assert abs(masking) < 0.5 * abs(at_random), (at_random, masking)


def test_joint_head_draws_given_the_observed_cells_and_trains_the_mechanism():
    torch.manual_seed(0)
    masking = TabularLikelihood((6,), COLUMNS, rank=1, missing="self-masking")
    masking.missingness.slope_over_gain.data.fill_(0.1)  # a = 1: the mask depends on x
    out = torch.randn(7, 4, masking.param_shape[0], requires_grad=True)
    x = torch.tensor([[0.4, -1.0, 1.0, 1, 1, 1], [0.0, 0.3, 0.0, 0, 1, 0]]).repeat(2, 1)
    draws = masking.filled(out, x)  # [7, 4, 2]
    assert torch.equal(draws[:, 0], x[0, :2].expand(7, 2))  # observed: as given
    assert torch.equal(draws[:, 1, 1], x[1, 1].expand(7))
    assert draws[:, 1, 0].unique().numel() == 7  # missing: one draw per z
    masking.log_density(out, x).sum().backward()
    assert masking.missingness.slope_over_gain.grad[0] != 0
    assert out.grad[:, 1, 0].abs().sum() > 0  # the draw is reparameterised
