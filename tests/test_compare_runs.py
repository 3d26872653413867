"""`vaekit compare RUN_A RUN_B ...`: paired differences with standard errors on shared test
examples, refusal of runs that do not share them, the page, and the Python API."""

from __future__ import annotations

import json
import math

import pytest
import torch

import vaekit
from helpers import tiny
from vaekit.cli import main
from vaekit.evaluate import load_run
from vaekit.run_comparison import (
    ComparisonError,
    PairedDifference,
    _paired,
    bootstrap_active_units,
    count_active,
)

K = 20


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from vaekit.train import train

    root = tmp_path_factory.mktemp("runs")
    setups = {
        "a": [],
        "b": ["model.hidden_dims=[64]", "optim.lr=3e-3"],
        "other-split": ["data.split_seed=1"],
        "autoencoder": ["model.kind=ae", "objective.name=reconstruction"],
    }
    for name, overrides in setups.items():
        train(tiny("train.epochs=8", *overrides), out=root / name, log=lambda _: None)
    return root


def test_paired_differences_and_their_sentences(runs, capsys):
    argv = ["compare", str(runs / "a"), str(runs / "b"), "--num-samples", str(K), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_examples"] == 300 and result["num_samples"] == K
    a, b = (r["values"] for r in result["runs"])
    by_metric = {d["metric"]: d for d in result["differences"]}
    assert set(by_metric) == {"nll", "elbo", "bits_per_dim", "kl", "active_units"}
    for metric, d in by_metric.items():
        assert d["difference"] == pytest.approx(b[metric] - a[metric], abs=1e-9)
        assert d["a"] == "a" and d["b"] == "b"
    nll = by_metric["nll"]
    # B trained faster (a wider net, a larger step): clearly better, and the sentence says so.
    assert nll["difference"] < -4 * nll["stderr"] < 0
    assert nll["sentence"].startswith(f"-log p(x): b is {abs(nll['difference']):.3f} ± ")
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
    # The default page sits beside the first run.
    page = (runs / "compare-a-vs-b" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # curves and samples
    assert f"{nll['difference']:+.3f} ± {nll['stderr']:.3f}" in page
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
    reference = vaekit.evaluate(model, dataset, num_samples=K, fcd=False)
    nll_b = result.runs[0].values["nll"]
    # Different Monte-Carlo draws, the same examples and K: equal up to Monte-Carlo noise.
    assert nll_b == pytest.approx(reference["nll"], abs=0.15)
    assert result.runs[0].values["active_units"] == reference["active_units"]
    assert result.runs[0].values["kl"] == pytest.approx(reference["kl"], rel=1e-6)


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
    assert main(["compare", "--data", "digits"]) == 2
    assert "--out" in capsys.readouterr().err
    both = ["compare", str(runs / "a"), str(runs / "b"), "--runs", str(runs / "a"), str(runs / "b")]
    assert main(both) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["compare", str(runs / "a"), str(runs / "b"), "--epochs", "3"]) == 2
    assert "--epochs trains the AE-vs-VAE lesson" in capsys.readouterr().err


def test_paired_standard_error_is_the_textbook_one():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, generator=g, dtype=torch.float64)
    b = a + 0.3 + 0.1 * torch.randn(50, generator=g, dtype=torch.float64)
    d = _paired("nll", "A", "B", a, b)
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
    assert int(count_active(far)) == 3
    assert bootstrap_active_units(far, far, draws=200) == 0.0
    se = bootstrap_active_units(far, near, draws=200)
    assert 0.2 < se < 0.6  # a coin flip's standard deviation is 0.5


def test_error_type_is_a_value_error():
    assert issubclass(ComparisonError, ValueError)  # the CLI turns it into one line
