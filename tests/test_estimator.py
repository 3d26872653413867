"""The scikit-learn-style facade: scikit-learn's own estimator checks, exact answers in the
data's units, files only when asked."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from vaekit import VAEEstimator

TINY = dict(latent_dim=2, hidden_dims=(8,), max_steps=5, num_samples=4)


@parametrize_with_checks([VAEEstimator(**TINY)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def table() -> np.ndarray:
    """200 rows of a 5-column table with one latent factor, on very different scales."""
    rng = np.random.default_rng(0)
    f = rng.normal(size=(200, 1))
    x = f @ rng.normal(size=(1, 5)) + 0.3 * rng.normal(size=(200, 5))
    return x * np.array([1.0, 10.0, 0.01, 100.0, 3.0]) + np.array([0, 5, -2, 1000, 7])


@pytest.fixture(scope="module")
def fitted(table) -> VAEEstimator:
    return VAEEstimator(latent_dim=2, hidden_dims=(16,), max_steps=60, num_samples=16).fit(table)


def test_outputs_have_the_documented_shapes(fitted, table):
    z = fitted.transform(table)
    assert z.shape == (200, 2)
    assert fitted.inverse_transform(z).shape == (200, 5)
    assert fitted.sample(7).shape == (7, 5)
    assert fitted.score_samples(table[:3]).shape == (3,)
    assert fitted.n_features_in_ == 5
    with pytest.raises(ValueError, match=r"\[N, 2\] codes"):
        fitted.inverse_transform(np.zeros((3, 4)))


def test_scores_are_in_the_data_units(table):
    """Standardisation makes the model see the same inputs for X and a X + b, so codes are
    equal and log p(x) differs by exactly the change of variables, -D log a nats."""
    a, b = 1000.0, 5.0
    est = VAEEstimator(latent_dim=2, hidden_dims=(16,), max_steps=20, num_samples=8)
    first, second = clone(est).fit(table), clone(est).fit(a * table + b)
    np.testing.assert_allclose(first.transform(table), second.transform(a * table + b), atol=1e-5)
    shift = first.score_samples(table[:10]) - second.score_samples(a * table[:10] + b)
    np.testing.assert_allclose(shift, 5 * math.log(a), rtol=1e-5)
    # decodes come back in the units of the data they were fitted on
    np.testing.assert_allclose(
        a * first.inverse_transform(first.transform(table[:5])) + b,
        second.inverse_transform(second.transform(a * table[:5] + b)),
        rtol=1e-4,
        atol=1e-2,
    )


def test_training_improves_the_likelihood(table):
    short = VAEEstimator(latent_dim=2, hidden_dims=(16,), max_steps=2, num_samples=16)
    assert fitted_score(short.fit(table), table) < fitted_score(
        clone(short).set_params(max_steps=300).fit(table), table
    )


def fitted_score(est: VAEEstimator, x: np.ndarray) -> float:
    return est.score(x[:50])


def test_quiet_and_writes_nothing_unless_asked(table, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    est = VAEEstimator(**TINY).fit(table)
    assert capsys.readouterr().out == ""
    assert list(tmp_path.iterdir()) == []
    est.set_params(run_dir=tmp_path / "run").fit(table)
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_save_and_load_round_trip(fitted, table, tmp_path):
    fitted.save(tmp_path / "model")
    again = VAEEstimator.load(tmp_path / "model")
    assert again.get_params()["hidden_dims"] == [16]
    np.testing.assert_array_equal(again.transform(table[:5]), fitted.transform(table[:5]))
    np.testing.assert_array_equal(again.score_samples(table[:3]), fitted.score_samples(table[:3]))


def test_the_default_budget_is_the_trainers(table):
    """No max_steps: 10 epochs of 180 training rows would be 20 steps; the trainer's default
    raises them to train.min_steps, 2000 optimiser steps."""
    est = VAEEstimator(latent_dim=2, hidden_dims=(8,), batch_size=90).fit(table)
    assert est.n_steps_ == 2000
    assert VAEEstimator(**TINY).fit(table).n_steps_ == 5
