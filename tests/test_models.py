"""Exact answers for the model: the linear-Gaussian VAE has a closed-form log p(x)."""

import math

import pytest
import torch

from helpers import exact_log_px, linear_gaussian_vae, set_exact_posterior
from vaekit.distributions.functional import LOG_2PI
from vaekit.models import AE, VAE, AEConfig, VAEConfig
from vaekit.objectives import NegativeELBO, ReconstructionObjective, SlideLoss

pytestmark = pytest.mark.usefixtures("float64")

D, M, SIGMA = 5, 2, 0.7


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(D, M, generator=g)
    b = torch.randn(D, generator=g)
    z = torch.randn(8, M, generator=g)
    x = z @ W.T + b + SIGMA * torch.randn(8, D, generator=g)
    return W, b, x


def mean_field_vae(W, b, inflate=3.0):
    """Diagonal q with the true posterior mean and variances ``inflate / diag(Lambda)``
    (Lambda the posterior precision): an over-dispersed proposal that misses the posterior's
    correlations, so ELBO < IWAE_K < log p(x) with clear gaps."""
    model = linear_gaussian_vae(W, b, SIGMA, posterior="diagonal")
    full = linear_gaussian_vae(W, b, SIGMA, posterior="full")
    set_exact_posterior(full, W, b, SIGMA)
    M = W.T @ W + SIGMA**2 * torch.eye(W.shape[1])
    precision = M / SIGMA**2
    head = model.posterior.head
    with torch.no_grad():
        head.weight.zero_()
        head.weight[: M.shape[0]] = full.posterior.head.weight[: M.shape[0]]
        head.bias[: M.shape[0]] = full.posterior.head.bias[: M.shape[0]]
        head.bias[M.shape[0] :] = math.log(inflate) - torch.diagonal(precision).log()
    return model


def test_optimal_encoder_makes_the_elbo_equal_log_px(problem):
    W, b, x = problem
    model = linear_gaussian_vae(W, b, SIGMA, posterior="full")
    set_exact_posterior(model, W, b, SIGMA)
    exact = exact_log_px(x, W, b, SIGMA)
    # With q = p(z|x) every importance weight equals p(x): zero variance.
    log_w = model.log_weights(x, num_samples=50)
    assert torch.allclose(log_w, exact.expand_as(log_w), atol=1e-9)
    torch.manual_seed(0)
    elbo = model.elbo(x, num_mc_samples=20_000).elbo
    assert torch.allclose(elbo, exact, atol=0.02)
    for chunk in (1, 7, 50):
        estimate = model.log_likelihood(x, num_samples=50, chunk_size=chunk)
        assert torch.allclose(estimate, exact, atol=1e-9)


def test_bounds_elbo_le_iwae_le_log_px_and_convergence(problem):
    W, b, x = problem
    model = mean_field_vae(W, b)
    exact = exact_log_px(x, W, b, SIGMA)
    reps = 4000
    torch.manual_seed(0)
    # Per example: [reps, B] independent draws of each estimator (x repeated in one batch).
    xr = x.repeat(reps, 1)
    draws = {1: model.elbo(xr).elbo.detach().view(reps, -1)}
    for k in (3, 10):
        draws[k] = model.log_likelihood(xr, num_samples=k).view(reps, -1)
    mean = {k: d.mean(0) for k, d in draws.items()}
    err = {k: d.std(0) / math.sqrt(reps) for k, d in draws.items()}
    assert (mean[3] - mean[1] > 4 * (err[3] + err[1])).all()  # ELBO < IWAE_3
    assert (mean[10] - mean[3] > 4 * (err[10] + err[3])).all()  # IWAE_3 < IWAE_10
    assert (exact - mean[10] > 4 * err[10]).all()  # IWAE_10 < log p(x)
    big = model.log_likelihood(x, num_samples=200_000, chunk_size=20_000)
    assert torch.allclose(big, exact, atol=0.005)
    assert (exact - big).abs().mean() < (exact - mean[3]).abs().mean() / 5


def test_every_example_gets_exactly_num_samples_draws(problem, monkeypatch):
    W, b, x = problem
    model = linear_gaussian_vae(W, b, SIGMA, posterior="diagonal")
    drawn = []
    original = model.log_weights_given

    def counting(q, xb, k, *, y=None):
        drawn.append(k)
        return original(q, xb, k, y=y)

    monkeypatch.setattr(model, "log_weights_given", counting)
    for chunk in (1, 3, 7, 10, 1000, None):
        drawn.clear()
        model.log_likelihood(x, num_samples=10, chunk_size=chunk)
        assert sum(drawn) == 10


def test_chunk_size_does_not_change_the_estimator(problem):
    W, b, x = problem
    model = mean_field_vae(W, b)
    reps = 300
    torch.manual_seed(1)
    whole = torch.stack([model.log_likelihood(x, 20) for _ in range(reps)])
    chunked = torch.stack([model.log_likelihood(x, 20, chunk_size=3) for _ in range(reps)])
    stderr = (whole.var(0) / reps + chunked.var(0) / reps).sqrt()
    assert ((whole.mean(0) - chunked.mean(0)).abs() < 4 * stderr).all()


def _small_config(**kwargs):
    base = dict(latent_dim=2, hidden_dims=[16], data_shape=[6], likelihood="gaussian")
    base.update(kwargs)
    return VAEConfig(**base)


def test_slide_loss_objective_equals_minus_two_elbo_minus_d_log_2pi():
    torch.manual_seed(0)
    model = VAE(_small_config())
    x = torch.randn(5, 6)
    q = model.encode(x)
    torch.manual_seed(7)
    loss, metrics = SlideLoss()(model, x)
    torch.manual_seed(7)  # the same reparameterised draw
    z = q.rsample((1,))
    log_px_z = model.decode(z).log_prob(x).mean(0)
    elbo = log_px_z - q.kl_standard_normal()
    expected = (-2 * elbo - 6 * LOG_2PI).mean().detach()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-12)
    assert float(metrics["elbo"]) == pytest.approx(float(elbo.mean().detach()), rel=1e-12)


def test_slide_loss_refuses_other_decoders():
    model = VAE(_small_config(likelihood="gaussian-learned"))
    with pytest.raises(ValueError, match="unit-variance"):
        SlideLoss()(model, torch.randn(2, 6))


def test_beta_weights_only_the_kl():
    torch.manual_seed(0)
    model = VAE(_small_config())
    x = torch.randn(4, 6)
    torch.manual_seed(1)
    loss1, m1 = NegativeELBO(beta=1.0)(model, x)
    torch.manual_seed(1)
    loss0, _ = NegativeELBO(beta=0.0)(model, x)
    assert float(loss1.detach()) == pytest.approx(float(-m1["elbo"]), rel=1e-12)
    assert float(loss0.detach()) == pytest.approx(float(-m1["log_px_z"]), rel=1e-12)


def test_ae_has_no_noise_and_trains_on_reconstruction_error():
    torch.manual_seed(0)
    model = AE(AEConfig(latent_dim=2, hidden_dims=[16], data_shape=[6], likelihood="gaussian"))
    x = torch.randn(3, 6)
    assert torch.equal(model.encode(x), model.encode(x))  # deterministic code
    loss, _ = ReconstructionObjective()(model, x)
    x_hat = model.decoder(model.encode(x))
    expected = (0.5 * ((x - x_hat) ** 2).sum(-1) + 3 * math.log(2 * math.pi)).mean()
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
    assert not model.has_likelihood and not hasattr(model, "log_likelihood")
    assert model.sample(4).shape == (4, 6)


@pytest.mark.parametrize(
    "network,shape", [("mlp", [3, 5]), ("conv", [1, 28, 28]), ("conv", [3, 32, 32])]
)
@pytest.mark.parametrize("likelihood", ["gaussian", "gaussian-heteroscedastic"])
def test_networks_give_the_data_shape(network, shape, likelihood):
    torch.manual_seed(0)
    model = VAE(_small_config(network=network, data_shape=shape, likelihood=likelihood))
    x = torch.randn(2, *shape)
    # The decoder writes what the likelihood reads: twice the channels with a decoded scale.
    doubled = likelihood == "gaussian-heteroscedastic"
    assert model.decoder(torch.zeros(2, 2)).shape[1] == (2 if doubled else 1) * shape[0]
    assert model.reconstruct(x).shape == (2, *shape)
    assert model.log_weights(x, 3).shape == (3, 2)
    assert model.sample(3).shape == (3, *shape)


def test_wrong_input_shape_is_a_clear_error():
    model = VAE(_small_config())
    with pytest.raises(ValueError, match=r"expected data of shape \[batch, 6\]"):
        model.elbo(torch.randn(2, 7))


@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_glorot_init_reaches_the_built_bodies_and_leaves_a_users_own(network):
    """``model.init = "glorot"`` re-draws every Linear and (transposed) convolution of the
    built encoder and decoder, biases zero; with tanh the codes' spread between inputs then
    grows past the default's; a body the user passes in keeps its own weights."""
    x = (torch.rand(256, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.13).to(
        torch.get_default_dtype()
    )
    spread, models = {}, {}
    for init in ("default", "glorot"):
        torch.manual_seed(0)
        config = VAEConfig(
            network=network,
            activation="tanh",
            init=init,
            latent_dim=20,
            likelihood="bernoulli",
            data_shape=[1, 28, 28],
        )
        models[init] = model = VAE(config)
        with torch.no_grad():
            spread[init] = model.encode(x).mean.std(dim=0).mean().item()
    assert spread["glorot"] > 1.5 * spread["default"], spread
    layers = [
        layer
        for body in models["glorot"].network_bodies()
        for layer in body.modules()
        if isinstance(layer, torch.nn.Linear | torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    ]
    assert len(layers) >= 4 and all(layer.bias.abs().max() == 0 for layer in layers)
    assert any(b.abs().max() > 0 for n, b in models["default"].named_parameters() if "bias" in n)

    own = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32))
    own.out_features = 32
    before = own[1].weight.detach().clone()
    VAE(models["glorot"].config, encoder=own)
    assert torch.equal(own[1].weight, before)
