"""`vaekit lesson ae-vs-vae`: the AE vs VAE contrast, end to end on digits, and its pieces."""

from __future__ import annotations

import json

import pytest
import torch

from vaekit.cli import main
from vaekit.feature_net import frechet_distance
from vaekit.lessons.ae_vs_vae import code_statistics

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> tuple[dict, object]:
    out = tmp_path_factory.mktemp("compare") / "report"
    argv = ["lesson", "ae-vs-vae", "--data", "digits", "--epochs", "12", "--hidden-dims", "128,64"]
    argv += ["--num-samples", "20", "--json", "--out", str(out)]
    assert main(argv) == 0
    return json.loads((out / "compare.json").read_text()), out


def test_compare_end_to_end_on_digits(compared):
    result, out = compared
    ae, vae = result["models"]["ae"], result["models"]["vae"]
    assert result["config_differences"] == ["model.kind", "objective.name"]
    # The lecture's point: decoding N(0, I) draws works for the VAE, not for the AE.
    assert ae["prior_sample_score"] > vae["prior_sample_score"]
    assert vae["prior_sample_score"] > result["sample_quality"]["held_out_real"]
    assert result["sample_quality"]["classifier_test_accuracy"] > 0.8
    # The AE only minimises reconstruction error: it reconstructs at least as well.
    assert ae["reconstruction_squared_error"] < vae["reconstruction_squared_error"]
    # Its codes are further from N(0, I) than the VAE's aggregate posterior.
    ka = ae["code_distribution"]["kl_gaussian_fit_to_prior"]
    assert ka > vae["code_distribution"]["kl_gaussian_fit_to_prior"]
    # Likelihood: the VAE's importance-sampled nll, none for the AE.
    held = vae["held_out"]
    assert ae["held_out"] is None
    assert held["num_samples"] == 20 and held["num_examples"] == 300
    assert held["nll"] <= -held["elbo"] + 1e-6
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert f"{ae['reconstruction_squared_error']:.4f}" in html
    assert "has no likelihood" in html
    for name in ("compare_samples.png", "compare_codes.png", "compare_interpolations.png"):
        assert (out / name).stat().st_size > 1000
    assert (out / "ae" / "model.safetensors").exists()
    assert (out / "vae" / "model.safetensors").exists()


def test_compare_from_runs_reproduces_the_numbers(compared, tmp_path, capsys):
    result, out = compared
    argv = ["lesson", "ae-vs-vae", "--runs", str(out / "ae"), str(out / "vae")]
    argv += ["--num-samples", "20"]
    assert main([*argv, "--out", str(tmp_path / "again"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    for kind in ("ae", "vae"):
        for key in ("reconstruction_squared_error", "prior_sample_score"):
            assert again["models"][kind][key] == pytest.approx(result["models"][kind][key])
    # The runs must be an AE and then a VAE.
    swapped = ["lesson", "ae-vs-vae", "--runs", str(out / "vae"), str(out / "ae")]
    assert main([*swapped, "--out", str(tmp_path / "bad")]) == 2
    assert "--runs" in capsys.readouterr().err


def test_frechet_distance_exact_cases():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 5, generator=g, dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift.square().sum()))
    # Scaling one set by s: (s - 1)^2 (||mean||^2 + tr(C)).
    expected = float(a.mean(0).square().sum() + torch.cov(a.T).trace())
    assert frechet_distance(a, 2.0 * a) == pytest.approx(expected, rel=1e-6)


def test_code_statistics_of_the_prior_are_zero_and_grow_with_distance():
    eye = torch.eye(3, dtype=torch.float64)
    stats = code_statistics(torch.zeros(3, dtype=torch.float64), eye)
    assert stats == {
        "mean_norm": 0.0,
        "cov_minus_identity_fro": 0.0,
        "kl_gaussian_fit_to_prior": pytest.approx(0.0, abs=1e-12),
    }
    far = code_statistics(torch.full((3,), 2.0, dtype=torch.float64), 4.0 * eye)
    # KL(N(mu, 4I) || N(0, I)) = (3*4 + 12 - 3 - 3 log 4) / 2
    assert far["kl_gaussian_fit_to_prior"] == pytest.approx((12 + 12 - 3 - 3 * 1.3862943611) / 2)
    assert far["cov_minus_identity_fro"] == pytest.approx(3.0 * 3**0.5)
