"""Contract tests over every posterior and likelihood family (tests/helpers.py lists them)."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from helpers import (
    LIKELIHOOD_NAMES,
    POSTERIOR_NAMES,
    discretized_logistic_reference,
    lowrank_dense_reference,
)
from vaekit.distributions import LIKELIHOODS, POSTERIORS, DiagonalGaussian, StandardNormalPrior

pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize("name", POSTERIOR_NAMES)
def test_posterior_contract(name):
    torch.manual_seed(0)
    posterior = POSTERIORS[name](feature_dim=5, latent_dim=3)
    q = posterior(torch.randn(4, 5))
    assert q.batch_shape == (4,) and q.event_shape == (3,)
    z = q.rsample((7,))
    assert z.shape == (7, 4, 3)
    z.sum().backward()  # reparameterised: gradients reach the head
    assert posterior.head.weight.grad is not None
    assert q.log_prob(z).shape == (7, 4)
    mean, cov = q.moments()  # every family has its moments (Monte Carlo where no closed form)
    assert mean.shape == (4, 3) and cov.shape == (4, 3, 3)
    assert torch.allclose(cov, cov.transpose(-1, -2)) and (torch.linalg.eigvalsh(cov) > 0).all()
    if not q.has_closed_form_kl:  # the KL is then the prior's Monte-Carlo estimate
        expected = q.log_prob(z) - StandardNormalPrior(3).log_prob(z)
        assert torch.allclose(StandardNormalPrior(3).kl(q, z), expected.mean(0))
        return
    # The closed-form KL equals torch's KL between the equivalent multivariate normals.
    cov = q.covariance_matrix  # every family has it, and its Cholesky factor
    assert torch.allclose(q.scale_tril @ q.scale_tril.transpose(-1, -2), cov, atol=1e-12)
    marginal = MultivariateNormal(q.mean, covariance_matrix=torch.diag_embed(q.variance))
    marginal_kl = kl_divergence(marginal, MultivariateNormal(torch.zeros(3), torch.eye(3)))
    assert torch.allclose(q.marginal_kl_standard_normal().sum(-1), marginal_kl, atol=1e-10)
    mvn = MultivariateNormal(q.mean.detach(), covariance_matrix=cov.detach())
    reference = kl_divergence(mvn, MultivariateNormal(torch.zeros(3), torch.eye(3)))
    assert torch.allclose(q.kl_standard_normal().detach(), reference, atol=1e-10)
    assert torch.allclose(StandardNormalPrior(3).kl(q).detach(), reference, atol=1e-10)
    # And against any diagonal Gaussian N(loc, diag(exp(log_var))).
    loc, log_var = torch.randn(4, 3), torch.randn(4, 3)
    other = MultivariateNormal(loc, covariance_matrix=torch.diag_embed(log_var.exp()))
    reference = kl_divergence(mvn, other)
    assert torch.allclose(q.kl_diagonal_gaussian(loc, log_var).detach(), reference, atol=1e-10)


def test_full_covariance_factor_is_a_valid_cholesky_factor():
    torch.manual_seed(1)
    q = POSTERIORS["full"](feature_dim=5, latent_dim=4)(torch.randn(6, 5))
    L = q.scale_tril
    assert torch.equal(L, torch.tril(L))
    assert (torch.diagonal(L, dim1=-2, dim2=-1) > 0).all()


def test_diagonal_rsample_is_the_reparameterisation_trick():
    mu, log_var = torch.randn(3, 2), torch.randn(3, 2)
    q = DiagonalGaussian(mu, log_var)
    torch.manual_seed(5)
    z = q.rsample()
    torch.manual_seed(5)
    eps = torch.randn(3, 2)
    assert torch.allclose(z, mu + torch.exp(log_var / 2) * eps)


@pytest.mark.parametrize("name", LIKELIHOOD_NAMES)
def test_likelihood_contract(name):
    torch.manual_seed(0)
    shape = (1, 2, 3)
    likelihood = LIKELIHOODS[name](shape)
    params = torch.randn(5, 4, *likelihood.param_shape)  # [K, B, *param_shape]
    p = likelihood(params)
    assert p.batch_shape == (5, 4) and p.event_shape == shape
    if name == "bernoulli":
        x = torch.rand(4, *shape).round()
    elif likelihood.discrete:  # the levels on the grid v / (L - 1)
        x = torch.randint(0, likelihood.num_levels, (4, *shape)) / (likelihood.num_levels - 1)
    else:
        x = torch.randn(4, *shape)
    log_p = p.log_prob(x)  # broadcasts over the sample dimension
    assert log_p.shape == (5, 4)
    # Independent per dimension (the low-rank Gaussian aside): the log-probability is the sum
    # of 1-D log-densities.
    if name == "bernoulli":
        flat = params.flatten(2)
        expected = -torch.nn.functional.binary_cross_entropy_with_logits(
            flat, x.flatten(1).expand_as(flat), reduction="none"
        ).sum(-1)
    elif likelihood.discrete:
        expected = discretized_logistic_reference(likelihood, params, x).to(log_p.dtype)
    elif name == "gaussian-lowrank":  # mu, the diagonal and W: a dense covariance by hand
        expected = lowrank_dense_reference(likelihood, params, x)
    elif name == "gaussian-heteroscedastic":  # channels 0..C-1 the means, C..2C-1 the scales
        mu, raw = params[:, :, :1], params[:, :, 1:]
        sigma = likelihood.min_scale + torch.nn.functional.softplus(raw + likelihood.offset)
        expected = torch.distributions.Normal(mu, sigma).log_prob(x).flatten(2).sum(-1)
    else:
        flat = params.flatten(2)
        sigma = torch.as_tensor(likelihood.scale()).flatten()
        expected = torch.distributions.Normal(flat, sigma).log_prob(x.flatten(1)).sum(-1)
    assert torch.allclose(log_p, expected)
    # The fast paths the ELBO (autograd) and the evaluator (no autograd) use give the same
    # number.
    assert torch.allclose(likelihood.log_density(params, x), expected)
    with torch.no_grad():
        assert torch.allclose(likelihood.log_density(params, x), expected)
    assert likelihood.mean(params).shape == (5, 4, *shape)


def test_heteroscedastic_gaussian_starts_at_sigma_0_2_per_example():
    likelihood = LIKELIHOODS["gaussian-heteroscedastic"]((3,))
    assert likelihood.param_shape == (6,)
    _, sigma = likelihood.split(torch.zeros(2, 6))
    assert torch.allclose(sigma, torch.full((2, 3), 0.2))
    _, floored = likelihood.split(torch.full((2, 6), -1e4))
    assert torch.allclose(floored, torch.full((2, 3), likelihood.min_scale))
    # A decoder that writes only the means (e.g. a user's body built for the data shape):
    with pytest.raises(ValueError, match=r"must output \[\.\.\., 6\], got \[2, 3\]"):
        likelihood.log_density(torch.zeros(2, 3), torch.zeros(2, 3))


def test_unit_gaussian_log_prob_keeps_every_constant():
    D = 10
    mean, x = torch.randn(2, D), torch.randn(2, D)
    log_p = LIKELIHOODS["gaussian"]((D,))(mean).log_prob(x)
    by_hand = -0.5 * ((x - mean) ** 2).sum(-1) - 0.5 * D * math.log(2 * math.pi)
    assert torch.allclose(log_p, by_hand)


def test_learned_gaussian_scale_is_floored_and_trainable():
    likelihood = LIKELIHOODS["gaussian-learned"]((3,))
    assert torch.allclose(likelihood.scale(), torch.full((3,), 0.2))  # starts at sigma = 0.2
    with torch.no_grad():
        likelihood.raw_scale.fill_(-1e4)
    assert torch.allclose(likelihood.scale(), torch.full((3,), likelihood.min_scale))
    shared = LIKELIHOODS["gaussian-shared"]((3,))
    assert shared.raw_scale.numel() == 1


def test_standard_normal_prior():
    prior = StandardNormalPrior(3)
    z = torch.zeros(2, 3)
    assert torch.allclose(prior.log_prob(z), torch.full((2,), -1.5 * math.log(2 * math.pi)))
    assert prior.sample(5).shape == (5, 3)
