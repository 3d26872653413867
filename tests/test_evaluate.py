"""Evaluation: the importance-sampled log-likelihood against exact answers, K and chunk
semantics, the standard error, active units, KL per dimension, aggregate-posterior statistics,
bits/dim and the Fréchet distance. A linear-Gaussian model (z ~ N(0, I), x = W z + b + eps,
eps ~ N(0, I)) has log p(x) = log N(x; b, W W^T + I) and a Gaussian exact posterior."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from helpers import LIKELIHOOD_NAMES
from vaekit.data import Dataset, Split
from vaekit.data.transforms import Dequantize, DynamicBinarize, Transform
from vaekit.evaluate import evaluate
from vaekit.evaluation.chunking import choose_chunk_size, decoder_floats_per_row
from vaekit.evaluation.latent_statistics import (
    active_units,
    aggregate_posterior_stats,
    gaussian_kl_to_standard_normal,
    latent_statistics,
)
from vaekit.evaluation.likelihood_space import bits_per_dim, standard_error
from vaekit.feature_net import frechet_distance
from vaekit.models import VAE, VAEConfig

D, M = 5, 4


class FlatEncoder(nn.Module):
    """Identity features: the posterior head is then an affine map of x."""

    out_features = D

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(start_dim=1)


class LinearDecoder(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        self.linear.weight.data.copy_(weight)
        self.linear.bias.data.copy_(bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(previous)


def linear_gaussian(posterior: str, dead: tuple[int, ...] = (), seed: int = 0):
    """A VAE whose decoder is x = W z + b with unit noise; for ``posterior='full'`` the
    encoder is set to the exact posterior N(S W^T (x - b), S), S = (I + W^T W)^{-1}; for
    'diagonal' it gets the exact mean and the diagonal of S (not exact). Columns ``dead`` of
    W are zero (latent coordinates the data does not depend on)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, M, generator=g)
    W[:, list(dead)] = 0.0
    b = torch.randn(D, generator=g)
    config = VAEConfig(
        latent_dim=M,
        network="mlp",
        hidden_dims=[1],
        likelihood="gaussian",
        posterior=posterior,
        data_shape=[D],
    )
    model = VAE(config, encoder=FlatEncoder(), decoder=LinearDecoder(W, b))
    S = torch.linalg.inv(torch.eye(M) + W.T @ W)
    A = S @ W.T  # mean = A (x - b)
    head = model.posterior.head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[:M] = A
        head.bias[:M] = -A @ b
        if posterior == "full":
            L = torch.linalg.cholesky(S)
            head.bias[M : 2 * M] = L.diagonal().log()
            rows, cols = torch.tril_indices(M, M, offset=-1)
            head.bias[2 * M :] = L[rows, cols]
        else:
            head.bias[M:] = S.diagonal().log()
    exact = torch.distributions.MultivariateNormal(b, covariance_matrix=W @ W.T + torch.eye(D))
    return model.eval(), exact, W, b


def samples_from(W, b, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, W.shape[1], generator=g)
    return z @ W.T + b + torch.randn(n, W.shape[0], generator=g)


def real_dataset(x: torch.Tensor) -> Dataset:
    empty = Split(x[:0])
    return Dataset("linear", (D,), empty, empty, Split(x), Transform(), "real", "gaussian")


def test_exact_posterior_gives_exact_log_likelihood_for_every_k():
    model, exact, W, b = linear_gaussian("full")
    x = samples_from(W, b, 20)
    for k in (1, 3, 50):
        estimate = model.log_likelihood(x, num_samples=k)
        torch.testing.assert_close(estimate, exact.log_prob(x), atol=1e-9, rtol=0)


def test_estimator_is_bounded_and_approaches_exact_log_likelihood():
    model, exact, W, b = linear_gaussian("diagonal")
    x = samples_from(W, b, 400)
    log_px = exact.log_prob(x)
    with torch.no_grad():
        torch.manual_seed(0)
        elbo = model.elbo(x, num_mc_samples=500).elbo
        gaps = []
        for k in (1, 10, 2000):
            torch.manual_seed(1)
            gaps.append(float((log_px - model.log_likelihood(x, num_samples=k)).mean()))
    assert float((log_px - elbo).mean()) > 0.5  # q is not the exact posterior here
    # IWAE_K tightens with K (gaps ~0.8, ~0.09, ~0.002 nats; standard errors <= 0.1, 0.02,
    # 0.003) and stays below log p(x)
    assert gaps[0] > gaps[1] + 0.3 and gaps[1] > gaps[2] + 0.03
    assert -0.01 < gaps[2] < 0.01  # K = 2000 is within 0.01 nats per example


def test_chunk_size_does_not_change_the_estimate_and_draws_exactly_k():
    model, _, W, b = linear_gaussian("diagonal")
    rows = []
    model.decoder = CountingDecoder(model.decoder, rows)
    x = samples_from(W, b, 3)
    for chunk in (None, 1, 3, 7, 10, 50):
        rows.clear()
        model.log_likelihood(x, num_samples=10, chunk_size=chunk)
        assert sum(rows) == 10 * x.shape[0]  # exactly K draws per example, 3+3+3+1 too
        assert max(rows) == min(chunk or 10, 10) * x.shape[0]  # chunk bounds one call
    # the same estimator whatever the chunk: K = 10 on one example repeated 4000 times, the
    # means of the two estimates agree within 4 standard errors of their difference
    x = samples_from(W, b, 1).expand(4000, D)
    torch.manual_seed(2)
    whole = model.log_likelihood(x, num_samples=10)
    chunked = model.log_likelihood(x, num_samples=10, chunk_size=3)
    difference = float(whole.mean() - chunked.mean())
    stderr = math.sqrt(standard_error(whole) ** 2 + standard_error(chunked) ** 2)
    assert abs(difference) < 4 * stderr


class CountingDecoder(nn.Module):
    def __init__(self, inner: nn.Module, rows: list[int]) -> None:
        super().__init__()
        self.inner, self.rows = inner, rows

    def forward(self, z):
        self.rows.append(z.shape[:-1].numel())
        return self.inner(z)


def test_chunk_size_from_memory_budget():
    model, _, _, _ = linear_gaussian("diagonal")
    per_row = decoder_floats_per_row(model)
    # LinearDecoder: its Linear's output (D) and itself (D), plus 4 D + 4 M temporaries
    assert per_row == D + D + 4 * D + 4 * M
    budget_mb = 1.0
    chunk = choose_chunk_size(model, batch_size=10, num_samples=10**6, memory_budget_mb=budget_mb)
    assert chunk == int(2**20 // (per_row * 8)) // 10
    assert choose_chunk_size(model, 10, 5, budget_mb) == 5  # never more than K
    assert choose_chunk_size(model, 10**9, 5, budget_mb) == 1  # never less than 1


def test_standard_error_formula():
    assert standard_error(torch.tensor([1.0, 2.0, 3.0, 4.0])) == pytest.approx(
        np.std([1, 2, 3, 4], ddof=1) / 2.0
    )
    assert math.isnan(standard_error(torch.tensor([1.0])))


def test_evaluate_reports_exact_nll_and_its_standard_error():
    model, exact, W, b = linear_gaussian("full")
    x = samples_from(W, b, 40)
    result = evaluate(model, real_dataset(x), num_samples=7, batch_size=16, fcd=False)
    log_px = exact.log_prob(x)
    assert result["nll"] == pytest.approx(float(-log_px.mean()), abs=1e-9)
    assert result["nll_stderr"] == pytest.approx(
        float(log_px.std(unbiased=True)) / math.sqrt(40), abs=1e-9
    )
    assert result["num_examples"] == 40 and result["num_samples"] == 7
    assert result["split"] == "test" and "bits_per_dim" not in result  # continuous data
    assert result["elbo"] <= result["log_px_z"]  # KL >= 0
    assert result["elbo"] == pytest.approx(result["log_px_z"] - result["kl"], abs=1e-9)


def test_active_units_and_kl_per_dim_with_dead_dimensions():
    model, _, W, b = linear_gaussian("full", dead=(1, 3))
    x = samples_from(W, b, 500)
    stats = latent_statistics(model, x)
    assert stats["active_units"] == 2
    variances = stats["posterior_mean_variance"]
    assert variances[1] == pytest.approx(0.0, abs=1e-20) and variances[3] < 1e-20
    assert variances[0] > 0.01 and variances[2] > 0.01
    # dead coordinates: the posterior marginal is the prior exactly
    assert stats["kl_per_dim"][1] == pytest.approx(0.0, abs=1e-12)
    assert stats["kl_per_dim"][3] == pytest.approx(0.0, abs=1e-12)
    q = model.encode(x)
    total = float(q.kl_standard_normal().detach().mean())
    assert sum(stats["kl_per_dim"]) + stats["kl_correlation"] == pytest.approx(total, abs=1e-9)
    assert stats["kl_correlation"] >= -1e-12


def test_active_units_threshold():
    mu = torch.stack([torch.zeros(100), 0.2 * torch.randn(100), 0.05 * torch.ones(100)], 1)
    count, variances = active_units(mu)
    assert count == 1 and variances[2] == pytest.approx(0.0, abs=1e-15)


def test_kl_per_dim_sums_to_kl_for_the_diagonal_posterior():
    torch.manual_seed(0)
    config = VAEConfig(
        latent_dim=3, network="mlp", hidden_dims=[8], likelihood="gaussian", data_shape=[D]
    )
    model = VAE(config).eval()
    x = torch.randn(30, D)
    stats = latent_statistics(model, x, batch_size=7)
    kl = float(model.encode(x).kl_standard_normal().detach().mean())
    assert sum(stats["kl_per_dim"]) == pytest.approx(kl, abs=1e-12)
    assert stats["kl_correlation"] == pytest.approx(0.0, abs=1e-12)


def test_aggregate_posterior_of_the_exact_posterior_matches_the_prior():
    model, _, W, b = linear_gaussian("full")
    x = samples_from(W, b, 20000)
    agg = latent_statistics(model, x)["aggregate_posterior"]
    assert agg["mean_norm"] < 0.05
    assert agg["cov_frobenius_to_identity"] < 0.1
    assert 0 <= agg["kl_gaussian_fit_to_prior"] < 0.005


def test_aggregate_posterior_moments_exact():
    mu = torch.tensor([[1.0, 0.0], [3.0, 2.0]])  # mean (2, 1), Cov_x(mu) = [[1, 1], [1, 1]]
    stats = aggregate_posterior_stats(mu, torch.eye(2) * 0.5)
    cov = torch.tensor([[1.5, 1.0], [1.0, 1.5]])
    assert stats["mean_norm"] == pytest.approx(math.sqrt(5))
    assert stats["cov_frobenius_to_identity"] == pytest.approx(float((cov - torch.eye(2)).norm()))
    p = torch.distributions.MultivariateNormal(torch.tensor([2.0, 1.0]), cov)
    prior = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    expected = float(torch.distributions.kl_divergence(p, prior))
    assert stats["kl_gaussian_fit_to_prior"] == pytest.approx(expected, abs=1e-12)
    assert gaussian_kl_to_standard_normal(torch.zeros(2), torch.eye(2)) == pytest.approx(0.0)


def _dataset(shape, transform, support):
    empty = Split(torch.zeros(0, *shape))
    return Dataset("t", shape, empty, empty, empty, transform, support, "gaussian")


def test_bits_per_dim_conversion():
    d = 784
    eight_bit = _dataset((1, 28, 28), Dequantize(256), "unit-interval")
    # a uniform density on [0, 1]^D has nll 0: the discrete data then costs log2(256) = 8 bits
    assert bits_per_dim(0.0, eight_bit) == pytest.approx(8.0)
    assert bits_per_dim(d * math.log(2.0), eight_bit) == pytest.approx(9.0)
    binary = _dataset((1, 28, 28), DynamicBinarize(256), "binary")
    assert bits_per_dim(d * math.log(2.0), binary) == pytest.approx(1.0)
    assert bits_per_dim(10.0, _dataset((3,), Transform(), "real")) is None


def test_frechet_distance_matches_the_scipy_formula():
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 6, generator=g)
    b = torch.randn(300, 6, generator=g) @ torch.randn(6, 6, generator=g) + 1.5
    ca, cb = np.cov(a.numpy().T), np.cov(b.numpy().T)
    root = linalg.sqrtm(ca @ cb).real
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum().item() + np.trace(ca + cb - 2 * root)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shifted = frechet_distance(a, a + torch.tensor([3.0, 4.0, 0, 0, 0, 0]))
    assert shifted == pytest.approx(25.0, abs=1e-8)


@pytest.mark.parametrize("likelihood", LIKELIHOOD_NAMES)
@pytest.mark.parametrize("posterior", ["diagonal", "full"])
def test_fast_log_densities_equal_the_distributions(likelihood, posterior):
    """The evaluator's written-out log-densities are the same numbers as torch.distributions'."""
    torch.manual_seed(0)
    config = VAEConfig(
        latent_dim=3,
        network="mlp",
        hidden_dims=[8],
        likelihood=likelihood,
        posterior=posterior,
        data_shape=[1, 4, 4],
        data_levels=256,  # read by the discretised likelihoods only
    )
    model = VAE(config)
    for parameter in model.likelihood.parameters():
        parameter.data.normal_()
    x = torch.rand(5, 1, 4, 4)
    if likelihood == "bernoulli":
        x = (x > 0.5).double()
    elif model.likelihood.discrete:  # 8-bit levels on the grid v / 255
        x = (x * 255).round() / 255
    q = model.encode(x)
    z = q.rsample((7,))
    out = model.decoder(z)
    expected = model.likelihood(out).log_prob(x)
    torch.testing.assert_close(model.likelihood.log_density(out, x), expected)
    with torch.no_grad():  # the in-place evaluation path
        torch.testing.assert_close(model.likelihood.log_density(out, x), expected)
    torch.testing.assert_close(model.prior.log_prob(z), model.prior.distribution().log_prob(z))
    if posterior == "diagonal":
        reference = torch.distributions.Independent(torch.distributions.Normal(q.loc, q.stddev), 1)
        torch.testing.assert_close(q.log_prob(z), reference.log_prob(z))


def test_active_units_of_monte_carlo_means_discount_their_sampling_noise():
    # Unit 0 carries x (true means spread with variance 1); unit 1 ignores it (true mean 0,
    # posterior variance 1). Estimated from S = 32 draws, unit 1's means spread with variance
    # 1/32 > 0.01: counted raw it looks active; with the noise subtracted it is not.

    g = torch.Generator().manual_seed(0)
    n, draws = 20000, 32
    true_means = torch.stack([torch.randn(n, generator=g), torch.zeros(n)], dim=1)
    estimates = true_means + torch.randn(n, 2, generator=g) / draws**0.5
    assert active_units(estimates)[0] == 2  # the noise alone passes the threshold
    count, variances = active_units(estimates, noise_variance=torch.full((2,), 1.0 / draws))
    assert count == 1
    assert variances[0] == pytest.approx(1.0, abs=0.03) and variances[1] < 0.003


def test_a_hierarchical_models_active_units_are_not_inflated_by_its_draws():
    # An untrained two-layer model on constant inputs: every posterior mean is the same for
    # all x, so no unit is active, although its Monte-Carlo means scatter.
    from helpers import tiny_model

    torch.manual_seed(0)
    model = tiny_model("hvae", data_shape=(1, 8, 8)).eval()
    x = torch.full((300, 1, 8, 8), 0.5)
    stats = latent_statistics(model, x)
    raw = stats["mu"].var(dim=0, unbiased=False)
    assert int((raw > 0.01).sum()) > 0  # the draws alone would count as active units
    assert stats["active_units"] == 0 and stats["active_units_per_layer"] == [0, 0]
