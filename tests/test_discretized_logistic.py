"""Discretised logistic likelihoods: exact probabilities of the discrete levels.

Exact answers: over all L levels the probabilities of a dimension sum to 1; the log-probability
equals a plain float64 difference of logistic CDFs; the mixture with K = 1 is the plain one;
extreme decoder outputs stay finite. Then the pipeline: the data is fed as its levels (not
dequantised) with the bin width of the data's own level count, and bits/dim is exact.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from helpers import discretized_logistic_reference, tiny
from vaekit.cli import main
from vaekit.config import Config, ConfigError, apply_overrides
from vaekit.data import DataError, Dataset, Split, load_dataset
from vaekit.data.transforms import Dequantize, Levels, Standardize
from vaekit.distributions import LIKELIHOODS
from vaekit.evaluate import evaluate, evaluate_run
from vaekit.evaluation.likelihood_space import bits_per_dim
from vaekit.training import train

NAMES = ["discretized-logistic", "discretized-logistic-mixture"]
SHAPE = (2, 3)  # C = 2 channels of 3 values: the channel layout matters


def make(name: str, levels: int, components: int = 3):
    options = {"num_components": components} if name.endswith("mixture") else {}
    return LIKELIHOODS[name](SHAPE, num_levels=levels, **options)


def grid(levels: int) -> torch.Tensor:
    return torch.arange(levels, dtype=torch.float64) / (levels - 1)


def all_levels(likelihood, params: torch.Tensor) -> torch.Tensor:
    """log P(x_d = every level) per dimension: ``[L, B, *SHAPE]``."""
    levels = likelihood.num_levels
    x = grid(levels).view(levels, 1, 1, 1).expand(levels, params.shape[0], *SHAPE)
    return likelihood(params).base_dist.log_prob(x)


def extreme_params(likelihood, n: int = 7) -> torch.Tensor:
    """Decoder outputs from moderate to absurd: scales of 1e-3 .. 1e8, both signs."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(n, *likelihood.param_shape, generator=g, dtype=torch.float64)
    scale = torch.tensor([1e-3, 0.3, 3.0, 30.0, 1e3, 1e5, 1e8], dtype=torch.float64)[:n]
    return base * scale.view(n, 1, 1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("levels", [2, 17, 256])
def test_probabilities_of_all_levels_sum_to_one(name, levels):
    likelihood = make(name, levels)
    params = extreme_params(likelihood)
    log_p = all_levels(likelihood, params)
    assert torch.isfinite(log_p).all()
    total = log_p.exp().sum(dim=0)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("levels", [2, 17, 256])
def test_log_prob_matches_a_float64_cdf_difference(name, levels):
    likelihood = make(name, levels)
    g = torch.Generator().manual_seed(levels)
    # moderate outputs (|mu| ~ 1, s from 0.01 to 1), where no probability underflows float64
    params = 0.7 * torch.randn(5, 4, *likelihood.param_shape, generator=g, dtype=torch.float64)
    v = torch.randint(0, levels, (4, *SHAPE), generator=g)
    v[0], v[1] = 0, levels - 1  # the two edge bins, extended to -inf and +inf
    x = v.double() / (levels - 1)
    expected = discretized_logistic_reference(likelihood, params, x)  # [5, 4]
    assert torch.allclose(likelihood(params).log_prob(x), expected, rtol=1e-10, atol=1e-10)
    assert torch.allclose(likelihood.log_density(params, x), expected, rtol=1e-10, atol=1e-10)


def test_thin_bins_and_far_tails_keep_full_precision():
    """Where 1 - sigma(.) rounds to 0 in the naive difference, the identity still gives the
    true log-probability: compare with the reference on the side where it is accurate."""
    likelihood = make("discretized-logistic", 256)
    params = torch.empty(4, *likelihood.param_shape, dtype=torch.float64)  # [4, 2C, 3]
    params[:, :2] = torch.tensor([0.0, 0.5, 0.9, 0.5]).view(4, 1, 1)  # mu
    params[:, 2:] = -3.0  # s = 0.110 e^-3 = 0.0055, about 1.4 bins
    x = torch.tensor([0.6, 0.5, 0.1, 0.5 + 1 / 255]).view(4, 1, 1).expand(4, *SHAPE)
    got = likelihood.log_density(params.float(), x.float()).double()
    expected = discretized_logistic_reference(likelihood, params, x.double())
    assert torch.isfinite(got).all()
    assert expected[0] < -100  # 0.6 is 20 scales from 0.0: far in the tail
    assert torch.allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("levels", [17, 256])
def test_mixture_with_one_component_is_the_plain_likelihood(levels):
    plain = make("discretized-logistic", levels)
    mixture = make("discretized-logistic-mixture", levels, components=1)
    g = torch.Generator().manual_seed(0)
    out = 3.0 * torch.randn(6, *mixture.param_shape, generator=g, dtype=torch.float64)
    x = torch.randint(0, levels, (6, *SHAPE), generator=g).double() / (levels - 1)
    c = SHAPE[0]
    # the mixture reads [logits, loc, raw scale]; with K = 1 the logits do not matter
    same = out[:, c:]
    assert torch.equal(mixture.log_density(out, x), plain.log_density(same, x))
    assert torch.equal(mixture.mean(out), plain.mean(same))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_decoder_outputs_give_finite_values_and_gradients(name, dtype):
    likelihood = make(name, 256)
    params = extreme_params(likelihood).to(dtype).requires_grad_(True)
    x = torch.rand(7, *SHAPE, dtype=dtype).mul(255).round().div(255)
    x[0], x[1] = 0.0, 1.0
    log_p = likelihood.log_density(params, x)
    assert torch.isfinite(log_p).all() and (log_p <= 0).all()
    log_p.sum().backward()
    assert torch.isfinite(params.grad).all()


def test_samples_follow_the_probabilities():
    likelihood = make("discretized-logistic-mixture", 5, components=2)
    g = torch.Generator().manual_seed(3)
    params = torch.randn(1, *likelihood.param_shape, generator=g, dtype=torch.float64)
    probs = all_levels(likelihood, params).exp()[:, 0]  # [L, *SHAPE]
    torch.manual_seed(0)
    n = 40000
    draws = likelihood(params).sample((n,))[:, 0]  # [n, *SHAPE], on the grid
    levels = torch.round(draws * 4).long()
    assert torch.equal(levels.double() / 4, draws)
    freq = torch.stack([(levels == j).double().mean(0) for j in range(5)])
    # binomial standard error <= 0.5 / sqrt(n) = 0.0025: allow five of them
    assert (freq - probs).abs().max() < 0.0125


def test_mean_for_pictures_is_the_clamped_mixture_mean():
    likelihood = LIKELIHOODS["discretized-logistic-mixture"]((1,), num_levels=256, num_components=2)
    # [logits k=0,1 | loc k=0,1 | raw k=0,1]; equal weights
    out = torch.tensor([[0.0, 0.0, 0.2, 1.6, 0.0, 0.0], [0.0, 0.0, 1.2, 1.6, 0.0, 0.0]])
    assert torch.allclose(likelihood.mean(out), torch.tensor([[0.9], [1.0]]))
    weighted = torch.tensor([[math.log(3.0), 0.0, 0.2, 0.6, 0.0, 0.0]])  # weights 3/4, 1/4
    assert torch.allclose(likelihood.mean(weighted), torch.tensor([[0.3]]))


def test_wrong_decoder_shape_is_a_one_line_error():
    likelihood = make("discretized-logistic-mixture", 256, components=3)
    with pytest.raises(ValueError, match=r"must output \[\.\.\., 18, 3\]"):
        likelihood.log_density(torch.zeros(2, 4, 3), torch.zeros(2, *SHAPE))


def test_components_field_is_validated_by_name():
    with pytest.raises(ConfigError, match=r"model\.likelihood_components"):
        apply_overrides(Config(), ["model.likelihood_components=0"])
    with pytest.raises(ConfigError, match=r"model\.data_levels"):
        apply_overrides(Config(), ["model.data_levels=1"])


def test_cli_rejects_zero_components(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--likelihood-components", "0", "--out", "unused"])
    assert exc.value.code == 2
    assert "--likelihood-components" in capsys.readouterr().err


def test_levels_refused_on_continuous_data():
    x = torch.randn(10, 3)
    split = Split(x)
    data = Dataset(
        "table",
        (3,),
        split,
        split,
        split,
        Standardize([0.0] * 3, [1.0] * 3),
        "real",
        "gaussian-learned",
    )
    with pytest.raises(DataError, match="--likelihood discretized-logistic models discrete"):
        data.as_levels("--likelihood discretized-logistic")


def test_bits_per_dim_of_a_discrete_likelihood_is_exact():
    split = Split(torch.zeros(0, 1, 2, 2, dtype=torch.uint8))
    deq = Dataset("t", (1, 2, 2), split, split, split, Dequantize(17), "unit-interval", "g", 17)
    levels = deq.as_levels("--likelihood discretized-logistic")
    assert isinstance(levels.transform, Levels) and levels.transform.levels == 17
    nll = 4 * math.log(17.0)  # uniform over the 17 levels: log2(17) bits per dimension
    assert bits_per_dim(nll, levels, discrete=True) == pytest.approx(math.log2(17.0))
    with pytest.raises(ValueError, match="dequantised"):
        bits_per_dim(nll, deq, discrete=True)


def test_digits_train_and_evaluate_use_the_17_levels(tmp_path):
    """digits has 17 levels (0..16): the data is fed as v / 16, never dequantised, the bin width
    is 1/16, and evaluate's bits/dim is nll / (D log 2) with no dequantisation term."""
    config = tiny(
        "model.likelihood=discretized-logistic-mixture",
        "model.likelihood_components=2",
        "train.max_steps=3",
    )
    result = train(config, out=tmp_path / "run", log=lambda line: None)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["transform"] == {"kind": "levels", "levels": 17}
    assert saved["config"]["model"]["data_levels"] == 17
    model = result.model
    assert model.likelihood.num_levels == 17 and model.likelihood.num_components == 2
    assert model.likelihood.min_log_scale == pytest.approx(math.log(1 / 16 / 16))
    out = evaluate_run(tmp_path / "run", num_samples=8, max_examples=40, fcd=False)
    d = 64
    assert out["bits_per_dim"] == pytest.approx(out["nll"] / (d * math.log(2.0)), rel=1e-12)
    assert out["bits_per_dim_basis"].startswith("exact")
    # the Python API given the dequantised dataset evaluates the levels all the same
    digits = load_dataset("digits")
    assert digits.transform.kind == "dequantize"
    again = evaluate(model, digits, num_samples=8, max_examples=40, fcd=False)
    assert again["nll"] == pytest.approx(out["nll"], rel=1e-12)
    # the levels are what the model saw: every test value is on the 1/16 grid
    x = digits.as_levels("test").fixed("test")
    assert torch.equal(torch.round(x * 16) / 16, x) and x.max() == 1.0
