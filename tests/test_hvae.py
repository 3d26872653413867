"""The hierarchical VAE against exact answers: a linear-Gaussian two-layer model has a
Gaussian marginal p(x), and the Ladder VAE's posterior is a product of Gaussians."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from vaekit import load_config
from vaekit.distributions import DiagonalGaussian
from vaekit.models import HierarchicalVAE, HVAEConfig
from vaekit.models.hvae import precision_weighted

pytestmark = pytest.mark.usefixtures("float64")


def linear_two_layer(inference: str, seed: int = 0):
    """An HVAE whose generative model is linear-Gaussian: z_2 ~ N(0, I_2),
    z_1 = A z_2 + a + N(0, diag(s)), x = B z_1 + b + N(0, I_4). Its marginal is
    p(x) = N(B a + b, B (A A^T + diag(s)) B^T + I). Returns (model, mean, covariance)."""
    torch.manual_seed(seed)
    config = HVAEConfig(
        latent_dims=[3, 2],
        hidden_dims=[[3], [2]],
        inference=inference,
        likelihood="gaussian",
        data_shape=[4],
    )
    model = HierarchicalVAE(config).double()
    layer = model.down[0]
    layer.body = nn.Identity()  # p(z_1|z_2): the head alone, linear in z_2
    model.decoder[0] = nn.Identity()  # p(x|z_1): mean B z_1 + b
    with torch.no_grad():
        layer.head.weight[3:].zero_()  # constant log-variances log s
        layer.head.bias[3:] = torch.tensor([-0.5, 0.2, 0.0])
    A, a = layer.head.weight[:3].detach(), layer.head.bias[:3].detach()
    s = layer.head.bias[3:].detach().exp()
    B, b = model.decoder[1].weight.detach(), model.decoder[1].bias.detach()
    cov = B @ (A @ A.T + torch.diag(s)) @ B.T + torch.eye(4)
    return model.eval(), B @ a + b, cov


@pytest.mark.parametrize("inference", ["bottom-up", "top-down"])
def test_importance_sampled_log_px_over_both_layers_meets_the_exact_marginal(inference):
    model, mean, cov = linear_two_layer(inference)
    x = MultivariateNormal(mean, cov).sample((64,))
    exact = MultivariateNormal(mean, cov).log_prob(x)  # [64]
    # Fit the inference networks (the generative model stays fixed, so p(x) does not move):
    # a closer q makes the importance weights' variance small enough for a tight check.
    inference_params = [*model.up_bodies.parameters(), *model.up_heads.parameters()]
    optimiser = torch.optim.Adam(inference_params, lr=1e-2)
    for _ in range(300):
        loss = -model.elbo(x, 4).elbo.mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    x, exact = x[:6], exact[:6]
    torch.manual_seed(1)
    elbo = torch.stack([model.elbo(x).elbo.detach() for _ in range(2000)]).mean(0)
    estimate = model.log_likelihood(x, num_samples=20000, chunk_size=5000)
    # The bound is below log p(x) (by KL(q || p(z|x)) > 0), and the IWAE estimate with
    # K = 20000 meets it: both checks fail if a layer's density, the KL or the weights miss
    # a term.
    assert (elbo < exact).all()
    assert torch.allclose(estimate, exact, atol=0.01), estimate - exact


def test_precision_weighted_posterior_is_the_normalised_product_of_two_gaussians():
    torch.manual_seed(2)
    up = DiagonalGaussian(torch.randn(5, 3), torch.randn(5, 3))
    prior = DiagonalGaussian(torch.randn(5, 3), torch.randn(5, 3))
    q = precision_weighted(up, prior)
    v1, v2 = up.log_var.exp(), prior.log_var.exp()
    var = 1.0 / (1.0 / v1 + 1.0 / v2)
    assert torch.allclose(q.log_var.exp(), var, atol=1e-12)
    assert torch.allclose(q.loc, var * (up.loc / v1 + prior.loc / v2), atol=1e-12)
    # The product's log-density differs from the sum of the two by a constant in z.
    z = torch.randn(7, 5, 3)
    gap = q.log_prob(z) - up.log_prob(z) - prior.log_prob(z)  # [7, 5]
    assert torch.allclose(gap, gap[:1].expand_as(gap), atol=1e-10)


def test_kl_between_diagonal_gaussians_matches_torch():
    torch.manual_seed(3)
    q = DiagonalGaussian(torch.randn(4, 3), torch.randn(4, 3))
    p = DiagonalGaussian(torch.randn(4, 3), torch.randn(4, 3))
    reference = kl_divergence(
        Normal(q.loc, q.log_var.mul(0.5).exp()), Normal(p.loc, p.log_var.mul(0.5).exp())
    ).sum(-1)
    assert torch.allclose(q.kl_diagonal_gaussian(p.loc, p.log_var), reference, atol=1e-12)


def test_the_preset_is_burda_et_al_two_layer_architecture():
    config = load_config("configs/mnist-hvae.toml").model
    assert config == HVAEConfig(data_shape=None, likelihood="bernoulli")  # = the defaults
    model = HierarchicalVAE(HVAEConfig(data_shape=[1, 28, 28], likelihood="bernoulli"))

    def shapes(module):
        return [tuple(m.weight.shape) for m in module.modules() if isinstance(m, nn.Linear)]

    # Inference x -> 200 -> 200 -> z_1 (100), z_1 -> 100 -> 100 -> z_2 (50); generation mirrored.
    assert shapes(model.up_bodies[0]) + shapes(model.up_heads[0]) == [
        (200, 784), (200, 200), (200, 200)
    ]  # fmt: skip
    assert shapes(model.up_bodies[1]) + shapes(model.up_heads[1]) == [
        (100, 100), (100, 100), (100, 100)
    ]  # fmt: skip
    assert shapes(model.down[0]) == [(100, 50), (100, 100), (200, 100)]
    assert shapes(model.decoder) == [(200, 100), (200, 200), (784, 200)]
    assert all(isinstance(m, nn.Tanh) for m in model.modules() if isinstance(m, nn.Tanh | nn.ReLU))
    assert model.latent_dim == 150


@pytest.mark.parametrize("inference", ["bottom-up", "top-down"])
def test_both_inference_orders_train_and_keep_the_bound_ordering(inference):
    torch.manual_seed(0)
    config = HVAEConfig(
        latent_dims=[4, 2], hidden_dims=[[8], [4]], inference=inference,
        likelihood="bernoulli", data_shape=[6],
    )  # fmt: skip
    model = HierarchicalVAE(config).double()
    x = torch.rand(16, 6).round().double()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = -model.elbo(x).elbo.mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert math.isfinite(float(loss.detach()))
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x).elbo for _ in range(400)]).mean(0)
        iwae = torch.stack([model.log_likelihood(x, 50) for _ in range(40)]).mean(0)
    assert (elbo <= iwae + 0.05).all()


@pytest.mark.parametrize("prior", ["standard-normal", "vamp"])
@pytest.mark.parametrize("inference", ["bottom-up", "top-down"])
def test_the_elbo_is_the_mean_log_weight(inference, prior):
    # ELBO = E_q[log p(x|z_1) + log p(z_1..L) - log q(z_1..L|x)]: the training objective's
    # KL terms (closed form or Monte Carlo, per layer, and the prior's own for the top) and
    # the importance weights' log-densities are computed apart, so they must agree in
    # expectation. A missing or double-counted layer would be nats off.
    torch.manual_seed(0)
    config = HVAEConfig(
        latent_dims=[4, 2], hidden_dims=[[8], [4]], inference=inference, prior=prior,
        num_pseudo_inputs=3, likelihood="bernoulli", data_shape=[6],
    )  # fmt: skip
    model = HierarchicalVAE(config).double()
    with torch.no_grad():  # posteriors that differ between inputs: every KL term is nats
        for weight in [*model.up_bodies.parameters(), *model.up_heads.parameters()]:
            weight.mul_(3.0)
        if prior == "vamp":  # pseudo-inputs unlike the data
            model.prior.pseudo_inputs.normal_(0.0, 4.0)
    x = torch.rand(5, 6).round().double()
    n = 20000
    with torch.no_grad():
        elbo = model.elbo(x, num_mc_samples=n).elbo  # [5], the mean over n draws
        log_w = model.log_weights(x, n)  # [n, 5]
    # both are means of n draws with about the same spread: their difference's SE
    stderr = log_w.std(0) * math.sqrt(2.0 / n)
    assert ((elbo - log_w.mean(0)).abs() < 5 * stderr).all(), (elbo - log_w.mean(0)) / stderr


def test_bad_configs_name_the_field():
    with pytest.raises(ValueError, match=r"model\.latent_dims"):
        HVAEConfig(latent_dims=[10])
    with pytest.raises(ValueError, match=r"model\.hidden_dims"):
        HVAEConfig(hidden_dims=[[200, 200]])


def test_evaluate_counts_active_units_per_layer():
    from vaekit.evaluation.latent_statistics import latent_statistics

    torch.manual_seed(0)
    config = HVAEConfig(
        latent_dims=[4, 2], hidden_dims=[[8], [4]], likelihood="gaussian", data_shape=[6]
    )
    model = HierarchicalVAE(config).double()
    with torch.no_grad():  # z_2's posterior mean ignores x: no active unit in layer 2
        model.up_heads[1].weight[:2].zero_()
        model.up_heads[1].bias[2:].fill_(-20.0)  # and a tiny variance, so the mean is exact
        model.up_heads[0].bias[4:].fill_(-20.0)
    stats = latent_statistics(model, torch.randn(300, 6))
    per_layer = stats["active_units_per_layer"]
    assert len(per_layer) == 2 and sum(per_layer) == stats["active_units"]
    assert per_layer[1] == 0 and per_layer[0] > 0


@pytest.mark.parametrize("inference", ["bottom-up", "top-down"])
def test_glorot_initialisation_passes_the_signal_through_a_tanh_model(inference):
    """Burda et al.'s tanh architecture on MNIST-sized input: with ``init = "glorot"`` the
    posterior means differ between images, and the decoder's logits between codes, by O(1)
    at initialisation; with PyTorch's default they differ by about 0.05 and 0.14, which is
    why a warmed-up run needs the option (training otherwise sits at the pixel marginals)."""
    x = (torch.rand(256, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.13).to(
        torch.get_default_dtype()
    )  # MNIST's share of ink
    spread = {}
    for init in ("default", "glorot"):
        torch.manual_seed(0)
        config = HVAEConfig(
            inference=inference, init=init, likelihood="bernoulli", data_shape=[1, 28, 28]
        )
        model = HierarchicalVAE(config)
        with torch.no_grad():
            means = torch.cat([q.loc for q in model.proposal(x)], dim=-1)  # bottom-up pass
            logits = model.decoder(torch.randn(256, 100)).flatten(1)
        spread[init] = (means.std(dim=0).mean().item(), logits.std(dim=0).mean().item())
    assert min(spread["glorot"]) > 0.3, spread
    assert max(spread["default"]) < 0.2, spread
    assert all(b.abs().max() == 0 for n, b in model.named_parameters() if n.endswith("bias"))


def test_each_layers_decoder_follows_the_conditional_means_down_to_x():
    """Decode by layer: layer 2's decoder is z_1 = E[z_1|z_2], then p(x|z_1)'s parameters;
    layer 1's is the decoder of x itself."""
    torch.manual_seed(0)
    config = HVAEConfig(
        latent_dims=[3, 2], hidden_dims=[[8], [6]], likelihood="gaussian", data_shape=[1, 2, 2]
    )
    model = HierarchicalVAE(config).eval()
    z2 = torch.randn(4, 2)
    with torch.no_grad():
        z1 = model.down[0](z2).loc
        want = model.decode_params(torch.cat([z1, z2], dim=-1))
        torch.testing.assert_close(model.group_decoder(1)(z2), want, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(model.group_decoder(0)(z1), want, atol=1e-6, rtol=1e-6)
    assert model.latent_layers == (3, 2)
