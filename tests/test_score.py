"""Scores for anomaly detection: AUROC/AUPRC against scikit-learn, the delta-method standard
error of log mean w, and exact -log p(v) of standardised data in the data's own units (a
linear-Gaussian model, whose marginal is known in closed form)."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from helpers import exact_log_px, linear_gaussian_vae, set_exact_posterior
from vaekit.data.new_data import as_dataset, read_new_data
from vaekit.data.transforms import Standardize
from vaekit.evaluate import evaluate
from vaekit.metrics.ranking import auprc, auroc
from vaekit.score import importance_scores, score_data


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(previous)
    torch.set_num_threads(threads)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_and_auprc_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(labels * 0.7, 1.0), 1)  # rounded: many ties
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert auprc(scores, labels) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )
    assert auroc(labels.astype(float), labels) == 1.0 and auprc(labels * 1.0, labels) == 1.0
    with pytest.raises(ValueError, match="labels 0 and 1, both present"):
        auroc(scores, np.zeros_like(labels))


class FixedWeights(torch.nn.Module):
    """A stand-in model whose log-weights are a fixed [K, B] table, served chunk by chunk;
    with a [C, K, B] table, a conditional model of C classes (class y's table for label y)."""

    def __init__(self, log_w: torch.Tensor) -> None:
        super().__init__()
        self.log_w, self.served = log_w, {}
        self.takes_labels = log_w.dim() == 3
        self.num_classes = log_w.shape[0] if self.takes_labels else None

    def held_fixed(self):
        return contextlib.nullcontext()

    def proposal(self, x, y=None):
        return None

    def log_weights_given(self, proposal, x, num_samples, y=None):
        c = None if y is None else int(y[0])  # one class per call, as scoring asks
        table = self.log_w if c is None else self.log_w[c]
        k0 = self.served.get(c, 0)
        self.served[c] = k0 + num_samples
        return table[k0 : k0 + num_samples, : x.shape[0]]


def test_stderr_is_the_delta_method_of_log_mean_w():
    log_w = torch.randn(50, 3, generator=torch.Generator().manual_seed(0)) * 2 - 300.0
    scores = importance_scores(FixedWeights(log_w), torch.zeros(3, 1), 50, 3, 7)
    w = np.exp(log_w.numpy() + 300.0)  # shifted: the ratio sd(w) / mean(w) is unchanged
    np.testing.assert_allclose(scores.log_px.numpy(), np.log(w.mean(0)) - 300.0, rtol=1e-12)
    expected = w.std(0, ddof=1) / (math.sqrt(50) * w.mean(0))
    np.testing.assert_allclose(scores.stderr.numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(scores.elbo.numpy(), log_w.mean(0).numpy(), rtol=1e-12)
    assert scores.most_likely_class is None


def test_the_class_marginal_is_stratified_over_the_classes():
    # 3 classes, 40 draws each, 2 examples: p_hat(x) = (1/C) sum_y mean_k w_yk, whose
    # variance is sum_y var_y(w) / (K C^2); the ELBO is the mean of all C K log-weights.
    log_w = torch.randn(3, 40, 2, generator=torch.Generator().manual_seed(1)) - 200.0
    log_w[1] += 2.0  # class 1 explains both examples best
    scores = importance_scores(FixedWeights(log_w), torch.zeros(2, 1), 40, 2, 15)
    w = np.exp(log_w.numpy() + 200.0)
    mean = w.mean(axis=(0, 1))
    np.testing.assert_allclose(scores.log_px.numpy(), np.log(mean) - 200.0, rtol=1e-12)
    variance = (w.var(axis=1, ddof=1) / 40).sum(axis=0) / 9
    np.testing.assert_allclose(scores.stderr.numpy(), np.sqrt(variance) / mean, rtol=1e-10)
    np.testing.assert_allclose(scores.elbo.numpy(), log_w.mean((0, 1)).numpy(), rtol=1e-12)
    assert scores.most_likely_class.tolist() == [1, 1]
    # Given the labels, each example's own class only: log p(x|y).
    given = importance_scores(
        FixedWeights(log_w), torch.zeros(2, 1), 40, 2, 15, torch.tensor([2, 2])
    )
    np.testing.assert_allclose(given.log_px.numpy(), np.log(w[2].mean(0)) - 200.0, rtol=1e-12)
    assert given.most_likely_class is None


def _standardised_linear_gaussian(tmp_path, posterior):
    g = torch.Generator().manual_seed(3)
    D, m, sigma = 4, 2, 0.5
    W, b = torch.randn(D, m, generator=g), torch.randn(D, generator=g)
    model = linear_gaussian_vae(W, b, sigma, posterior=posterior)
    if posterior == "full":
        set_exact_posterior(model, W, b, sigma)
    mean, std = torch.tensor([100.0, -3.0, 0.0, 7.0]), torch.tensor([20.0, 0.1, 1.0, 3.0])
    info = {
        "shape": [D],
        "support": "real",
        "num_levels": None,
        "transform": Standardize(mean, std).to_dict(),
        "columns": ["a", "b", "c", "d"],
    }
    model.data_info = info
    u = torch.randn(30, m, generator=g) @ W.T + b + sigma * torch.randn(30, D, generator=g)
    v = mean + std * u  # the data in its own units
    lines = ["d,c,b,a"] + [",".join(f"{x:.17g}" for x in row.flip(0)) for row in v]
    (tmp_path / "new.csv").write_text("\n".join(lines) + "\n")  # columns in another order
    exact = exact_log_px(u, W, b, sigma) - std.log().sum()  # log p(v) = log p(u) - sum log std
    return model.eval(), info, exact


def test_score_and_evaluate_give_exact_nll_of_the_data_in_its_own_units(tmp_path):
    model, info, exact = _standardised_linear_gaussian(tmp_path, "full")
    columns, summary = score_data(model, tmp_path / "new.csv", num_samples=5, batch_size=7)
    np.testing.assert_allclose(columns["nll_nats"], -exact.numpy(), atol=1e-8)
    # the exact posterior makes every weight equal: no Monte-Carlo error at all
    np.testing.assert_allclose(columns["nll_stderr_nats"], 0.0, atol=1e-9)
    assert "own units" in summary["space"]
    result = evaluate(
        model,
        as_dataset(read_new_data(tmp_path / "new.csv", info), info),
        num_samples=5,
        batch_size=7,
        fcd=False,
    )
    assert result["nll"] == pytest.approx(float(-exact.mean()), abs=1e-8)
    log_std = math.log(20.0) + math.log(0.1) + math.log(3.0)
    assert result["nll"] - result["nll_model_space"] == pytest.approx(log_std, abs=1e-12)
    assert result["elbo_model_space"] - result["elbo"] == pytest.approx(log_std, abs=1e-12)


def test_stderr_predicts_the_spread_of_the_estimate(tmp_path):
    """With an approximate (diagonal) posterior the estimate varies between seeds; the mean
    delta-method stderr should match that spread within a factor of 2."""
    model, _, _ = _standardised_linear_gaussian(tmp_path, "diagonal")
    with torch.no_grad():
        model.posterior.head.bias[2:] = -1.0  # a posterior narrower than the true one
    runs = [
        score_data(model, tmp_path / "new.csv", num_samples=20, seed=s, trust_scale=True)[0]
        for s in range(30)
    ]
    spread = np.stack([r["nll_nats"] for r in runs]).std(0, ddof=1)
    predicted = np.stack([r["nll_stderr_nats"] for r in runs]).mean(0)
    ratio = float(np.median(predicted / spread))
    assert 0.5 < ratio < 2.0, ratio
