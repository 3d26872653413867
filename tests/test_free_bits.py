"""Free bits and KL warm-up: the clamp on a hand example, the logged ELBO stays the true ELBO,
the KL groups sum to the KL, and the options are refused where they have no meaning."""

from __future__ import annotations

import pytest
import torch

from helpers import tiny
from vaekit.config import Config, ConfigError
from vaekit.models import VAE, ELBOTerms, HierarchicalVAE, HVAEConfig, VAEConfig
from vaekit.objectives import NegativeELBO, build_objective
from vaekit.training import train
from vaekit.training.schedules import kl_weight


class FixedTerms:
    """A stand-in model whose ELBO terms are given numbers (nats)."""

    def __init__(self, log_px_z, kl_groups) -> None:
        self.log_px_z = torch.tensor(log_px_z, dtype=torch.float64)
        self.kl_groups = torch.tensor(kl_groups, dtype=torch.float64)

    def elbo(self, x, num_mc_samples=1, *, y=None) -> ELBOTerms:
        kl = self.kl_groups.sum(-1)
        return ELBOTerms(self.log_px_z - kl, self.log_px_z, kl, lambda: self.kl_groups)


def test_free_bits_clamp_the_batch_mean_of_each_group():
    # two examples, two latent coordinates; lambda = 0.5 nats
    model = FixedTerms([-3.0, -5.0], [[0.1, 2.0], [0.3, 0.0]])
    loss, metrics = NegativeELBO(free_bits=0.5)(model, torch.zeros(2))
    # batch means per coordinate: [0.2, 1.0] -> clamped [0.5, 1.0] -> 1.5 nats; the clamp is
    # after the mean (clamping each example first would give 0.5+2.0+0.5+0.5 = 3.5 / 2 = 1.75)
    assert float(metrics["kl_free_bits"]) == pytest.approx(1.5)
    assert float(loss) == pytest.approx(4.0 + 1.5)
    # the logged ELBO is the true one: mean(log p(x|z) - KL) = mean(-5.1, -5.3)
    assert float(metrics["elbo"]) == pytest.approx(-5.2)
    assert float(metrics["kl"]) == pytest.approx(1.2)
    # beta (KL warm-up) weights the clamped KL
    loss, _ = NegativeELBO(beta=0.5, free_bits=0.5)(model, torch.zeros(2))
    assert float(loss) == pytest.approx(4.0 + 0.75)
    # lambda = 0 is the plain negative ELBO
    loss, metrics = NegativeELBO()(model, torch.zeros(2))
    assert float(loss) == pytest.approx(5.2) and "kl_free_bits" not in metrics


def test_groups_below_lambda_get_no_kl_gradient():
    mu = torch.tensor([[0.1, 2.0], [0.3, -1.0]], requires_grad=True)

    class Model:
        def elbo(self, x, num_mc_samples=1, *, y=None):
            groups = 0.5 * mu.square()  # KL of N(mu, 1) to N(0, 1), per coordinate
            zero = torch.zeros(2)
            return ELBOTerms(-groups.sum(-1), zero, groups.sum(-1), lambda: groups)

    loss, _ = NegativeELBO(free_bits=0.1)(Model(), torch.zeros(2))
    loss.backward()
    # coordinate 0: mean KL (0.005 + 0.045) / 2 = 0.025 < 0.1, clamped: no gradient;
    # coordinate 1: mean KL 1.25 > 0.1: d/dmu of mean(mu^2 / 2) = mu / 2
    assert torch.equal(mu.grad[:, 0], torch.zeros(2))
    assert torch.allclose(mu.grad[:, 1], mu.detach()[:, 1] / 2)


@pytest.mark.parametrize("posterior, groups", [("diagonal", 3), ("full", 1)])
def test_vae_kl_groups_sum_to_the_kl(posterior, groups):
    torch.manual_seed(0)
    config = VAEConfig(
        latent_dim=3, network="mlp", hidden_dims=[8], likelihood="gaussian", data_shape=[4]
    )
    config.posterior = posterior
    model = VAE(config)
    terms = model.elbo(torch.randn(5, 4))
    assert terms.kl_groups.shape == (5, groups)
    assert torch.allclose(terms.kl_groups.sum(-1), terms.kl)


@pytest.mark.parametrize("inference", ["bottom-up", "top-down"])
def test_hvae_kl_groups_are_its_layers(inference):
    """A hierarchical VAE's free-bits groups are its stochastic layers, so a layer whose KL
    has fallen below lambda (a collapsing top layer) is clamped on its own."""
    torch.manual_seed(0)
    config = HVAEConfig(
        latent_dims=[3, 2], hidden_dims=[[8], [4]], inference=inference,
        likelihood="gaussian", data_shape=[4],
    )  # fmt: skip
    model = HierarchicalVAE(config)
    x = torch.randn(5, 4)
    terms = model.elbo(x)
    assert terms.kl_groups.shape == (5, 2)
    assert torch.allclose(terms.kl_groups.sum(-1), terms.kl)
    # a lambda above both layers' KL: the loss charges exactly lambda per layer
    lam = float(terms.kl_groups.mean(0).max().detach()) + 10.0
    torch.manual_seed(1)
    loss, metrics = NegativeELBO(free_bits=lam)(model, x)
    assert float(metrics["kl_free_bits"]) == pytest.approx(2 * lam)
    assert float(loss) == pytest.approx(-float(metrics["log_px_z"]) + 2 * lam, rel=1e-6)


def test_training_with_free_bits_logs_the_true_elbo(tmp_path):
    config = tiny("objective.free_bits=2.0", "train.max_steps=4", "train.log_every=1")
    result = train(config, log=lambda line: None)
    for record in result.steps:
        assert record["elbo"] == pytest.approx(record["log_px_z"] - record["kl"], rel=1e-6)
        # the loss is the free-bits objective: -log p(x|z) + sum_j max(2, KL_j) >= -ELBO
        assert record["kl_free_bits"] >= 2.0 * 2 - 1e-9  # latent_dim 2, each at least 2 nats
        assert record["loss"] == pytest.approx(
            -record["log_px_z"] + record["kl_free_bits"], rel=1e-6
        )
    assert all("val_elbo" in r for r in result.history)


def test_warmup_schedule_values():
    assert [kl_weight(s, 1.0, 100) for s in (0, 25, 50, 100, 150)] == [0.0, 0.25, 0.5, 1.0, 1.0]


def test_warmup_and_free_bits_together_reach_the_objective(tmp_path):
    config = tiny(
        "objective.free_bits=0.5",
        "objective.kl_warmup_steps=4",
        "train.max_steps=6",
        "train.log_every=1",
    )
    result = train(config, log=lambda line: None)
    assert [r["beta"] for r in result.steps] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    first = result.steps[0]  # beta = 0: the loss is the reconstruction term alone
    assert first["loss"] == pytest.approx(-first["log_px_z"])


@pytest.mark.parametrize("option", ["free_bits=0.5", "kl_warmup_steps=10"])
@pytest.mark.parametrize("objective", ["iwae", "slide"])
def test_refused_where_there_is_no_separate_kl(option, objective):
    key, value = option.split("=")
    data = {"objective": {"name": objective, key: float(value) if "." in value else int(value)}}
    with pytest.raises(ConfigError, match=rf"objective\.{key} needs objective\.name = 'elbo'"):
        Config.from_dict(data)


def test_negative_free_bits_is_refused():
    with pytest.raises(ConfigError, match=r"objective\.free_bits must be >= 0"):
        Config.from_dict({"objective": {"free_bits": -1.0}})


def test_build_objective_passes_free_bits():
    config = Config.from_dict({"objective": {"free_bits": 0.25}})
    model = VAE(VAEConfig(latent_dim=2, hidden_dims=[4], likelihood="gaussian", data_shape=[3]))
    assert build_objective(config.objective, model).free_bits == 0.25
