"""Probabilistic PCA: exact log p(x), closed-form MLE, exact EM, the ELBO's gap, linear VAEs."""

from __future__ import annotations

import json

import pytest
import torch

from vaekit.cli import main
from vaekit.lessons import (
    PPCA,
    diagonal_gap,
    fit_mle,
    gaussian_elbo,
    gaussian_gap,
    linear_vae,
    mixing_rotation,
    off_diagonal_ratio,
    optimal_diagonal_q,
    principal_angles,
    run_em,
    synthetic_ppca,
    train_linear_vae,
    vae_exact_elbo,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, PPCA]:
    return synthetic_ppca(num_examples=500, data_dim=6, latent_dim=2, sigma=0.5, seed=3)


@pytest.fixture(scope="module")
def mle(data) -> PPCA:
    return fit_mle(data[0], 2)


@pytest.fixture(scope="module")
def fixed(mle) -> PPCA:
    """The MLE rotated by 45 degrees: same log p(x), non-orthogonal columns."""
    return PPCA(W=mle.W @ mixing_rotation(2), b=mle.b, sigma2=mle.sigma2)


def test_log_px_matches_brute_force_multivariate_normal(data):
    x, true = data
    brute = torch.distributions.MultivariateNormal(true.b, true.covariance()).log_prob(x)
    torch.testing.assert_close(true.log_px(x), brute, rtol=0, atol=1e-10)


def test_closed_form_mle_is_a_stationary_point_and_beats_the_truth(data, mle):
    x, true = data
    W, b = mle.W.clone().requires_grad_(True), mle.b.clone().requires_grad_(True)
    s2 = mle.sigma2.clone().requires_grad_(True)
    PPCA(W, b, s2).log_px(x).mean().backward()
    for grad in (W.grad, b.grad, s2.grad):
        assert grad.abs().max() < 1e-10
    assert mle.log_px(x).mean() > true.log_px(x).mean()


def test_em_is_monotone_and_meets_the_closed_form_mle(data, mle):
    x, _ = data
    result = run_em(x, 2, iterations=400, seed=0)
    log_px = torch.tensor([r.log_px for r in result.history], dtype=torch.float64)
    assert (log_px.diff() >= -1e-12).all(), "log p(x) decreased in an EM iteration"
    assert log_px[-1] > log_px[0] + 1.0
    target = float(mle.log_px(x).mean())
    assert abs(float(log_px[-1]) - target) / abs(target) < 1e-6
    assert float(principal_angles(result.params.W, mle.W).max()) < 1e-3
    torch.testing.assert_close(result.params.covariance(), mle.covariance(), atol=1e-4, rtol=0)
    # After each E-step q is the exact posterior: ELBO == log p(x); after an M-step the old q
    # leaves a gap, which is exactly log p(x) - ELBO.
    for r in result.history[1:]:
        assert r.gap == pytest.approx(r.log_px - r.elbo, abs=1e-9)
        assert r.gap >= -1e-12
    mean, cov = result.params.posterior(x)
    gap = gaussian_gap(result.params, x, mean, cov)
    assert gap.abs().max() < 1e-10


def test_elbo_plus_gap_is_log_px_for_any_gaussian_q(data, fixed):
    x, _ = data
    g = torch.Generator().manual_seed(0)
    q_mean = torch.randn(x.shape[0], 2, generator=g, dtype=torch.float64)
    a = torch.randn(x.shape[0], 2, 2, generator=g, dtype=torch.float64)
    q_cov = a @ a.transpose(1, 2) + 0.1 * torch.eye(2, dtype=torch.float64)
    elbo = gaussian_elbo(fixed, x, q_mean, q_cov)
    gap = gaussian_gap(fixed, x, q_mean, q_cov)
    torch.testing.assert_close(elbo + gap, fixed.log_px(x), rtol=0, atol=1e-9)
    assert (gap > 0).all()


def test_fixed_non_orthogonal_w_full_q_closes_the_gap_diagonal_q_leaves_the_closed_form_gap(
    data, fixed
):
    x, _ = data
    assert off_diagonal_ratio(fixed.W) > 0.1
    log_px = fixed.log_px(x)
    full = gaussian_elbo(fixed, x, *fixed.posterior(x))
    torch.testing.assert_close(full, log_px, rtol=0, atol=1e-10)
    q_mean, q_cov = optimal_diagonal_q(fixed, x)
    diag = gaussian_elbo(fixed, x, q_mean, q_cov)
    closed_form = diagonal_gap(fixed)
    assert closed_form > 1e-2
    torch.testing.assert_close(log_px - diag, closed_form.expand_as(diag), rtol=0, atol=1e-10)
    # ...and it is the best diagonal q: any change of its variances lowers the ELBO.
    for factor in (0.9, 1.1):
        for j in range(2):
            scaled = q_cov.clone()
            scaled[j, j] *= factor
            assert (gaussian_elbo(fixed, x, q_mean, scaled) < diag).all()
    # Orthogonal columns (the unrotated MLE): the diagonal family has no gap.
    assert abs(float(diagonal_gap(fit_mle(x, 2)))) < 1e-12


def test_exact_elbo_matches_the_models_monte_carlo_elbo(data):
    x, _ = data
    torch.manual_seed(0)
    model = linear_vae(6, 2, "full")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    xs = x[:20]
    exact = vae_exact_elbo(model, xs)
    with torch.no_grad():  # the model's own pieces: reparameterised z ~ q, log p(x|z), KL
        q = model.encode(xs)
        log_px_z = model.decode(q.rsample((20000,))).log_prob(xs)  # [L, B]
        mc = log_px_z.mean(0) - model.prior.kl(q)
        stderr = log_px_z.std(0) / 20000**0.5
    assert ((mc - exact).abs() < 5 * stderr).all()
    assert model.elbo(xs, num_mc_samples=1).elbo.shape == exact.shape


@pytest.mark.parametrize("posterior", ["diagonal", "full"])
def test_trained_linear_vae_reaches_the_maximum_likelihood(data, mle, posterior):
    x, _ = data
    steps = 600 if posterior == "diagonal" else 300
    _, result = train_linear_vae(x, 2, posterior, steps=steps, lr=0.1, record_every=50)
    target = float(mle.log_px(x).mean())
    final = result.history[-1]
    assert final.log_px == pytest.approx(target, abs=1e-3)
    assert final.log_px <= target + 1e-9
    assert 0 <= final.gap < 1e-3
    assert float(principal_angles(result.params.W, mle.W).max()) < 0.02
    if posterior == "diagonal":  # Lucas et al. 2019: it rotates W to orthogonal columns
        assert final.wtw_off_diagonal_ratio < 0.02
        assert result.history[0].log_px < target - 1.0


def test_encoder_trained_against_fixed_decoder_diag_stops_at_the_closed_form_gap(data, fixed):
    x, _ = data
    _, diag = train_linear_vae(x, 2, "diagonal", steps=300, lr=0.1, fixed=fixed, record_every=50)
    _, full = train_linear_vae(x, 2, "full", steps=300, lr=0.1, fixed=fixed, record_every=50)
    closed_form = float(diagonal_gap(fixed))
    assert diag.history[-1].gap == pytest.approx(closed_form, abs=2e-3)
    assert full.history[-1].gap < 2e-3
    assert diag.history[-1].log_px == pytest.approx(float(fixed.log_px(x).mean()), abs=1e-12)


def test_cli_em_json_and_report(tmp_path, capsys):
    out = tmp_path / "em"
    argv = ["lesson", "em", "--latent-dim", "2", "--max-examples", "300", "--steps", "100"]
    argv += ["--em-iterations", "500", "--json", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    methods = report["methods"]
    mle = methods["closed_form_mle"]["log_px"]
    assert methods["exact_em"]["log_px"] == pytest.approx(mle, rel=1e-5)
    assert methods["exact_em"]["gap"] == pytest.approx(0.0, abs=1e-9)
    for name in ("linear_vae_diagonal", "linear_vae_full"):
        row = methods[name]
        assert row["elbo"] <= row["log_px"] <= mle + 1e-9
        assert row["gap"] == pytest.approx(row["log_px"] - row["elbo"], abs=1e-9)
    fixed = report["fixed_decoder"]
    assert fixed["optimal_full_q"]["gap"] == pytest.approx(0.0, abs=1e-9)
    assert fixed["optimal_diagonal_q"]["gap"] == pytest.approx(
        fixed["closed_form_diagonal_gap"], abs=1e-9
    )
    assert fixed["closed_form_diagonal_gap"] > 1e-3
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert json.loads((out / "em.json").read_text())["histories"]["exact_em"]


def test_cli_em_rejects_a_latent_dim_not_below_the_data_dim(capsys):
    assert main(["lesson", "em", "--latent-dim", "10", "--max-examples", "50", "--json"]) == 2
    assert "--latent-dim" in capsys.readouterr().err
