"""The IAF posterior (Kingma et al. 2016) against exact answers: its log-determinant equals
the one autograd's Jacobian gives, each step is autoregressive, and log q(z|x) is the base
density minus that log-determinant."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

import vaekit
import vaekit.cli
from vaekit.distributions import POSTERIORS
from vaekit.distributions.flows import iaf_transform
from vaekit.models import VAE, VAEConfig

pytestmark = pytest.mark.usefixtures("float64")


def posterior(steps: int = 3, m: int = 4):
    torch.manual_seed(0)
    head = POSTERIORS["iaf"](feature_dim=5, latent_dim=m, flow_steps=steps).double()
    # Random, not the near-identity start, so the check sees every term of the Jacobian;
    # small enough that the gates stay away from 0, where the product of the steps'
    # triangular Jacobians (each with a tiny diagonal) is too ill-conditioned for slogdet.
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, 0.25)
    return head


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_log_determinant_equals_autograd_jacobian(steps):
    head = posterior(steps)
    q = head(torch.randn(3, 5))
    for b in range(3):
        h = q.context[b]
        z0 = torch.randn(4)
        _, log_det = iaf_transform(head.steps, z0, h)
        J = jacobian(lambda z, h=h: iaf_transform(head.steps, z, h)[0], z0)  # [m, m]
        sign, logabsdet = torch.linalg.slogdet(J)
        assert sign > 0 and log_det < -0.3  # a transform away from the identity
        assert torch.allclose(log_det, logabsdet, atol=1e-10)


def test_each_step_is_autoregressive():
    made = posterior(1).steps[0]
    h = torch.randn(posterior(1).context_dim)
    z = torch.randn(4)
    for output in (0, 1):  # the shift m_t and the gate s_t
        J = jacobian(lambda v, o=output: made(v, h)[o], z)  # [m, m]: output i on input j
        assert torch.equal(J, torch.tril(J, diagonal=-1))  # only z_{<i} reach output i
        assert (J.diagonal(offset=-1) != 0).all()  # and they do reach it


def test_log_q_is_the_base_density_minus_the_log_determinant():
    head = posterior(2)
    q = head(torch.randn(3, 5))
    torch.manual_seed(4)
    z = q.rsample((2,))  # [2, 3, 4]
    log_q = q.log_prob(z)
    torch.manual_seed(4)
    eps = torch.randn(2, 3, 4)
    z0 = q.loc0 + torch.exp(0.5 * q.log_var0) * eps
    base = torch.distributions.Normal(q.loc0, torch.exp(0.5 * q.log_var0)).log_prob(z0).sum(-1)
    for k in range(2):
        for b in range(3):
            h = q.context[b]
            J = jacobian(lambda v, h=h: iaf_transform(head.steps, v, h)[0], z0[k, b])
            assert torch.allclose(z[k, b], iaf_transform(head.steps, z0[k, b], h)[0])
            expected = base[k, b] - torch.linalg.slogdet(J).logabsdet
            assert torch.allclose(log_q[k, b], expected, atol=1e-10)
    with pytest.raises(ValueError, match="own draws"):
        q.log_prob(z.clone())


def test_a_vae_with_an_iaf_posterior_keeps_the_bound_ordering_and_round_trips(tmp_path):
    torch.manual_seed(0)
    config = VAEConfig(
        latent_dim=3, hidden_dims=[8], network="mlp", posterior="iaf", flow_steps=2,
        likelihood="gaussian", data_shape=[6],
    )  # fmt: skip
    model = VAE(config).double()
    x = torch.rand(4, 6, dtype=torch.float64)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x).elbo for _ in range(400)]).mean(0)
        iwae = torch.stack([model.log_likelihood(x, 50) for _ in range(40)]).mean(0)
    assert (elbo <= iwae + 0.05).all()
    vaekit.save(model, tmp_path / "m")
    loaded = vaekit.load(tmp_path / "m")
    torch.manual_seed(2)
    a = model.log_likelihood(x, 7)
    torch.manual_seed(2)
    assert torch.equal(a, loaded.log_likelihood(x, 7))
    assert len(loaded.posterior.steps) == 2


def test_cli_posterior_iaf_with_flow_steps(tmp_path):
    code = vaekit.cli.main([
        "train", "--data", "digits", "--posterior", "iaf", "--flow-steps", "3",
        "--latent-dim", "2", "--hidden-dims", "16", "--network", "mlp", "--max-steps", "3",
        "--device", "cpu", "--progress", "plain", "--set", "train.tensorboard=false",
        "--out", str(tmp_path / "run"),
    ])  # fmt: skip
    assert code == 0
    model = vaekit.load(tmp_path / "run")
    assert model.config.posterior == "iaf" and len(model.posterior.steps) == 3
    with pytest.raises(ValueError, match="own draws"):
        VAEConfig(posterior="iaf", prior="vamp")


def test_moments_are_reproducible_and_leave_the_random_stream_alone():
    """The Monte-Carlo mean and covariance use draws of their own with a fixed seed: two calls
    agree exactly, and the global generator is where it was (training stays reproducible)."""
    torch.manual_seed(0)
    head = POSTERIORS["iaf"](5, 3, flow_steps=2).double()
    q = head(torch.randn(4, 5, dtype=torch.float64))
    state = torch.random.get_rng_state()
    mean, cov = q.moments()
    assert torch.equal(torch.random.get_rng_state(), state)
    again_mean, again_cov = q.moments()
    assert torch.equal(mean, again_mean) and torch.equal(cov, again_cov)
    assert torch.equal(q.mean, mean)
    # The estimate is of q's mean: close to the average of many fresh draws.
    z = torch.stack([q.rsample() for _ in range(4000)])  # [S, B, m]
    assert torch.allclose(mean, z.mean(0), atol=6 * cov.diagonal(dim1=-2, dim2=-1).sqrt().max() / 8)
