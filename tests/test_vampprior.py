"""The VampPrior (Tomczak & Welling 2018) against brute force: its log-density is the exact
mixture of the model's posteriors at the pseudo-inputs, for the VAE and the hierarchical VAE."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from torch.distributions import MultivariateNormal

import vaekit
import vaekit.cli
from vaekit.models import VAE, HierarchicalVAE, HVAEConfig, VAEConfig

pytestmark = pytest.mark.usefixtures("float64")


def vae(posterior: str = "diagonal") -> VAE:
    torch.manual_seed(0)
    config = VAEConfig(
        latent_dim=3, hidden_dims=[8], network="mlp", posterior=posterior, prior="vamp",
        num_pseudo_inputs=5, likelihood="gaussian", data_shape=[6],
    )  # fmt: skip
    return VAE(config).double()


def hvae(inference: str) -> HierarchicalVAE:
    torch.manual_seed(0)
    config = HVAEConfig(
        latent_dims=[4, 3], hidden_dims=[[8], [8]], inference=inference, prior="vamp",
        num_pseudo_inputs=5, likelihood="gaussian", data_shape=[6],
    )  # fmt: skip
    return HierarchicalVAE(config).double()


def brute_force_log_density(components, z: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k N(z; mu_k, Sigma_k), one component at a time with explicit
    multivariate normals, summed in probability space (float64, small z)."""
    total = torch.zeros(z.shape[:-1], dtype=z.dtype)
    K = components.mean.shape[0]
    for k in range(K):
        cov = components.covariance_matrix[k]
        total += MultivariateNormal(components.mean[k], covariance_matrix=cov).log_prob(z).exp()
    return (total / K).log()


@pytest.mark.parametrize(
    "make", [lambda: vae("diagonal"), lambda: vae("full"), lambda: hvae("bottom-up"),
             lambda: hvae("top-down")],
    ids=["vae-diagonal", "vae-full", "hvae-bottom-up", "hvae-top-down"],
)  # fmt: skip
def test_mixture_log_density_equals_brute_force(make):
    model = make()
    prior = model.prior
    components = prior.components()
    # The components are the model's own posteriors at the pseudo-inputs.
    assert torch.equal(components.mean, model.top_posterior(prior.pseudo_inputs).mean)
    z = 0.5 * torch.randn(7, 2, prior.latent_dim)
    expected = brute_force_log_density(components, z)
    assert torch.allclose(prior.log_prob(z), expected, atol=1e-10)


def test_samples_follow_the_mixture():
    model = vae("full")
    prior = model.prior
    with torch.no_grad():
        z = prior.sample(40000, generator=torch.Generator().manual_seed(0))
        q = prior.components()
        mean = q.mean.mean(0)  # mixture mean
        second = (q.covariance_matrix + q.mean[:, :, None] * q.mean[:, None, :]).mean(0)
        cov = second - mean[:, None] * mean[None, :]
    stderr = (cov.diagonal() / z.shape[0]).sqrt()
    assert ((z.mean(0) - mean).abs() < 5 * stderr).all()
    assert torch.allclose(torch.cov(z.T), cov, atol=0.05)

    def draw():
        return prior.sample(5, generator=torch.Generator().manual_seed(1))

    assert torch.equal(draw(), draw())  # the generator alone decides the draws


def test_pseudo_inputs_are_learned_and_saved(tmp_path):
    model = vae()
    x = torch.rand(4, 6, dtype=torch.float64)
    model.elbo(x).elbo.sum().backward()
    assert model.prior.pseudo_inputs.grad.abs().sum() > 0
    assert "prior.pseudo_inputs" in model.state_dict()
    vaekit.save(model, tmp_path / "m")
    loaded = vaekit.load(tmp_path / "m")
    z = torch.randn(3, 3, dtype=torch.float64)
    assert torch.equal(loaded.prior.log_prob(z), model.prior.log_prob(z))


def test_kl_is_the_monte_carlo_estimate_at_the_elbo_draws():
    model = vae()
    x = torch.rand(4, 6, dtype=torch.float64)
    torch.manual_seed(3)
    terms = model.elbo(x)
    torch.manual_seed(3)
    q = model.encode(x)
    z = q.rsample((1,))
    expected = (q.log_prob(z) - model.prior.log_prob(z)).mean(0)
    assert torch.allclose(terms.kl, expected, atol=1e-12)
    assert not math.isnan(float(terms.elbo.detach().sum()))


@pytest.mark.parametrize("make", [vae, lambda: hvae("top-down")], ids=["vae", "hvae"])
def test_log_likelihood_computes_the_components_once(make, monkeypatch):
    model = make()
    x = torch.rand(3, 6, dtype=torch.float64)
    calls = []
    encode = model.prior._components
    monkeypatch.setattr(model.prior, "_components", lambda u: calls.append(1) or encode(u))
    torch.manual_seed(5)
    held = model.log_likelihood(x, num_samples=12, chunk_size=4)
    assert len(calls) == 1  # not once per chunk of draws
    assert model.prior._held is None  # released: training sees the weights move again
    # The same draws with the components recomputed at every chunk: the same numbers.
    monkeypatch.setattr(model, "held_fixed", contextlib.nullcontext)
    torch.manual_seed(5)
    fresh = model.log_likelihood(x, num_samples=12, chunk_size=4)
    assert len(calls) >= 1 + 3  # at least once per chunk
    assert torch.equal(held, fresh)


@pytest.mark.parametrize("model", ["vae", "hvae"])
def test_trains_from_the_cli_with_the_vamp_prior(tmp_path, model):
    settings = {
        "vae": ["--latent-dim", "2", "--hidden-dims", "16", "--network", "mlp"],
        "hvae": ["--set", "model.latent_dims=[3, 2]", "--set", "model.hidden_dims=[[16], [8]]"],
    }[model]
    code = vaekit.cli.main([
        "train", "--model", model, "--data", "digits", "--max-steps", "3", "--device", "cpu",
        "--set", 'model.prior="vamp"', "--set", "model.num_pseudo_inputs=10",
        "--set", "train.tensorboard=false", "--progress", "plain", *settings,
        "--out", str(tmp_path / "run"),
    ])  # fmt: skip
    assert code == 0
    loaded = vaekit.load(tmp_path / "run")
    assert loaded.config.prior == "vamp" and loaded.prior.pseudo_inputs.shape == (10, 1, 8, 8)


def test_the_matrix_product_form_equals_the_broadcast_density():
    # The diagonal family's log_prob_each (one matrix product) against log_prob broadcast
    # over the batch, at a VampPrior's size (500 components of 40 dimensions, variances from
    # 1e-3 to 10): equal in float64; for float32 inputs outside autograd (every reported
    # number), equal to the float64 density of those same inputs up to the final rounding
    # to float32 (the products run in float64).
    from vaekit.distributions import DiagonalGaussian

    g = torch.Generator().manual_seed(0)
    f32 = torch.float32  # values float32 can hold exactly, so both dtypes see the same inputs
    loc = torch.randn(500, 40, generator=g, dtype=f32).double()
    log_var = torch.empty(500, 40, dtype=f32).uniform_(-7.0, 2.3, generator=g).double()
    z = (torch.randn(3, 64, 40, generator=g, dtype=f32) * 1.5).double()
    q = DiagonalGaussian(loc, log_var)
    broadcast = q.log_prob(z.unsqueeze(-2))  # [3, 64, 500]
    assert torch.allclose(q.log_prob_each(z), broadcast, rtol=1e-12, atol=1e-9)
    single = DiagonalGaussian(loc.float(), log_var.float()).log_prob_each(z.float())
    assert single.dtype == torch.float32
    assert torch.allclose(single.double(), broadcast, rtol=1.2e-7, atol=1e-6)  # half an ulp


def casts_in(node) -> set[str]:
    """The dtype casts (``ToCopyBackward``) in the autograd graph below ``node``."""
    seen, found, stack = set(), set(), [node]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if "ToCopy" in node.name():
            found.add(node.name())
        stack.extend(next_node for next_node, _ in node.next_functions)
    return found


def test_under_autograd_the_float32_products_stay_within_a_hundredth_of_a_nat():
    # In a training step the products run in the input's float32. The mixture's log-density
    # and its gradients must stay close to float64's at draws near the components (where the
    # expanded square cancels most), with variances down to 1e-3; outside autograd the same
    # float32 tensors get the float64 products back.
    from vaekit.distributions import DiagonalGaussian

    g, f32 = torch.Generator().manual_seed(0), torch.float32  # the module's default is float64
    loc = torch.randn(500, 40, generator=g, dtype=f32)
    log_var = torch.empty(500, 40, dtype=f32).uniform_(-7.0, 2.3, generator=g)
    k = torch.randint(0, 500, (3, 64), generator=g)
    z = loc[k] + torch.randn(3, 64, 40, generator=g, dtype=f32) * torch.exp(0.5 * log_var[k])

    def mixture(loc, log_var, z):
        return torch.logsumexp(DiagonalGaussian(loc, log_var).log_prob_each(z), dim=-1)

    exact = [t.double().requires_grad_() for t in (loc, log_var, z)]
    fast = [t.clone().requires_grad_() for t in (loc, log_var, z)]
    reference, trained = mixture(*exact), mixture(*fast)
    assert trained.dtype == torch.float32
    assert not casts_in(trained.grad_fn)  # the float32 path: no float64 round trip recorded
    assert casts_in((fast[0].double() * 2.0).grad_fn)  # which a float64 path would record
    assert (trained.double() - reference).abs().max() < 1e-2
    reference.sum().backward()
    trained.sum().backward()
    for f, e in zip(fast, exact, strict=True):
        assert (f.grad.double() - e.grad).abs().max() <= 2e-4 * e.grad.abs().max()
    with torch.no_grad():
        reported = mixture(*fast)
    assert (reported.double() - reference).abs().max() < 1e-5  # float64 products, one rounding


def test_importance_sampled_log_likelihood_is_the_straightforward_formula():
    # The evaluator's log p(x) for a VampPrior Bernoulli model (the record's families, small)
    # against the formula written out with torch.distributions in float64 at the same draws:
    # Bernoulli log-probabilities, the mixture summed over its components, q's density. The
    # posteriors are narrow and spread out as a trained model's are, so most components lie
    # far below the nearest (the floored exponentials) and the expanded square cancels.
    from torch.distributions import Bernoulli, Normal

    f32 = torch.float32
    torch.manual_seed(0)
    config = VAEConfig(
        latent_dim=4, hidden_dims=[16], network="mlp", prior="vamp", num_pseudo_inputs=7,
        likelihood="bernoulli", data_shape=[12],
    )  # fmt: skip
    model = VAE(config).to(f32).eval()
    with torch.no_grad():
        model.posterior.head.weight[:4] *= 30.0  # means spread over tens of units
        model.posterior.head.bias[4:] = -6.0  # standard deviations near 0.05
    x = torch.bernoulli(torch.full((5, 12), 0.4, dtype=f32), generator=torch.Generator())
    with torch.no_grad():  # a component at each example, two elsewhere, as after training
        model.prior.pseudo_inputs[:5] = x
    num_samples, chunk = 50, 7
    torch.manual_seed(3)
    estimate = model.log_likelihood(x, num_samples, chunk)
    torch.manual_seed(3)
    with torch.no_grad():
        q, components = model.encode(x), model.prior.components()
        log_w = []
        for start in range(0, num_samples, chunk):
            z = q.rsample((min(chunk, num_samples - start),))  # the same draws, in order
            log_px_z = Bernoulli(logits=model.decoder(z).double()).log_prob(x.double()).sum(-1)
            each = Normal(components.loc.double(), components.scale.double())
            log_pz = torch.logsumexp(each.log_prob(z.double().unsqueeze(-2)).sum(-1), dim=-1)
            log_pz = log_pz - math.log(7)
            log_qz = Normal(q.loc.double(), q.scale.double()).log_prob(z.double()).sum(-1)
            log_w.append(log_px_z + log_pz - log_qz)
        reference = torch.logsumexp(torch.cat(log_w), dim=0) - math.log(num_samples)
    assert estimate.dtype == f32
    assert (estimate.double() - reference).abs().max() < 1e-5  # nats, on log p(x) near -10
