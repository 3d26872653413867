"""The deep top-down hierarchical VAE: exact answers on a model small enough to integrate."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from vaekit.models import DeepHierarchicalVAE, DeepHVAEConfig
from vaekit.settings import ConfigError


def build(
    latent_dims,
    width=8,
    cell="residual",
    data_shape=(1,),
    prior="standard-normal",
    network="mlp",
):
    config = DeepHVAEConfig(
        latent_dims=list(latent_dims),
        network=network,
        width=width,
        cell=cell,
        prior=prior,
        num_pseudo_inputs=3,
        likelihood="gaussian",
        data_shape=list(data_shape),
    )
    return DeepHierarchicalVAE(config)


def randomise(model: torch.nn.Module, seed: int = 0, scale: float = 0.25) -> None:
    """Move every parameter off its initial value (the zero-initialised cells and prior heads
    make an untrained model too simple to test the wiring)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_an_untrained_model_is_a_shallow_one():
    """Zero-initialised cell outputs and prior heads: every conditional prior is N(0, I)."""
    model = build([2, 3, 2], cell="gated")
    s = torch.randn(5, 8)
    for head in model.prior_heads:
        p = head(s)
        assert torch.equal(p.loc, torch.zeros_like(p.loc))
        assert torch.equal(p.log_var, torch.zeros_like(p.log_var))
    for cells in [*model.up, *model.down]:
        assert torch.equal(cells(s), s)


@pytest.mark.parametrize("cell", ["residual", "gated"])
def test_importance_sampled_log_px_matches_numerical_integration(cell):
    """Two 1-d groups, 1-d data: log p(x) = log ∫∫ p(x|z1,z2) p(z1|z2) p(z2) dz1 dz2 on a
    grid, against the model's importance-sampled estimate with K = 50000."""
    torch.manual_seed(0)
    model = build([1, 1], cell=cell).double()
    randomise(model)
    x = torch.tensor([[0.7], [-1.3]], dtype=torch.float64)
    grid = torch.linspace(-9, 9, 721, dtype=torch.float64)
    step = float(grid[1] - grid[0])
    z1, z2 = torch.meshgrid(grid, grid, indexing="ij")
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=-1)  # [G, 2] bottom first
    with torch.no_grad():
        s_top = model.start.expand(z.shape[0], -1)
        p1 = model.prior_heads[0](model.down[1](s_top + model.project[1](z[:, 1:])))
        log_prior = model.prior.log_prob(z[:, 1:]) + p1.log_prob(z[:, :1])
        exact = []
        for row in x:
            log_lik = model.decode(z).log_prob(row.expand(z.shape[0], 1)).reshape(-1)
            exact.append(torch.logsumexp(log_lik + log_prior, 0) + 2 * math.log(step))
        torch.manual_seed(1)
        estimate = model.log_likelihood(x, 50000)
    torch.testing.assert_close(estimate, torch.stack(exact), atol=0.02, rtol=0)


# The same wiring checks on both stream types: dense (4-d data) and convolutional (8x8
# images: a 2x2 grid, so a group of c channels is 4c numbers).
NETWORKS = {"mlp": ((4,), 8, 20000), "conv": ((1, 8, 8), 4, 4000)}


@pytest.mark.parametrize("network", NETWORKS)
def test_elbo_is_the_mean_log_weight_and_a_lower_bound(network):
    """With closed-form group KLs, E_q[log w] is the ELBO; log-mean-exp is above it."""
    torch.manual_seed(0)
    shape, width, draws = NETWORKS[network]
    model = build([2, 2, 3], width=width, data_shape=shape, network=network).double()
    randomise(model, scale=0.1)
    x = torch.randn(3, *shape, dtype=torch.float64)
    with torch.no_grad():
        elbo = model.elbo(x, num_mc_samples=draws).elbo
        log_w = model.log_weights(x, draws)  # [K, B]
    stderr = log_w.std(0) / math.sqrt(draws)
    assert bool(((log_w.mean(0) - elbo).abs() < 5 * stderr + 1e-6).all())
    assert bool((torch.logsumexp(log_w, 0) - math.log(draws) > elbo).all())


@pytest.mark.parametrize("network", NETWORKS)
def test_group_kls_sum_to_the_kl_and_decode_is_the_chains_likelihood(network):
    torch.manual_seed(0)
    shape, width, _ = NETWORKS[network]
    model = build([2, 1, 3], width=width, data_shape=shape, network=network).double()
    randomise(model, scale=0.1)
    x = torch.randn(5, *shape, dtype=torch.float64)
    terms = model.elbo(x)
    groups = terms.kl_groups
    assert groups.shape == (5, 3)
    torch.testing.assert_close(groups.sum(-1), terms.kl)
    s, zs, _, _ = model._top_down(model.proposal(x), None, 1)
    chain = model.likelihood(model._params(s))
    decoded = model.decode(torch.cat(zs, dim=-1)[0])
    torch.testing.assert_close(decoded.log_prob(x), chain.log_prob(x)[0])


def test_vampprior_at_the_top():
    model = build([2, 2], data_shape=(4,), prior="vamp")
    x = torch.rand(3, 4)
    assert model.top_posterior(x).loc.shape == (3, 2)
    assert model.log_likelihood(x, 8).shape == (3,)
    assert model.sample(4).shape == (4, 4)


def test_conv_groups_are_channel_maps_on_a_quarter_resolution_grid():
    """28x28 images: the stream is 7x7, a group of c channels is 49c numbers, and the code,
    the draws and the pictures have the shapes that follow."""
    model = build([2, 3], width=8, data_shape=(1, 28, 28), network="conv", prior="vamp")
    assert model.state_shape == (8, 7, 7)
    assert model.group_sizes == [98, 147]
    assert model.latent_dim == 245
    x = torch.rand(3, 1, 28, 28)
    assert model.encode(x).shape == (3, 245)
    assert model.top_posterior(x).loc.shape == (3, 147)
    assert model.log_likelihood(x, 4).shape == (3,)
    assert model.sample(2).shape == (2, 1, 28, 28)


def test_conv_layers_treat_every_leading_draw_alike():
    """Cells and heads fold the K draws into the batch and back: applying them to ``[K, B,
    ...]`` equals applying them to each draw's ``[B, ...]``."""
    torch.manual_seed(0)
    model = build([2, 2], width=4, data_shape=(1, 8, 8), network="conv", cell="gated")
    randomise(model)
    s = torch.randn(3, 5, 4, 2, 2)
    together = model.down[0](s)
    head = model.prior_heads[0](s)
    for k in range(3):
        torch.testing.assert_close(together[k], model.down[0](s[k]))
        torch.testing.assert_close(head.loc[k], model.prior_heads[0](s[k]).loc)
    z = torch.randn(3, 5, 8)
    torch.testing.assert_close(model.project[0](z)[1], model.project[0](z[1]))


def test_an_untrained_conv_model_is_a_shallow_one():
    model = build([2, 2], width=4, data_shape=(1, 8, 8), network="conv")
    s = torch.randn(5, 4, 2, 2)
    p = model.prior_heads[0](s)
    assert torch.equal(p.loc, torch.zeros(5, 8)) and torch.equal(p.log_var, torch.zeros(5, 8))
    for cells in [*model.up, *model.down]:
        assert torch.equal(cells(s), s)


@pytest.mark.parametrize("shape", [(4,), (1, 30, 28), (1, 28)])
def test_conv_refuses_data_it_cannot_grid(shape):
    with pytest.raises(ConfigError, match=r"model\.network = 'conv' needs images"):
        build([2], data_shape=shape, network="conv")


def test_width_default_follows_the_network():
    assert DeepHVAEConfig(network="mlp").width == 512
    assert DeepHVAEConfig(network="conv").width == 64


def prior_mean_path(model, group: int, z_group: torch.Tensor) -> torch.Tensor:
    """The full code ``[B, latent_dim]`` the explorer decodes for ``z_group``: every other
    group at its prior mean, the top at p(z_L)'s, the others at p(z_g|z_{>g})'s, run through
    the model's own top-down modules."""
    L = model.num_groups
    s = model.start.expand(z_group.shape[0], -1)
    zs = [None] * L
    for g in range(L - 1, -1, -1):
        if g == group:
            z = z_group
        elif g == L - 1:
            z = model.prior.mean().expand(z_group.shape[0], -1)
        else:
            z = model.prior_heads[g](s).loc
        zs[g] = z
        s = model.down[g](s + model.project[g](z))
    return torch.cat(zs, dim=-1)


@pytest.mark.parametrize("cell", ["residual", "gated"])
@pytest.mark.parametrize("prior", ["standard-normal", "vamp"])
def test_each_groups_decoder_holds_the_other_groups_at_their_prior_means(cell, prior):
    """Decode by group: group g's decoder is the top-down decode with the groups above at
    their prior means and the groups below at their conditional prior means."""
    model = build([2, 3, 2], width=8, cell=cell, data_shape=(1, 2, 3), prior=prior).eval()
    randomise(model, seed=4)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        top = model.prior.mean()
        assert top.shape == (2,)
        if prior == "vamp":  # the mixture's mean: the mean of its components' means
            torch.testing.assert_close(
                top, model.top_posterior(model.prior.pseudo_inputs).loc.mean(0)
            )
        for group, m in enumerate(model.latent_layers):
            z = torch.randn(4, m, generator=g)
            got = model.group_decoder(group)(z)
            want = model.decode_params(prior_mean_path(model, group, z))
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
            assert got.shape == (4, 1, 2, 3)
            # the groups below are not held at zero: the decode differs from that
            zero_below = prior_mean_path(model, group, z)
            zero_below[:, : sum(model.latent_layers[:group])] = 0.0
            if group > 0:
                assert not torch.allclose(model.decode_params(zero_below), got, atol=1e-4)


def test_the_preset_is_a_dense_gated_hierarchy_with_a_vampprior_on_top():
    """configs/mnist-deep.toml builds what its comment says, and one step of its objective
    (the ELBO with KL warm-up and free bits per group) gives a finite loss and a gradient in
    every group's heads."""
    from vaekit.config import load_config
    from vaekit.distributions.priors import VampPrior
    from vaekit.objectives import build_objective

    config = load_config("configs/mnist-deep.toml")
    model = DeepHierarchicalVAE(dataclasses.replace(config.model, data_shape=[1, 28, 28]))
    assert model.latent_layers == (32, 32, 32, 40)
    assert isinstance(model.prior, VampPrior) and model.prior.pseudo_inputs.shape[0] == 500
    assert model.up[0][0].gated and model.config.width == 256
    assert (config.objective.name, config.objective.kl_warmup_steps) == ("elbo", 5000)
    assert config.objective.free_bits > 0 and config.train.grad_skip_threshold is not None
    objective = build_objective(config.objective, model)
    x = (torch.rand(4, 1, 28, 28) < 0.5).float()
    loss, _ = objective(model, x, None)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(head.hidden.weight.grad.abs().sum() > 0 for head in model.posterior_heads)


@pytest.mark.parametrize(("name", "minutes"), [("mnist-deep-1h", 59.5), ("mnist-deep-2h", 119.5)])
def test_the_record_budget_presets_are_the_deep_preset_with_a_budget(name, minutes):
    """mnist-deep-1h and -2h train what mnist-deep trains (the model that won the 15-minute
    comparison) and differ only in the training budget: a step count for the cosine
    schedule, and the wall-clock hard stop."""
    from vaekit.config import load_config

    deep, record = load_config("mnist-deep"), load_config(name)
    for section in ("data", "model", "objective", "optim", "schedule"):
        assert getattr(record, section) == getattr(deep, section), section
    assert record.train.max_minutes == minutes and record.train.epochs is None
    changed = {k for k, v in vars(record.train).items() if getattr(deep.train, k) != v}
    assert changed == {"max_steps", "max_minutes", "log_every"}
    # Both sized from the same measured rate: the same steps per minute of the hard stop.
    one_hour = load_config("mnist-deep-1h").train
    rate = record.train.max_steps / minutes
    assert rate == pytest.approx(one_hour.max_steps / one_hour.max_minutes, rel=0.05)
