"""The references beside every headline nll (vaekit.evaluation.references): each baseline
against its value computed by hand on tiny data, the records only where they apply, and the
line shown."""

import math

import pytest
import torch

from vaekit.config import apply_overrides, load_config
from vaekit.data import Dataset, Split
from vaekit.data.transforms import Dequantize, DynamicBinarize, Standardize, Transform
from vaekit.evaluate import evaluate
from vaekit.evaluation.references import (
    independent_nll,
    preset_of,
    reference_lines,
    references,
    uniform_nll,
)
from vaekit.models import VAE, VAEConfig
from vaekit.settings import to_dict
from vaekit.training.data_setup import resolve_model_config


def _dataset(train, test, transform, support, name="tiny", shape=None):
    train, test = torch.tensor(train), torch.tensor(test)
    shape = shape or tuple(train.shape[1:])
    train, test = train.reshape(-1, *shape), test.reshape(-1, *shape)
    return Dataset(name, shape, Split(train), Split(train), Split(test), transform, support, "x")


def test_binary_data_an_independent_bernoulli_with_laplaces_rule():
    data = _dataset([[1, 0], [1, 1], [0, 0]], [[1, 1], [0, 1]], Transform(), "binary")
    # p = (ones + 1) / (n + 2): 3/5 and 2/5
    by_hand = [-(math.log(3 / 5) + math.log(2 / 5)), -(math.log(2 / 5) + math.log(2 / 5))]
    assert independent_nll(data, "test").tolist() == pytest.approx(by_hand, rel=1e-12)
    assert uniform_nll(data) == pytest.approx(2 * math.log(2))


def test_dynamic_binarisation_the_expected_nll_over_the_draws():
    data = _dataset([[2, 0], [1, 2]], [[1, 0]], DynamicBinarize(3), "binary")
    # q = v / 2; p = (sum q + 1) / (n + 2) = 2.5/4 and 2/4; test q = (1/2, 0)
    p0, p1 = 2.5 / 4, 0.5
    by_hand = -(0.5 * math.log(p0) + 0.5 * math.log(1 - p0)) - math.log(1 - p1)
    assert independent_nll(data, "test").tolist() == pytest.approx([by_hand], rel=1e-12)


def test_levels_an_independent_categorical_and_uniform_levels():
    data = _dataset([[0, 2], [0, 1], [1, 2]], [[2, 0], [0, 2]], Dequantize(3), "unit-interval")
    # P_d(l) = (count + 1) / (3 + 3); level 2 of dimension 0 and level 0 of dimension 1 were
    # never seen: 1/6 each; level 0 of dimension 0 and level 2 of dimension 1 twice: 3/6
    assert independent_nll(data, "test").tolist() == pytest.approx(
        [2 * math.log(6), 2 * math.log(2)], rel=1e-12
    )
    assert uniform_nll(data) == pytest.approx(2 * math.log(3))  # 2 log2(3) bits
    refs = references(data, "test", 2, bits=True)
    assert refs["uniform"]["bits_per_dim"] == pytest.approx(math.log2(3))
    assert refs["independent"]["label"] == "independent columns"
    assert refs["independent"]["nll"] == pytest.approx(math.log(6) + math.log(2))


def test_continuous_columns_a_gaussian_each_in_the_datas_own_units():
    transform = Standardize([1.0, 0.0], [2.0, 1.0])  # any affine map gives the same fit
    data = _dataset([[1.0, 0.0], [3.0, 2.0], [5.0, -2.0]], [[4.0, 1.0]], transform, "real")
    # maximum likelihood: mean (3, 0), variance 8/3 for both columns
    var = 8 / 3
    by_hand = math.log(2 * math.pi * var) + (1.0 + 1.0) / (2 * var)
    assert independent_nll(data, "test").tolist() == pytest.approx([by_hand], rel=1e-6)
    assert uniform_nll(data) is None  # unbounded values have no uniform density
    assert "uniform" not in references(data, "test", 1, bits=False)


def test_only_the_first_evaluated_rows_are_scored_and_new_data_alone_has_no_baseline():
    data = _dataset([[1, 0], [1, 1], [0, 0]], [[1, 1], [0, 1]], Transform(), "binary")
    assert independent_nll(data, "test", 1).numel() == 1
    alone = _dataset([[1, 0]], [[1, 1]], Transform(), "binary")
    alone.train = Split(alone.train.x[:0])
    assert independent_nll(alone, "test") is None


def _trained_config(preset: str, *overrides: str) -> dict:
    """config.json's ``config`` of a run of ``preset``: resolved against its data the way
    training resolves it (the shape, levels and "auto" settings filled in)."""
    config = apply_overrides(load_config(preset), list(overrides))
    rows = [[0, 255, 128, 3], [255, 255, 0, 0]]
    name = config.data.name
    if name == "fashion-mnist":
        data = _dataset(rows, rows, Dequantize(256), "unit-interval", name, (1, 2, 2))
    else:
        data = _dataset(rows, rows, DynamicBinarize(256), "binary", name, (1, 2, 2))
    resolve_model_config(config, data)
    return to_dict(config)


def test_the_preset_a_run_came_from():
    run = _trained_config("mnist-record-1h", "train.max_steps=3")
    assert run["model"]["data_shape"] == [1, 2, 2]  # what an unresolved preset lacks
    assert preset_of(run) == "mnist-record-1h"
    assert preset_of(_trained_config("mnist-record-2h", "train.max_steps=3")) == "mnist-record-2h"
    assert preset_of(_trained_config("mnist-nll")) == "mnist-nll"
    assert preset_of(_trained_config("fashion-bpd", "train.batch_size=8")) == "fashion-bpd"
    assert preset_of(_trained_config("mnist-nll", "model.latent_dim=7")) is None
    assert preset_of(_trained_config("mnist-nll", "objective.num_importance_samples=2")) is None
    assert preset_of(_trained_config("digits")) is None  # records nothing
    older = _trained_config("mnist-record-2h")  # written before a setting was added
    del older["objective"]["free_bits"]
    assert preset_of(older) == "mnist-record-2h"
    assert preset_of(None) is None
    assert preset_of({"model": "not a table"}) is None


def test_records_only_for_their_own_data_and_the_test_split():
    shape = (1, 2, 2)
    rows = [[0, 255, 128, 3], [255, 255, 0, 0]]
    name = "mnist-binarized-dynamic"
    mnist = _dataset(rows, rows, DynamicBinarize(256), "binary", name, shape)
    config = _trained_config("mnist-nll")
    refs = references(mnist, "test", 2, bits=True, config=config)
    assert list(refs) == ["independent", "uniform", "preset", "published"]
    assert refs["preset"]["nll"] == 86.15 and "mnist-nll" in refs["preset"]["source"]
    assert refs["published"]["nll"] == 78.01
    assert refs["published"]["bits_per_dim"] == pytest.approx(78.01 / (4 * math.log(2)))
    assert list(references(mnist, "val", 2, bits=True, config=config)) == [
        "independent",
        "uniform",
    ]
    conditional = references(mnist, "test", 2, bits=True, conditional=True, config=config)
    assert "published" not in conditional and "preset" not in conditional
    other = _dataset(rows, rows, DynamicBinarize(256), "binary", "fashion-mnist", shape)
    assert list(references(other, "test", 2, bits=True, config=config)) == [
        "independent",
        "uniform",
    ]


def test_a_preset_recorded_in_bits_per_dimension_is_shown_in_nats_too():
    shape = (1, 1, 2)
    rows = [[0, 255], [17, 3]]
    fashion = _dataset(rows, rows, Dequantize(256), "unit-interval", "fashion-mnist", shape)
    refs = references(fashion, "test", 2, bits=True, config=_trained_config("fashion-bpd"))
    assert refs["preset"]["bits_per_dim"] == pytest.approx(4.41)
    assert refs["preset"]["nll"] == pytest.approx(4.41 * 2 * math.log(2))


def test_evaluate_puts_them_in_the_result_and_prints_them_beside_the_nll():
    torch.manual_seed(0)
    data = _dataset([[1, 0], [1, 1], [0, 0]], [[1, 1], [0, 1]], Transform(), "binary")
    config = VAEConfig(
        latent_dim=1, network="mlp", hidden_dims=[4], likelihood="bernoulli", data_shape=[2]
    )
    result = evaluate(VAE(config), data, num_samples=3, fcd=False)
    refs = result["references"]
    assert refs["independent"]["nll"] == pytest.approx(float(independent_nll(data).mean()))
    assert refs["uniform"]["nll"] == pytest.approx(2 * math.log(2))
    assert refs["uniform"]["bits_per_dim"] == pytest.approx(1.0)
    nll_line, bits_line = reference_lines(result)
    assert nll_line == (
        f"  beside nll {result['nll']:.2f} nats per example: independent columns "
        f"{refs['independent']['nll']:.2f}, uniform {2 * math.log(2):.2f}"
    )
    assert bits_line.startswith(f"  beside bits/dim {result['bits_per_dim']:.3f} bits/dim: ")
    assert "uniform 1.000" in bits_line
