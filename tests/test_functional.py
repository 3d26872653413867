"""The closed forms of the lecture against torch.distributions and Monte-Carlo."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from vaekit.distributions.functional import (
    LOG_2PI,
    expected_gaussian_log_density,
    kl_diagonal_gaussian_standard_normal,
    kl_full_gaussian_standard_normal,
    log_mean_exp,
    logsumexp,
    slide_loss,
)

pytestmark = pytest.mark.usefixtures("float64")


def _random_tril(batch: int, m: int, generator: torch.Generator) -> torch.Tensor:
    raw = torch.randn(batch, m, m, generator=generator)
    L = torch.tril(raw, diagonal=-1)
    return L + torch.diag_embed(torch.rand(batch, m, generator=generator) + 0.3)


def _assert_monte_carlo(exact: torch.Tensor, draws: torch.Tensor) -> None:
    """|exact - sample mean| within 5 Monte-Carlo standard errors (draws along dim 0)."""
    stderr = draws.std(0) / math.sqrt(draws.shape[0])
    assert ((exact - draws.mean(0)).abs() < 5 * stderr).all()
    assert (stderr < 0.05).all()  # and the check is sharp enough to mean something


def test_log_mean_exp_matches_naive_and_is_stable():
    x = torch.randn(7, 3)
    assert torch.allclose(log_mean_exp(x, 0), x.exp().mean(0).log())
    big = torch.tensor([1000.0, 1000.0])
    assert log_mean_exp(big) == pytest.approx(1000.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logsumexp_is_torchs_with_far_terms_and_infinities(dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(6, 50, 3, generator=g) * 300.0).to(dtype)  # most terms e^-87 or below
    x[0, :, 0] = -math.inf  # a row of -inf stays -inf
    x[1, 3, 1] = -math.inf  # one -inf term drops out
    x[2, 5, 2] = math.inf
    for dim in (1, -1, 0):
        expected = torch.logsumexp(x, dim=dim)
        assert torch.allclose(logsumexp(x, dim=dim), expected, rtol=2e-7, atol=0.0)
    assert logsumexp(x, dim=1)[0, 0] == -math.inf and logsumexp(x, dim=1)[2, 2] == math.inf
    # near terms are all kept: log(1 + e^-30), not the max alone
    near = torch.tensor([0.0, -30.0], dtype=torch.float64)
    assert logsumexp(near, dim=0) == pytest.approx(math.log1p(math.exp(-30.0)), rel=1e-12)


def test_diagonal_kl_matches_torch_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, log_var = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    ours = kl_diagonal_gaussian_standard_normal(mu, log_var)
    q = Normal(mu, (0.5 * log_var).exp())
    reference = kl_divergence(q, Normal(torch.zeros_like(mu), 1.0)).sum(-1)
    assert torch.allclose(ours, reference, atol=1e-12)
    torch.manual_seed(0)
    z = q.sample((200_000,))
    _assert_monte_carlo(ours, (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1))


def test_full_kl_matches_torch_and_monte_carlo():
    g = torch.Generator().manual_seed(1)
    mu, L = torch.randn(3, 4, generator=g), _random_tril(3, 4, g)
    ours = kl_full_gaussian_standard_normal(mu, L)
    q = MultivariateNormal(mu, scale_tril=L)
    p = MultivariateNormal(torch.zeros(4), torch.eye(4))
    assert torch.allclose(ours, kl_divergence(q, p), atol=1e-12)
    torch.manual_seed(0)
    z = q.sample((200_000,))
    _assert_monte_carlo(ours, q.log_prob(z) - p.log_prob(z))


def test_full_kl_reduces_to_diagonal_kl():
    mu, log_var = torch.randn(6, 3), torch.randn(6, 3)
    L = torch.diag_embed((0.5 * log_var).exp())
    assert torch.allclose(
        kl_full_gaussian_standard_normal(mu, L), kl_diagonal_gaussian_standard_normal(mu, log_var)
    )


def test_lecture_lemma_against_monte_carlo():
    # E_{xi ~ N(mu~, S~)} log N(xi; mu, S) = log N(mu~; mu, S) - tr(S~ S^{-1}) / 2
    g = torch.Generator().manual_seed(2)
    m = 3
    mu_t, mu = torch.randn(m, generator=g), torch.randn(m, generator=g)
    A, B = _random_tril(1, m, g)[0], _random_tril(1, m, g)[0]
    sigma_t, sigma = A @ A.T, B @ B.T + 0.5 * torch.eye(m)
    exact = expected_gaussian_log_density(mu_t, sigma_t, mu, sigma)
    torch.manual_seed(0)
    xi = MultivariateNormal(mu_t, sigma_t).sample((200_000,))
    _assert_monte_carlo(exact, MultivariateNormal(mu, sigma).log_prob(xi))
    # The special case on the slide: -m/2 log(2 pi e |S|^(1/m)).
    same = expected_gaussian_log_density(mu, sigma, mu, sigma)
    closed = -m / 2 * math.log(2 * math.pi * math.e * float(torch.det(sigma)) ** (1 / m))
    assert float(same) == pytest.approx(closed, rel=1e-12)


def test_slide_loss_is_the_formula_on_the_slide():
    x, x_hat = torch.randn(2, 5), torch.randn(2, 5)
    mu, s = torch.randn(2, 3), torch.randn(2, 3)
    by_hand = ((x - x_hat) ** 2).sum(1) + (mu**2 + s.exp() - (1 + s)).sum(1)
    assert torch.allclose(slide_loss(x, x_hat, mu, s), by_hand)


def test_slide_loss_identity_with_the_elbo():
    # Unit-variance decoder: L_VAE = -2 ELBO - D log(2 pi), per example, for the same z.
    D = 6
    x, x_hat = torch.randn(4, D), torch.randn(4, D)
    mu, log_var = torch.randn(4, 2), torch.randn(4, 2)
    log_px_z = Normal(x_hat, 1.0).log_prob(x).sum(-1)
    elbo = log_px_z - kl_diagonal_gaussian_standard_normal(mu, log_var)
    assert torch.allclose(slide_loss(x, x_hat, mu, log_var), -2 * elbo - D * LOG_2PI)
