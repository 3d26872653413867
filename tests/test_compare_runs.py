"""`vaekit compare RUN_A RUN_B ...`: paired differences with standard errors on shared test
examples, refusal of runs that do not share them, the page, and the Python API."""

from __future__ import annotations

import json
import math

import pytest
import torch

import vaekit
from helpers import tiny, tiny_model_overrides
from vaekit.cli import main
from vaekit.comparison.runs import (
    ComparisonError,
    PairedDifference,
    bootstrap_active_units,
    count_active,
    paired_difference,
)
from vaekit.config import apply_overrides
from vaekit.evaluate import load_run
from vaekit.metrics import metric

K = 20


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from vaekit.training import train

    root = tmp_path_factory.mktemp("runs")
    short = "train.epochs=3"
    setups = {
        "a": [],
        "b": ["model.hidden_dims=[64]", "optim.lr=3e-3"],
        "other-split": ["data.split_seed=1"],
        "autoencoder": ["model.kind=ae", "objective.name=reconstruction"],
        # A discrete likelihood: it sees the 17 stored levels, not dequantised values.
        "levels": ['model.likelihood="discretized-logistic"', short],
        # A conditional model (-log p(x|y)) and a model whose KL has no closed form.
        "cvae": [*tiny_model_overrides("cvae"), short],
        "hvae": [*tiny_model_overrides("hvae"), short],
    }
    for name, overrides in setups.items():
        config = apply_overrides(tiny("train.epochs=8"), overrides)  # the model kind first
        train(config, out=root / name, log=lambda _: None)
    return root


def test_paired_differences_and_their_sentences(runs, capsys):
    argv = ["compare", str(runs / "a"), str(runs / "b"), "--num-samples", str(K), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_examples"] == 300 and result["num_samples"] == K
    a, b = (r["values"] for r in result["runs"])
    by_metric = {d["metric"]: d for d in result["differences"]}
    assert set(by_metric) == {"nll", "elbo", "bits_per_dim", "kl", "active_units"}
    for key, d in by_metric.items():
        assert d["difference"] == pytest.approx(b[key] - a[key], abs=1e-9)
        assert d["a"] == "a" and d["b"] == "b"
    nll = by_metric["nll"]
    # B trained faster (a wider net, a larger step): clearly better, and the sentence says so.
    assert nll["difference"] < -4 * nll["stderr"] < 0
    assert nll["sentence"].startswith(f"nll: b is {abs(nll['difference']):.3f} ± ")
    assert "nats per example better than a (± one paired standard error" in nll["sentence"]
    # Pairing removes the spread between examples: the paired standard error is far below the
    # unpaired one, sqrt(se_a^2 + se_b^2).
    se_a, se_b = (r["stderrs"]["nll"] for r in result["runs"])
    assert nll["stderr"] < 0.6 * math.hypot(se_a, se_b)
    # bits/dim is an affine map of the nll: the same difference and error over D log 2.
    scale = 64 * math.log(2)
    assert by_metric["bits_per_dim"]["difference"] == pytest.approx(nll["difference"] / scale)
    assert by_metric["bits_per_dim"]["stderr"] == pytest.approx(nll["stderr"] / scale)
    assert by_metric["active_units"]["method"] == "bootstrap"
    assert "bootstrap standard error" in by_metric["active_units"]["sentence"]
    # Every label, unit, direction and definition is the one vaekit evaluate prints.
    for key, d in by_metric.items():
        entry = metric(key)
        assert (d["label"], d["unit"]) == (entry.label, entry.unit)
        assert d["higher_is_better"] == entry.higher_is_better
        assert result["definitions"][key] == entry.definition
    # The default page sits beside the first run.
    page = (runs / "compare-a-vs-b" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # curves and samples
    assert f"{nll['difference']:+.3f} ± {nll['stderr']:.3f}" in page
    assert f"<p id='space'>-log p(x) and the ELBO are of {result['space']}" in page
    assert json.loads((runs / "compare-a-vs-b" / "compare.json").read_text()) == result


def test_a_run_against_itself_differs_by_exactly_zero(runs):
    """Common random numbers: the same model on the same examples with the same seed gives
    the same per-example numbers, so every difference and standard error is exactly 0."""
    copy = runs / "a-again"
    copy.mkdir()
    for name in ("model.safetensors", "config.json", "metrics.jsonl"):
        (copy / name).write_bytes((runs / "a" / name).read_bytes())
    result = vaekit.compare_runs([runs / "a", copy], num_samples=K, max_examples=120)
    assert isinstance(result, vaekit.RunComparison) and result.num_examples == 120
    for d in result.differences:
        assert isinstance(d, PairedDifference)
        assert d.difference == 0 and d.stderr == 0, d.metric
    assert "are equal on every example" in result.differences[0].sentence()


def test_python_api_matches_evaluate_and_orders_three_runs(runs):
    result = vaekit.compare_runs([runs / "b", runs / "a", runs / "b"], num_samples=K)
    assert [r.name for r in result.runs] == [str(runs / "b"), str(runs / "a"), str(runs / "b")]
    assert len(result.differences) == 2 * 5  # each later run against the first
    model, dataset = load_run(runs / "b")
    reference = vaekit.evaluate.evaluate(model, dataset, num_samples=K, fcd=False)
    nll_b = result.runs[0].values["nll"]
    # Different Monte-Carlo draws, the same examples and K: equal up to Monte-Carlo noise.
    assert nll_b == pytest.approx(reference["nll"], abs=0.15)
    assert result.runs[0].values["active_units"] == reference["active_units"]
    assert result.runs[0].values["kl"] == pytest.approx(reference["kl"], rel=1e-6)
    # Both are of the data as given (17 dequantised grey levels: c = 64 log 17 nats), and
    # say so; the model-space figure is c lower.
    assert result.space == result.runs[0].space == reference["space"]
    assert result.runs[0].log_data_scale == pytest.approx(64 * math.log(17))
    assert nll_b - result.runs[0].log_data_scale == pytest.approx(
        reference["nll_model_space"], abs=0.15
    )
    assert result.runs[0].values["elbo"] == pytest.approx(reference["elbo"], abs=1.5)
    bpd = result.runs[0].values["bits_per_dim"]
    assert bpd == pytest.approx(reference["bits_per_dim"], abs=0.15 / (64 * math.log(2)))
    assert bpd == pytest.approx(nll_b / (64 * math.log(2)))  # the data-space nll per dim
    assert "nll and ELBO of the data as given" in result.lines()[0]


def test_a_discrete_likelihood_is_compared_on_the_levels_exactly(runs):
    """The discretised logistic sees the stored levels (as `vaekit evaluate` gives them to it),
    so its nll is -log P(levels) and bits/dim exact; the Gaussian run's nll on dequantised
    levels, in the data's space, bounds the same -log P(levels): one scale, paired."""
    result = vaekit.compare_runs([runs / "levels", runs / "a"], num_samples=K)
    levels, dequantised = result.runs
    assert levels.log_data_scale == 0.0 and "a probability mass" in levels.space
    assert dequantised.log_data_scale == pytest.approx(64 * math.log(17))
    assert "dequantisation bound" in dequantised.space
    assert levels.values["bits_per_dim"] == pytest.approx(
        levels.values["nll"] / (64 * math.log(2)), rel=1e-12
    )
    model, dataset = load_run(runs / "levels")
    reference = vaekit.evaluate.evaluate(model, dataset, num_samples=K, fcd=False)
    assert reference["bits_per_dim_basis"].startswith("exact")
    assert levels.values["nll"] == pytest.approx(reference["nll"], abs=0.15)
    assert levels.values["bits_per_dim"] == pytest.approx(reference["bits_per_dim"], abs=0.01)
    by_metric = {d.metric: d for d in result.differences}
    nll = by_metric["nll"]
    assert nll.difference == pytest.approx(dequantised.values["nll"] - levels.values["nll"])
    assert math.isfinite(nll.stderr) and nll.stderr > 0


def test_a_conditional_model_pairs_log_p_x_given_y(runs):
    copy = runs / "cvae-again"
    copy.mkdir(exist_ok=True)
    for name in ("model.safetensors", "config.json", "metrics.jsonl"):
        (copy / name).write_bytes((runs / "cvae" / name).read_bytes())
    # K = 200: the 3-epoch model's importance weights are spread; more draws, less noise.
    result = vaekit.compare_runs([runs / "cvae", copy], num_samples=200, max_examples=150)
    assert result.conditioned_on is not None and "label" in result.conditioned_on
    assert all(d.difference == 0 and d.stderr == 0 for d in result.differences)
    assert "conditioned on each example's own label y: densities are p(x|y)" in result.lines()[0]
    # Each example's own label, as `vaekit evaluate` gives it.
    model, dataset = load_run(runs / "cvae")
    reference = vaekit.evaluate.evaluate(
        model, dataset, num_samples=200, fcd=False, max_examples=150
    )
    assert result.runs[0].values["nll"] == pytest.approx(reference["nll"], abs=0.3)
    assert result.runs[0].values["kl"] == pytest.approx(reference["kl"], rel=1e-6)


def test_runs_that_condition_differently_are_refused(runs, capsys):
    assert main(["compare", str(runs / "a"), str(runs / "cvae"), "--out", str(runs / "y")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "cvae: model 'cvae' reports -log p(x|y), conditioned on the label" in err
    assert "a's model 'vae' reports -log p(x)" in err
    assert not (runs / "y").exists()


def test_a_monte_carlo_kl_is_paired_too(runs):
    """The hierarchical VAE's KL has no closed form for its lower layer: its elbo().kl, a
    Monte-Carlo estimate at the ELBO's draws, is compared; active units come from its latent
    moments over all layers."""
    result = vaekit.compare_runs([runs / "a", runs / "hvae"], num_samples=K, max_examples=100)
    by_metric = {d.metric: d for d in result.differences}
    assert set(by_metric) == {"nll", "elbo", "bits_per_dim", "kl", "active_units"}
    hvae = result.runs[1]
    assert hvae.kind == "hvae" and hvae.latent_dim == 5
    assert 0 <= hvae.values["active_units"] <= 5
    assert hvae.values["elbo"] <= hvae.values["nll"] * -1 + 1.0  # ELBO <= log p(x), MC slack
    assert math.isfinite(by_metric["kl"].difference) and by_metric["kl"].stderr > 0


def test_runs_on_another_split_are_refused_in_one_line(runs, capsys):
    argv = ["compare", str(runs / "a"), str(runs / "other-split"), "--out", str(runs / "x")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "other-split: trained on different data or a different split than a" in err
    assert "data.split_seed 1 vs 0" in err
    assert not (runs / "x").exists()


def test_a_model_without_likelihood_is_refused(runs, capsys):
    assert main(["compare", str(runs / "a"), str(runs / "autoencoder")]) == 2
    err = capsys.readouterr().err
    assert "defines no likelihood" in err and "--runs AE_RUN VAE_RUN" in err


def test_flag_mistakes_are_one_line_errors(runs, capsys):
    assert main(["compare", str(runs / "a")]) == 2
    assert "at least two runs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # the lesson's old spelling, without its --out
        main(["compare", "--data", "digits"])
    assert exc.value.code == 2 and "required: --out" in capsys.readouterr().err
    both = ["compare", str(runs / "a"), str(runs / "b"), "--runs", str(runs / "a"), str(runs / "b")]
    assert main(both) == 2
    assert "--runs belongs to the AE-vs-VAE lesson (vaekit lesson ae-vs-vae)" in (
        capsys.readouterr().err
    )
    assert main(["compare", str(runs / "a"), str(runs / "b"), "--epochs", "3"]) == 2
    assert "--epochs belongs to the AE-vs-VAE lesson" in capsys.readouterr().err


def test_paired_standard_error_is_the_textbook_one():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, generator=g, dtype=torch.float64)
    b = a + 0.3 + 0.1 * torch.randn(50, generator=g, dtype=torch.float64)
    d = paired_difference("nll", "A", "B", a, b)
    diffs = (b - a).tolist()
    mean = sum(diffs) / 50
    se = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 49 / 50)
    assert d.difference == pytest.approx(mean) and d.stderr == pytest.approx(se)
    assert "B is" in d.sentence() and "worse than A" in d.sentence()  # a higher nll


def test_active_unit_bootstrap():
    g = torch.Generator().manual_seed(0)
    far = torch.randn(400, 3, generator=g, dtype=torch.float64)  # variance ~1 >> 0.01
    near = far.clone()
    near[:, 2] *= 0.1  # variance ~0.01: active or not depends on the resample
    exact = torch.zeros_like(far)  # exact means: no sampling noise
    assert int(count_active(far, exact)) == 3
    a, b = {"mu": far, "mu_noise": exact}, {"mu": near, "mu_noise": exact}
    assert bootstrap_active_units(a, a, draws=200) == 0.0
    se = bootstrap_active_units(a, b, draws=200)
    assert 0.2 < se < 0.6  # a coin flip's standard deviation is 0.5
    # Monte-Carlo means whose spread is less than their sampling noise count as inactive.
    assert int(count_active(far, torch.full_like(far, 2.0))) == 0


def test_error_type_is_a_value_error():
    assert issubclass(ComparisonError, ValueError)  # the CLI turns it into one line
