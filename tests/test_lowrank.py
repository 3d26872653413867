"""The low-rank-plus-diagonal Gaussian decoder: its density against a dense covariance by hand,
its rank check, the tables' joint head (missing cells, per-cell chain rule, conditioning), and
a model that beats the diagonal Gaussian where the data hold a residual correlation."""

import csv
import json
import math

import numpy as np
import pytest
import torch

from helpers import dense_gaussian_log_prob, lowrank_dense_parts
from vaekit.cli import main
from vaekit.distributions import LIKELIHOODS
from vaekit.distributions.lowrank import condition
from vaekit.distributions.table_values import column_draws, column_means
from vaekit.distributions.tabular import TabularLikelihood
from vaekit.settings import TableColumn


@pytest.mark.parametrize(("shape", "rank"), [((7,), 1), ((7,), 3), ((2, 3, 2), 4)])
def test_log_density_is_the_dense_covariance_by_hand(shape, rank, float64):
    g = torch.Generator().manual_seed(rank)
    likelihood = LIKELIHOODS["gaussian-lowrank"](shape, rank=rank)
    assert likelihood.param_shape == ((rank + 2) * shape[0], *shape[1:])
    params = 2 * torch.randn(5, 4, *likelihood.param_shape, generator=g)  # [K, B, ...]
    x = torch.randn(4, *shape, generator=g)  # broadcasts over K
    mu, sigma = lowrank_dense_parts(likelihood, params.double())
    expected = dense_gaussian_log_prob(x.double().flatten(1), mu, sigma)
    torch.testing.assert_close(
        likelihood.log_density(params, x).double(), expected, atol=1e-8, rtol=1e-10
    )
    p = likelihood(params)
    assert p.batch_shape == (5, 4) and p.event_shape == shape
    torch.testing.assert_close(p.log_prob(x).double(), expected, atol=1e-8, rtol=1e-10)
    assert torch.equal(likelihood.mean(params), mu.reshape(5, 4, *shape))
    assert p.sample((3,)).shape == (3, 5, 4, *shape)


def test_draws_have_the_model_covariance():
    torch.manual_seed(0)
    likelihood = LIKELIHOODS["gaussian-lowrank"]((3,), rank=2).double()
    params = 3 * torch.randn(12, dtype=torch.float64)
    mu, sigma = lowrank_dense_parts(likelihood, params)
    draws = likelihood(params).sample((200_000,))
    torch.testing.assert_close(draws.mean(0), mu, atol=0.02, rtol=0)
    torch.testing.assert_close(draws.T.cov(), sigma, atol=0.03 * sigma.abs().max().item(), rtol=0)


def test_the_start_is_near_the_diagonal():
    """At initialisation the factor adds under a tenth of the diagonal's variance, which
    starts at sd 0.2 as the other learned Gaussians do."""
    from vaekit.models import VAE, VAEConfig

    torch.manual_seed(0)
    config = VAEConfig(latent_dim=4, network="mlp", hidden_dims=[64], data_shape=[1, 8, 8])
    config.likelihood, config.rank = "gaussian-lowrank", 8
    model = VAE(config)
    zero = model.likelihood.split(torch.zeros(model.likelihood.param_shape))[2]
    assert torch.allclose(zero, torch.full_like(zero, 0.04), rtol=1e-4)  # raw 0 -> sd 0.2
    with torch.no_grad():
        _, w, d = model.likelihood.split(model.decoder(torch.randn(256, 4)))
    assert w.square().sum(-1).mean() < 0.1 * d.mean()


@pytest.mark.parametrize(("shape", "rank"), [((4,), 4), ((4,), 0), ((2, 2), -1), ((4,), 9)])
def test_rank_must_be_from_1_to_d_minus_1(shape, rank):
    with pytest.raises(ValueError, match=r"rank.*from 1 to 3 \(the data have 4 dimensions\)"):
        LIKELIHOODS["gaussian-lowrank"](shape, rank=rank)


def test_bad_rank_on_the_command_line_is_one_line_naming_the_flag(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(40, 3)))
    out = tmp_path / "run"
    args = ["train", "--data", str(tmp_path / "x.npy"), "--out", str(out)]
    assert main([*args, "--likelihood", "gaussian-lowrank", "--rank", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--rank 3: the low-rank covariance needs a rank from 1 to 2" in err
    assert len(err.splitlines()) == 1 and not out.exists()
    assert main([*args, "--likelihood", "gaussian-learned", "--rank", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--rank 2: only gaussian-lowrank and the tabular likelihood" in err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_toml_sets_the_rank(tmp_path):
    from vaekit.config import load_config

    (tmp_path / "c.toml").write_text('[model]\nlikelihood = "gaussian-lowrank"\nrank = 3\n')
    model = load_config(tmp_path / "c.toml").model
    assert (model.likelihood, model.rank) == ("gaussian-lowrank", 3)


# --- the tables' joint head --------------------------------------------------------------

COLUMNS = [
    TableColumn("height", "real", loc=170.0, scale=9.0),
    TableColumn("smoker", "binary", categories=["no", "yes"]),
    TableColumn("income", "positive", loc=10.0, scale=0.7),
    TableColumn("weight", "real", loc=70.0, scale=12.0),
]
# Features: height, smoker, income, weight (4); then the 4 mask entries.


@pytest.fixture
def joint(float64):
    torch.manual_seed(0)
    likelihood = TabularLikelihood((8,), COLUMNS, rank=2)
    assert likelihood.param_shape == (4 + 3 * 3,)
    rows = [(181.5, 1, 35000.0, 80.0), (160.0, 0, 9000.0, 55.0), (175.0, 1, 20000.0, 66.0)]
    x = torch.tensor(
        [
            [(h - 170) / 9, s, (math.log(i) - 10) / 0.7, (w - 70) / 12, 1, 1, 1, 1]
            for h, s, i, w in rows
        ]
    )
    x[1, 2], x[1, 6] = 0.0, 0.0  # row 1: income missing
    x[2, 0], x[2, 4], x[2, 3], x[2, 7] = 0.0, 0.0, 0.0, 0.0  # row 2: height and weight missing
    out = torch.randn(5, 3, 13)  # [K, B, params]
    return likelihood, rows, x, out


def test_joint_head_is_the_dense_gaussian_of_the_observed_real_cells(joint):
    likelihood, rows, x, out = joint
    w, d = likelihood.joint_parts(out)  # [K, B, 3, 2], [K, B, 3]
    sigma = w @ w.transpose(-1, -2) + torch.diag_embed(d)
    real = [0, 2, 3]  # height, income, weight: the joint head's order
    log_p = likelihood.log_density(out, x)
    cells = likelihood.cell_log_probs(out, x)
    torch.testing.assert_close(cells.sum(-1), log_p)  # the chain rule adds up
    for b, (height, smoker, income, weight) in enumerate(rows):
        seen = [i for i, j in enumerate(real) if x[b, 4 + j] == 1]
        v = torch.tensor([(height - 170) / 9, (math.log(income) - 10) / 0.7, (weight - 70) / 12])
        mu = out[:, b, real]
        expected = dense_gaussian_log_prob(v[seen], mu[:, seen], sigma[:, b][:, seen][:, :, seen])
        jacobian = {0: -math.log(9), 1: -math.log(0.7) - math.log(income), 2: -math.log(12)}
        expected = expected + sum(jacobian[i] for i in seen)
        p = torch.sigmoid(out[:, b, 1])
        expected = expected + (p if smoker else 1 - p).log()
        torch.testing.assert_close(log_p[:, b], expected)
        # The first observed real cell's share is its own marginal, in the table's units.
        first = seen[0]
        marginal = torch.distributions.Normal(mu[:, first], sigma[:, b, first, first].sqrt())
        own = marginal.log_prob(v[first]) + jacobian[first]
        torch.testing.assert_close(cells[:, b, real[first]], own)
    assert (cells[:, 1, 2] == 0).all() and (cells[:, 2, [0, 3]] == 0).all()  # missing cells


def test_conditioning_is_the_gaussian_formula(float64):
    torch.manual_seed(1)
    mean, w, d = torch.randn(4), torch.randn(4, 2), torch.rand(4) + 0.1
    sigma = w @ w.T + torch.diag(d)
    x, mask = torch.randn(4), torch.tensor([1.0, 0.0, 1.0, 0.0])
    o, m = [0, 2], [1, 3]
    gain = sigma[m][:, o] @ torch.linalg.inv(sigma[o][:, o])
    want_mean = mean[m] + gain @ (x[o] - mean[o])
    want_cov = sigma[m][:, m] - gain @ sigma[o][:, m]
    filled, var = condition(mean, w, d, x, mask, draw=False)
    torch.testing.assert_close(filled[m], want_mean)
    assert torch.equal(filled[o], x[o]) and torch.equal(var[o], torch.zeros(2))
    torch.testing.assert_close(var[m], torch.diagonal(want_cov))
    n = 100_000
    draws, _ = condition(mean.expand(n, 4), w.expand(n, 4, 2), d.expand(n, 4), x, mask, True)
    assert (draws[:, o] == x[o]).all()
    torch.testing.assert_close(draws[:, m].mean(0), want_mean, atol=0.02, rtol=0)
    torch.testing.assert_close(draws[:, m].T.cov(), want_cov, atol=0.02, rtol=0)


def test_joint_head_means_and_draws_in_the_table_units(joint):
    likelihood, _, x, out = joint
    heads = out[0, :1].expand(20_000, -1)  # one row's decoder output, many draws
    draws = column_draws(likelihood, heads)
    means = column_means(likelihood, out[0, :1])
    for j in (0, 2, 3):
        assert abs(draws[j].mean() - means[j][0]) < 0.03 * draws[j].std()
    # Given row 2's observed income, its missing height and weight move with it.
    given = column_means(likelihood, out[0, 2:3], x[2:3])
    free = column_means(likelihood, out[0, 2:3])
    assert given[2][0] == pytest.approx(20000.0, rel=1e-9)  # observed: itself
    assert abs(given[0][0] - free[0][0]) > 1e-3


# --- training ------------------------------------------------------------------------------


def residual_correlated(n, seed):
    """[n, 6]: one latent factor, plus three pairs of noises correlated at +-0.97 that no
    one-dimensional code can explain."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1))
    loading = np.array([[1.0, 0.5, -0.5, 1.0, 0.8, -0.3]])
    pairs = []
    for sign in (1, -1, 1):
        u = rng.normal(size=(n, 1))
        pairs += [u, sign * 0.97 * u + math.sqrt(1 - 0.97**2) * rng.normal(size=(n, 1))]
    return z @ loading + 0.7 * np.hstack(pairs)


def correlated_dataset():
    """The data above as vaekit's training sees a user's array (standardised per column with
    the training rows' statistics), with a held-out test split of other draws."""
    from vaekit.data import Dataset, Split
    from vaekit.data.stored import describe_values

    train, test = residual_correlated(4000, 0), residual_correlated(1000, 1)
    transform, support, likelihood, levels = describe_values(train, np.arange(4000), (6,))
    split = Split(torch.from_numpy(train[3000:]))
    return Dataset(
        name="residual-correlated",
        shape=(6,),
        train=Split(torch.from_numpy(train[:3000])),
        val=split,
        test=Split(torch.from_numpy(test)),
        transform=transform,
        support=support,
        default_likelihood=likelihood,
        num_levels=levels,
        description="6 columns, a 1-D factor and three strongly correlated noise pairs",
    )


def held_out_nll(dataset, *settings):
    """Train a 1-D-latent VAE quickly in memory, then its importance-sampled nll on the test
    split, nats per example of the data as given."""
    from vaekit.config import Config, apply_overrides
    from vaekit.evaluate import evaluate
    from vaekit.training.api import train

    base = ["model.latent_dim=1", "model.hidden_dims=[32]", 'model.network="mlp"']
    base += ["train.max_steps=450", "train.epochs=1000", "train.batch_size=200", "optim.lr=3e-3"]
    base += ['train.device="cpu"', "train.tensorboard=false", 'train.progress="plain"']
    config = apply_overrides(Config(), [*base, *settings])
    model = train(config, dataset=dataset, log=lambda *_: None).model
    torch.manual_seed(0)
    result = evaluate(model, dataset, "test", num_samples=50, fcd=False, progress="plain")
    return result["nll"]


def test_rank_beats_the_diagonal_on_residual_correlations():
    dataset = correlated_dataset()
    # The diagonal to beat decodes its sigma per example, as the low-rank decoder does: the
    # factor W is then the only difference (rank 0).
    diagonal = held_out_nll(dataset, 'model.likelihood="gaussian-heteroscedastic"')
    rank = {
        r: held_out_nll(dataset, 'model.likelihood="gaussian-lowrank"', f"model.rank={r}")
        for r in (1, 3)
    }
    # Each pair's correlation is worth -log(1 - 0.97^2)/2 = 1.43 nats per example that the
    # one-dimensional code cannot take; rank 1 models one pair, rank 3 all three.
    assert rank[1] < diagonal - 0.9, (rank, diagonal)
    assert rank[3] < rank[1] - 0.9, (rank, diagonal)


def test_a_mixed_table_trains_with_a_joint_real_head(tmp_path, capsys):
    from test_tables import HEADER, TINY, mixed_rows, write_csv

    table = write_csv(tmp_path / "people.csv", HEADER, mixed_rows())
    out = tmp_path / "run"
    args = ["train", "--data", str(table), "--out", str(out), *TINY]
    assert main([*args, "--likelihood", "gaussian-lowrank", "--rank", "1"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["model"]["likelihood"], config["model"]["rank"]) == ("tabular", 1)
    assert main(["evaluate", str(out), "--num-samples", "20", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert math.isfinite(result["nll"])
    filled = tmp_path / "filled.csv"
    assert main(["impute", str(out), "--data", str(table), "-o", str(filled)]) == 0
    rows = list(csv.reader(filled.read_text().splitlines()))[1:]
    assert rows[6][0] and rows[36][0]  # the missing ages (rows 6 and 36) are filled
    assert [r[0] for i, r in enumerate(rows) if i not in (6, 36)] == [
        r[0] for i, r in enumerate(mixed_rows()) if i not in (6, 36)
    ]
    scores = tmp_path / "scores.csv"
    args_score = ["score", str(out), "--data", str(table), "-o", str(scores)]
    assert main([*args_score, "--num-samples", "20"]) == 0
    header, *lines = list(csv.reader(scores.read_text().splitlines()))
    values = np.array([[float(v) for v in line[1:]] for line in lines])
    shares = values[:, [header.index(f"share_{n}_nats") - 1 for n in HEADER]]
    assert np.isfinite(shares).all() and (shares[6, 0] == 0)  # a missing cell has no share
    assert main(["sample", str(out), "-n", "30", "-o", str(tmp_path / "rows.csv")]) == 0
    assert main([*args[:3], "--out", str(tmp_path / "r2"), *TINY, "--rank", "2"]) == 2
    assert "--rank 2: the low-rank covariance needs a rank from 1 to 1" in capsys.readouterr().err


def test_masked_log_prob_survives_a_capacitance_float32_cannot_factor():
    """Nearly collinear factor rows (rank 16 over 30 columns) at a variance floor of 1e-4:
    torch's float32 LowRankMultivariateNormal cannot factor I + W^T D^-1 W, and a table's
    training stopped on it. The masked log-density is the dense float64 covariance's,
    observed cells only, to float32 rounding of the inputs."""
    from torch.distributions import LowRankMultivariateNormal, MultivariateNormal

    from vaekit.distributions.lowrank import masked_log_prob

    torch.manual_seed(0)
    g, rank = 30, 16
    w = torch.randn(4, g, rank) * 30
    w[..., 1:, :] = w[..., :1, :] + 1e-3 * w[..., 1:, :]
    d = torch.full((4, g), 1e-4)
    r = torch.randn(4, g)
    with pytest.raises(torch.linalg.LinAlgError):
        LowRankMultivariateNormal(torch.zeros(g), w, d).log_prob(r)
    mask = torch.ones(4, g)
    mask[:, ::3] = 0
    seen = mask.bool()[0]
    wo, do, ro = w.double()[:, seen], d.double()[:, seen], r.double()[:, seen]
    dense = MultivariateNormal(
        torch.zeros(int(seen.sum()), dtype=torch.float64),
        wo @ wo.transpose(-1, -2) + torch.diag_embed(do),
    ).log_prob(ro)
    got = masked_log_prob(r, w, d, mask)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), dense, rtol=1e-6, atol=0.0)


# --- the masked Woodbury density: float32 with a float64 fallback, written-out gradients --


def joint_rows(n, g, rank, d_scale, seed):
    """``n`` rows of ``g`` dimensions drawn from N(0, W W^T + diag d), W at rank ``rank``,
    d about ``d_scale`` (the smaller, the worse conditioned), about 30 % of cells missing:
    r, W, d, mask in float32."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, g, rank, generator=gen, dtype=torch.float64) / 4
    d = d_scale * (0.5 + torch.rand(n, g, generator=gen, dtype=torch.float64))
    tril = torch.linalg.cholesky(w @ w.mT + torch.diag_embed(d))
    r = (tril @ torch.randn(n, g, 1, generator=gen, dtype=torch.float64))[..., 0]
    mask = (torch.rand(n, g, generator=gen) > 0.3).float()
    return r.float(), w.float(), d.float(), mask


def dense_masked(r, w, d, mask):
    """log N(r_O; 0, Sigma_OO) of each row by its dense float64 covariance, ``[n]``,
    differentiable."""
    out = []
    for rb, wb, db, seen in zip(r, w, d, mask.bool(), strict=True):
        wo = wb[seen]
        sigma = wo @ wo.T + torch.diag(db[seen])
        out.append(dense_gaussian_log_prob(rb[seen], torch.zeros_like(rb[seen]), sigma))
    return torch.stack(out)


def capacitance_trace(w, d, mask):
    return (w.double().square().sum(-1) * mask / d).sum(-1) + w.shape[-1]


def value_and_grads(fn, r, w, d, mask):
    leaves = [t.detach().clone().requires_grad_() for t in (r, w, d)]
    value = fn(*leaves, mask)
    value.sum().backward()
    return value.detach(), [t.grad for t in leaves]


def test_masked_log_prob_and_its_gradients_are_the_dense_gaussians():
    """float64 inputs: the written-out gradients equal autograd through the dense covariance
    (missing cells get none), with a [K, B] batch broadcast against a [B] mask."""
    from vaekit.distributions.lowrank import masked_log_prob

    r, w, d, mask = (t.double() for t in joint_rows(6, 9, 4, 0.3, seed=1))
    r = r + torch.randn(3, 6, 9, dtype=torch.float64)  # [K, B, G]: three residuals a row
    got, grads = value_and_grads(masked_log_prob, r, w, d, mask)
    assert got.shape == (3, 6) and got.dtype == torch.float64
    flat = (r.flatten(0, 1), w.repeat(3, 1, 1, 1).flatten(0, 1), d.repeat(3, 1, 1).flatten(0, 1))
    want, want_grads = value_and_grads(dense_masked, *flat, mask.repeat(3, 1))
    torch.testing.assert_close(got.flatten(), want, rtol=1e-12, atol=1e-10)
    want_grads[1] = want_grads[1].reshape(3, 6, 9, 4).sum(0)  # W and d are shared over K
    want_grads[2] = want_grads[2].reshape(3, 6, 9).sum(0)
    for g, want_g in zip(grads, [want_grads[0].reshape(3, 6, 9), *want_grads[1:]], strict=True):
        torch.testing.assert_close(g, want_g, rtol=1e-10, atol=1e-10)
    assert (grads[0][:, mask == 0] == 0).all() and (grads[1][mask == 0] == 0).all()


def test_float32_keeps_the_dense_float64_value_where_the_capacitance_is_well_conditioned():
    from vaekit.distributions.lowrank import FLOAT32_CONDITION, masked_log_prob

    r, w, d, mask = joint_rows(64, 30, 16, 0.05, seed=2)
    assert capacitance_trace(w, d, mask).max() < FLOAT32_CONDITION  # float32 throughout
    got, grads = value_and_grads(masked_log_prob, r, w, d, mask)
    assert got.dtype == torch.float32
    want, want_grads = value_and_grads(dense_masked, r.double(), w.double(), d.double(), mask)
    # the bound stated beside FLOAT32_CONDITION
    torch.testing.assert_close(got.double(), want, rtol=0.0, atol=5e-5)
    for g, want_g in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(g.double(), want_g, rtol=1e-3, atol=1e-3 * want_g.abs().max())


def test_badly_conditioned_float32_rows_are_computed_in_float64():
    """Every other row's d near 1e-6 (a trace of K above 1e7): float32 alone is off by
    about 3e-4 nats there. Those rows are the float64 computation's (to float32 rounding of
    the result), the others float32's."""
    from vaekit.distributions.lowrank import FLOAT32_CONDITION, masked_log_prob

    good = joint_rows(8, 30, 16, 0.05, seed=3)
    bad = joint_rows(8, 30, 16, 1e-6, seed=4)
    r, w, d, mask = (torch.stack([a, b], 1).flatten(0, 1) for a, b in zip(good, bad, strict=True))
    trace = capacitance_trace(w, d, mask)
    assert (trace[1::2] > FLOAT32_CONDITION).all() and (trace[::2] < FLOAT32_CONDITION).all()
    got, grads = value_and_grads(masked_log_prob, r, w, d, mask)
    want, want_grads = value_and_grads(dense_masked, r.double(), w.double(), d.double(), mask)
    torch.testing.assert_close(got[::2].double(), want[::2], rtol=0.0, atol=5e-5)
    torch.testing.assert_close(got[1::2].double(), want[1::2], rtol=0.0, atol=1e-5)
    in_float64 = masked_log_prob(r.double(), w.double(), d.double(), mask.double())
    assert torch.equal(got[1::2], in_float64[1::2].float())
    for g, want_g in zip(grads, want_grads, strict=True):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g.double(), want_g, rtol=1e-3, atol=1e-3 * want_g.abs().max())
