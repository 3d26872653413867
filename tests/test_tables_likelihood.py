"""The tabular likelihood: each column head's log-probability in the table's own units against
torch.distributions and scipy, exactly (float64), and the sum over observed cells only."""

import math

import pytest
import torch
from scipy import stats
from torch import distributions as D

from vaekit.distributions.table_values import column_draws, column_means
from vaekit.distributions.tabular import SCALAR_GAIN, TabularLikelihood
from vaekit.settings import TableColumn

COLUMNS = [
    TableColumn("height", "real", loc=170.0, scale=9.0),
    TableColumn("income", "positive", loc=10.0, scale=0.7),
    TableColumn("visits", "count"),
    TableColumn("calls", "poisson"),
    TableColumn("smoker", "binary", categories=["no", "yes"]),
    TableColumn("colour", "categorical", categories=["blue", "green", "red"]),
]
# Encoded layout: 8 features (one each, 3 for colour), then 6 mask entries.
F = 8


def encode_row(height, income, visits, calls, smoker, colour):
    c = COLUMNS
    features = [
        (height - c[0].loc) / c[0].scale,
        (math.log(income) - c[1].loc) / c[1].scale,
        math.log1p(visits),
        math.log1p(calls),
        float(smoker),
        *[float(colour == k) for k in range(3)],
    ]
    return features + [1.0] * 6


@pytest.fixture
def setup(float64):
    torch.manual_seed(0)
    likelihood = TabularLikelihood((F + 6,), COLUMNS).double()
    with torch.no_grad():
        likelihood.raw_scale_over_gain.copy_(torch.tensor([0.3, -0.8]) / SCALAR_GAIN)
        likelihood.log_total_count_over_gain.copy_(torch.tensor([0.7, 0.0]) / SCALAR_GAIN)
    rows = [(181.5, 35000.0, 7, 2, 1, 2), (160.25, 9000.0, 0, 11, 0, 0)]
    x = torch.tensor([encode_row(*r) for r in rows])
    out = torch.randn(3, 2, F)  # [K, B, F]: decoder outputs for 3 draws of z
    return likelihood, rows, x, out


def test_each_head_is_the_reference_density_in_the_table_units(setup):
    likelihood, rows, x, out = setup
    cells = likelihood.cell_log_probs(out, x)  # [K, B, C]
    sigma = likelihood.gaussian_scale()
    r = likelihood.log_total_count()[0].exp()
    h, inc = COLUMNS[0], COLUMNS[1]
    for b, (height, income, visits, calls, smoker, colour) in enumerate(rows):
        o = out[:, b]
        # real: the Gaussian of the height in centimetres (not of the standardised value)
        real = D.Normal(h.loc + h.scale * o[:, 0], h.scale * sigma[0]).log_prob(
            torch.tensor(height)
        )
        # positive: the log-normal density of the income in its own units
        positive = D.LogNormal(inc.loc + inc.scale * o[:, 1], inc.scale * sigma[1]).log_prob(
            torch.tensor(income)
        )
        mean = o[:, 2].exp()
        negative_binomial = torch.tensor(
            stats.nbinom.logpmf(visits, r.item(), (r / (r + mean)).detach().numpy())
        )
        poisson = D.Poisson(o[:, 3].exp()).log_prob(torch.tensor(float(calls)))
        bernoulli = D.Bernoulli(logits=o[:, 4]).log_prob(torch.tensor(float(smoker)))
        categorical = D.Categorical(logits=o[:, 5:8]).log_prob(torch.tensor(colour))
        expected = torch.stack(
            [real, positive, negative_binomial, poisson, bernoulli, categorical], -1
        )
        torch.testing.assert_close(cells[:, b], expected, rtol=1e-12, atol=1e-12)
        # the negative binomial agrees with torch's too, and has the decoder's mean
        nb = D.NegativeBinomial(r, logits=o[:, 2] - r.log())
        torch.testing.assert_close(cells[:, b, 2], nb.log_prob(torch.tensor(float(visits))))
        torch.testing.assert_close(nb.mean, mean)
    torch.testing.assert_close(likelihood.log_density(out, x), cells.sum(-1))
    torch.testing.assert_close(likelihood(out).log_prob(x), cells.sum(-1))


def test_standardised_gaussian_is_the_original_units_gaussian(setup):
    """The change of variables: log N(x; mu, s^2) - log scale = log N(v; loc + scale mu,
    (scale s)^2) for x = (v - loc) / scale."""
    likelihood, _, x, out = setup
    h = COLUMNS[0]
    v = h.loc + h.scale * x[:, 0]
    sigma = likelihood.gaussian_scale()[0]
    standardised = D.Normal(out[..., 0], sigma).log_prob(x[:, 0]) - math.log(h.scale)
    original = D.Normal(h.loc + h.scale * out[..., 0], h.scale * sigma).log_prob(v)
    torch.testing.assert_close(standardised, original, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(likelihood.cell_log_probs(out, x)[..., 0], original)


def test_missing_cells_are_left_out_of_the_sum(setup):
    likelihood, _, x, out = setup
    full = likelihood.cell_log_probs(out, x)
    x_missing = x.clone()
    x_missing[0, F + 1] = 0.0  # income missing in row 0
    x_missing[0, 1] = 0.0
    x_missing[1, F + 5] = 0.0  # colour missing in row 1
    x_missing[1, 5:8] = 0.0
    log_p = likelihood.log_density(out, x_missing)
    torch.testing.assert_close(log_p[:, 0], full[:, 0].sum(-1) - full[:, 0, 1])
    torch.testing.assert_close(log_p[:, 1], full[:, 1].sum(-1) - full[:, 1, 5])


def test_counts_are_recovered_exactly_in_float32():
    likelihood = TabularLikelihood((2,), [TableColumn("n", "count")])
    k = torch.arange(0, 100001, 7, dtype=torch.float64)
    x = torch.stack([torch.log1p(k), torch.ones_like(k)], -1).float()
    assert torch.equal(likelihood.counts(x)[:, 0].double(), k)


def test_column_means_are_in_the_table_units(setup):
    likelihood, _, _, out = setup
    means = column_means(likelihood, out[0, :1])  # one row
    sigma = likelihood.gaussian_scale().double()
    h, inc = COLUMNS[0], COLUMNS[1]
    o = out[0, 0]
    torch.testing.assert_close(means[0], (h.loc + h.scale * o[0]).reshape(1))
    lognormal = D.LogNormal(inc.loc + inc.scale * o[1], inc.scale * sigma[1])
    torch.testing.assert_close(means[1], lognormal.mean.reshape(1))
    torch.testing.assert_close(means[2], o[2].exp().reshape(1))
    torch.testing.assert_close(means[4][0, 1], torch.sigmoid(o[4]))
    torch.testing.assert_close(means[5][0], torch.softmax(o[5:8], -1))


def test_draws_follow_each_head(setup):
    """Many draws at one decoder output: their means are the heads' means (within five
    standard errors), counts are integers and categories are indices."""
    likelihood, _, _, out = setup
    torch.manual_seed(3)
    n = 20000
    heads = out[0, 0].expand(n, F)
    draws = column_draws(likelihood, heads)
    means = column_means(likelihood, out[0, :1])
    sigma = likelihood.gaussian_scale().detach()
    r = likelihood.log_total_count()[0].exp().detach()
    m = means[2][0]
    sds = [
        COLUMNS[0].scale * sigma[0],
        None,  # the log-normal's mean is checked on the log scale below
        (m + m**2 / r).sqrt(),  # negative binomial
        means[3][0].sqrt(),  # Poisson
    ]
    for j in (0, 2, 3):
        error = (draws[j].mean() - means[j][0]).abs()
        assert error < 5 * sds[j] / n**0.5, j
    log_v = draws[1].log()
    mu = COLUMNS[1].loc + COLUMNS[1].scale * out[0, 0, 1]
    assert (log_v.mean() - mu).abs() < 5 * COLUMNS[1].scale * sigma[1] / n**0.5
    assert torch.equal(draws[2], draws[2].round()) and (draws[2] >= 0).all()
    assert (draws[4].float().mean() - means[4][0, 1]).abs() < 5 * 0.5 / n**0.5
    frequencies = torch.bincount(draws[5], minlength=3) / n
    assert (frequencies - means[5][0]).abs().max() < 5 * 0.5 / n**0.5


def test_categorical_columns_of_different_widths_are_each_their_own_softmax(float64):
    """Several categorical columns (2, 5 and 3 categories, a binary and a real column between
    them, some cells missing): each cell's log p and its gradient with respect to the decoder
    output are the reference Categorical's, over that column's own logits only."""
    columns = [
        TableColumn("a", "categorical", categories=["x", "y"]),
        TableColumn("h", "real", loc=0.0, scale=1.0),
        TableColumn("b", "categorical", categories=list("pqrst")),
        TableColumn("s", "binary", categories=["no", "yes"]),
        TableColumn("c", "categorical", categories=list("uvw")),
    ]
    starts, features = {"a": 0, "b": 3, "c": 9}, 12
    likelihood = TabularLikelihood((features + 5,), columns).double()
    torch.manual_seed(1)
    values = {"a": [1, 0, 1, 0], "b": [4, 0, 2, 3], "c": [2, 1, 0, 2]}
    observed = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    x = torch.zeros(4, features + 5)
    x[:, 2], x[:, 8], x[:, features:] = torch.randn(4), torch.tensor([0.0, 1, 1, 0]), observed
    for name in ("a", "b", "c"):
        for row, k in enumerate(values[name]):
            x[row, starts[name] + k] = float(observed[row, "ahbsc".index(name)])
    out = torch.randn(3, 4, features, requires_grad=True)  # [K, B, F]
    cells = likelihood.cell_log_probs(out, x)
    categorical = [0, 2, 4]
    (grad,) = torch.autograd.grad(cells[..., categorical].sum(), out)
    reference = out.detach().clone().requires_grad_()
    expected = []
    for name, width in (("a", 2), ("b", 5), ("c", 3)):
        logits = reference[..., starts[name] : starts[name] + width]
        lp = D.Categorical(logits=logits).log_prob(torch.tensor(values[name]))
        expected.append(lp * observed[:, "ahbsc".index(name)])
    expected = torch.stack(expected, -1)
    (expected_grad,) = torch.autograd.grad(expected.sum(), reference)
    torch.testing.assert_close(cells[..., categorical], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)
    assert (grad[..., [2, 8]] == 0).all()  # the real and binary outputs get nothing here


def test_the_per_column_scalars_reach_their_values_within_a_small_budget(float64):
    """Adam moves a weight about lr a step: the count column's dispersion (data with r = 200,
    log r ~ 5.3) and the real column's scale (0.05) must get there in 600 steps at lr 1e-3,
    a small table's budget, not the thousands an unscaled parameter needs."""
    torch.manual_seed(0)
    columns = [TableColumn("v", "real", loc=0.0, scale=1.0), TableColumn("k", "count")]
    likelihood = TabularLikelihood((4,), columns).double()
    n, mean = 4000, 90.0
    k = torch.poisson(torch.distributions.Gamma(200.0, 200.0 / mean).sample((n,)))
    x = torch.stack([0.05 * torch.randn(n), torch.log1p(k), torch.ones(n), torch.ones(n)], -1)
    out = torch.stack([torch.zeros(n), torch.full((n,), math.log(mean))], -1)
    optimiser = torch.optim.Adam(likelihood.parameters(), lr=1e-3)
    for _ in range(600):
        optimiser.zero_grad()
        (-likelihood.log_density(out, x).mean()).backward()
        optimiser.step()
    assert likelihood.log_total_count().item() > 3.0  # r > 20: near the data's 200
    assert likelihood.gaussian_scale().item() < 0.07
