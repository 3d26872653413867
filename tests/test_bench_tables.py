"""The table benchmarks' own logic, without training: the speed benchmark's generated table
(each column read as the type it is meant to have, the missing share), its all-Gaussian
twin, the steady-state rate, and the synthetic-rows benchmark's category text and classifier
glue (neither needs the SDV venv)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


@pytest.fixture(scope="module")
def speed():
    return load("bench_tables_speed")


@pytest.fixture(scope="module")
def table(speed):
    return speed.make_table(4000, seed=0)


def test_the_generated_table_has_the_stated_types_and_missing_share(speed, table):
    from vaekit.data.frames import frame_table
    from vaekit.data.table_schema import infer_schema

    frame, kinds = table
    assert frame.shape == (4000, 30)
    counted = {k: list(kinds.values()).count(k) for k in set(kinds.values())}
    assert counted == {"real": 12, "positive": 4, "count": 4, "binary": 4, "categorical": 6}
    # vaekit infers every column as the type it is given in the benchmark
    schema = infer_schema(frame_table(frame))
    assert {c.name: c.kind for c in schema} == kinds
    widths = sorted(len(c.categories) for c in schema if c.kind == "categorical")
    assert widths == sorted(speed.CATEGORY_COUNTS)
    share = frame.isna().to_numpy().mean()
    assert abs(share - speed.MISSING_SHARE) < 0.005
    assert frame.isna().any().all()  # every column has some missing cells


def test_the_all_gaussian_table_holds_the_same_cells_as_numbers(speed, table):
    frame, kinds = table
    numbers = speed.as_numbers(frame, kinds)
    assert numbers.shape[1] == 24 + sum(speed.CATEGORY_COUNTS)  # one column per feature
    assert all(numbers[c].dtype == np.float64 for c in numbers.columns)
    np.testing.assert_array_equal(numbers["real3"], frame["real3"])
    np.testing.assert_array_equal(numbers["binary0"].isna(), frame["binary0"].isna())
    assert set(numbers["binary0"].dropna()) == {0.0, 1.0}
    assert (numbers["binary0"] == 1.0).sum() == (frame["binary0"] == "yes").sum()
    indicators = numbers[[c for c in numbers.columns if c.startswith("category5=")]]
    assert indicators.shape[1] == 20
    missing = frame["category5"].isna().to_numpy()
    assert indicators[missing].isna().all().all()
    np.testing.assert_array_equal(indicators[~missing].sum(axis=1), 1.0)
    row = int(np.flatnonzero(~missing)[0])
    assert indicators.iloc[row][f"category5={frame['category5'][row]}"] == 1.0


def test_the_steady_rate_is_the_median_after_the_warm_up(speed):
    records = [
        {"kind": "step", "step": 10, "examples_per_s": 5.0},
        {"kind": "step", "step": 20, "examples_per_s": 100.0},
        {"kind": "epoch", "step": 25, "examples_per_s": 1.0},
        {"kind": "step", "step": 30, "examples_per_s": 300.0},
        {"kind": "step", "step": 40, "examples_per_s": 200.0},
    ]
    assert speed.steady_rate(records, warmup_steps=10) == 200.0
    assert speed.steady_rate(records, warmup_steps=0) == 150.0
    with pytest.raises(ValueError, match="after step 40"):
        speed.steady_rate(records, warmup_steps=40)


@pytest.fixture(scope="module")
def synth():
    return load("bench_tables_synth")


KINDS = {"x": "real", "colour": "categorical", "label": "binary"}


def separable(n: int, flip: bool = False, seed: int = 0) -> pd.DataFrame:
    """A table whose label is x > 0 (1 <= |x| <= 3; the held-out rows' 1.5 <= |x| <= 2.5,
    well inside), a colour that says nothing."""
    rng = np.random.default_rng(seed)
    low, high = (1.0, 3.0) if seed == 0 else (1.5, 2.5)
    x = rng.choice([-1.0, 1.0], n) * rng.uniform(low, high, n)
    label = (x > 0) != flip
    colour = rng.choice(["red", "green", "blue"], n)
    return pd.DataFrame({"x": x, "colour": colour, "label": label.astype(np.float64)})


def test_categories_read_alike_from_any_dtype(synth):
    kinds = {"n": "categorical", "w": "binary", "v": "real"}
    floats = pd.DataFrame({"n": [3.0, 10.0, np.nan], "w": ["no", "yes", None], "v": [1, 2, 3]})
    ints = pd.DataFrame({"n": [3, 10, 4], "w": ["no", "yes", "no"], "v": [1.5, 2, 3]})
    texts = pd.DataFrame({"n": ["3", "10", "4"], "w": ["no", "yes", "no"], "v": [1, 2, 3]})
    a, b, c = (synth.as_categories(f, kinds) for f in (floats, ints, texts))
    assert a["n"][:2].tolist() == ["3", "10"] and a["n"].isna().tolist() == [False, False, True]
    assert b["n"].tolist() == c["n"].tolist() == ["3", "10", "4"]
    assert a["w"][:2].tolist() == ["no", "yes"] and a["w"].isna()[2]
    assert b["v"].dtype == np.float64 and b["v"].tolist() == [1.5, 2.0, 3.0]


@pytest.mark.parametrize("name", ["logistic", "boosting"])
def test_efficacy_scores_the_classifier_on_the_real_held_out_rows(synth, name):
    test = separable(200, seed=1)
    right = synth.efficacy(separable(400), test, KINDS, "label", name, seed=0)
    assert right == {"accuracy": 1.0, "macro_f1": 1.0}
    wrong = synth.efficacy(separable(400, flip=True), test, KINDS, "label", name, seed=0)
    assert wrong == {"accuracy": 0.0, "macro_f1": 0.0}


def test_rows_of_one_class_train_a_constant(synth):
    test = separable(200, seed=1)
    ones = separable(400)
    ones = ones[ones["label"] == 1.0]
    scored = synth.efficacy(ones, test, KINDS, "label", "logistic", seed=0)
    share = float((test["label"] == 1.0).mean())
    assert scored["accuracy"] == pytest.approx(share)
    # F1 of the class always predicted: 2 share / (1 + share); the other class's is 0
    assert scored["macro_f1"] == pytest.approx(share / (1 + share))


def test_the_split_is_the_same_for_every_method_and_seeded(synth):
    frame = pd.DataFrame({"a": np.arange(50)})
    train, test = synth.split(frame, seed=4)
    again, _ = synth.split(frame, seed=4)
    other, _ = synth.split(frame, seed=5)
    assert len(train) == 40 and len(test) == 10
    assert sorted(train["a"].tolist() + test["a"].tolist()) == list(range(50))
    assert train.equals(again) and not train.equals(other)


def test_the_sdv_budget_matches_vaekit_passes_or_is_given(synth):
    assert synth.sdv_budget("equal", steps=1500, batch=64, rows=800) == 120
    assert synth.sdv_budget("default", steps=1500, batch=64, rows=800) is None
    assert synth.sdv_budget("40", steps=1500, batch=64, rows=800) == 40
    with pytest.raises(SystemExit, match="--sdv-epochs ten"):
        synth.sdv_budget("ten", steps=1500, batch=64, rows=800)


def test_the_table_heading_states_both_budgets_in_epochs(synth):
    """vaekit's steps read as passes over the training rows beside the peers' epochs, so a
    table at SDV's default budget shows that vaekit had fewer."""
    per_method = {
        "efficacy": {c: {"macro_f1": {"mean_stderr": (0.5, 0.1)}} for c in synth.CLASSIFIERS}
    }
    quality = {q: {"mean_stderr": (0.9, 0.0)} for q in synth.QUALITY}
    result = {
        "rows": 1000,
        "target": "affair",
        "sdv_epochs": {"tvae": 300, "ctgan": 300},
        "sdv_budget": "default",
        "vaekit_steps": 1500,
        "vaekit_epochs": synth.sdv_budget("equal", 1500, 64, 800),
        "methods": {
            m: per_method
            if m == "real"
            else per_method | {"quality": quality, "fit_seconds": (1.0, 0.0)}
            for m in synth.METHODS
        },
    }
    heading = synth.markdown({"fair": result}, seeds=3)[0]
    assert "vaekit 1500 steps of 64 rows (120 epochs), tvae 300 epochs, ctgan 300 epochs" in heading


@pytest.fixture(scope="module")
def density():
    return load("bench_tables_density")


def zero_inflated_frame(n: int, seed: int) -> pd.DataFrame:
    """``hours``: 0 in about 40 % of rows, log-normal (two modes) otherwise; ``load`` real."""
    rng = np.random.default_rng(seed)
    mode = rng.random(n) < 0.5
    hours = np.exp(np.where(mode, 0.0, 1.5) + 0.3 * rng.normal(size=n))
    hours[rng.random(n) < 0.4] = 0.0
    return pd.DataFrame({"hours": hours, "load": 3.0 + rng.normal(size=n)})


@pytest.mark.parametrize("peer", ["marginals", "gmm"])
def test_the_density_peers_are_normalised_under_the_mixed_measure(density, peer):
    """P(0) plus the integral of the density over v > 0 is 1 (counting measure at 0,
    Lebesgue measure above): the peers score a zero-inflated column in the measure vaekit
    does, with the change of variables of the log scale."""
    train = zero_inflated_frame(600, seed=0)
    kinds = {"hours": "zero-inflated"}
    log_v = np.linspace(-6.0, 6.0, 6001)  # the integral over v as one over log v
    grid = pd.DataFrame({"hours": np.concatenate([[0.0], np.exp(log_v)])})
    if peer == "marginals":
        logp = density.marginal_logp(train["hours"], grid["hours"], "zero-inflated")
    else:
        logp, components = density.gmm_logp(train, grid, kinds, seed=0)
        assert components >= 2  # the two modes above zero
    p_zero, p = np.exp(logp[0]), np.exp(logp[1:])
    assert p_zero == pytest.approx(((train["hours"] == 0).sum() + 1) / (len(train) + 2))
    total = p_zero + np.trapezoid(p * np.exp(log_v), log_v)
    assert total == pytest.approx(1.0, abs=1e-4)


def test_the_mixture_peer_fits_one_mixture_per_pattern_of_zeros(density):
    """With a real column beside it, a row's log p is log P(its zero pattern) plus the
    pattern's own mixture: at a zero, a density of ``load`` alone that integrates to 1."""
    train = zero_inflated_frame(600, seed=0)
    kinds = {"hours": "zero-inflated", "load": "real"}
    load = np.linspace(-5.0, 11.0, 4001)
    grid = pd.DataFrame({"hours": np.zeros_like(load), "load": load})
    logp, _ = density.gmm_logp(train, grid, kinds, seed=0)
    p_zero = ((train["hours"] == 0).sum() + 1) / (len(train) + 2)
    assert np.trapezoid(np.exp(logp), load) == pytest.approx(p_zero, abs=1e-4)


@pytest.fixture(scope="module")
def impute_bench():
    return load("bench_tables_impute")


def test_the_paired_differences_are_per_seed_against_mean_mode_and_the_best_peer(impute_bench):
    """vaekit - peer seed by seed: a peer level on average but worse on each seed's own
    cells is behind by the constant gap with no spread; the best peer is picked per measure
    (the lowest mean rmse, the highest mean acc); a measure no column has is left out."""
    nan = float("nan")
    cell = {
        "mean/mode": {"rmse": [1.0, 2.0, 3.0], "acc": [0.5, 0.5, 0.5]},
        "knn": {"rmse": [0.9, 1.8, 3.3], "acc": [0.6, 0.7, 0.8]},
        "vaekit": {"rmse": [0.9, 1.9, 2.9], "acc": [0.7, 0.7, 0.7]},
        "vaekit (self-masking)": {"rmse": [1.0, 2.0, 3.0], "acc": [nan, nan, nan]},
    }
    out = impute_bench.paired(cell)
    rmse = out["vaekit"]["rmse"]
    assert rmse["mean/mode"] == pytest.approx((-0.1, 0.0))
    assert rmse["best peer"] == "mean/mode"  # 2.0 against knn's 2.0 + 1/30
    acc = out["vaekit"]["acc"]
    assert acc["best peer"] == "knn" and acc["mean/mode"] == pytest.approx((0.2, 0.0))
    assert acc["best"] == pytest.approx((0.0, 0.1 / np.sqrt(3)))
    assert set(out["vaekit (self-masking)"]) == {"rmse"}
    lines = impute_bench.paired_markdown({"t": {"rows": 3, "mcar20": {"paired": out}}}, 3)
    assert "| t | mcar20 | vaekit | -0.100 ± 0.000 | -0.100 ± 0.000 (mean/mode) |" in lines[4]
    assert lines[5].endswith("| - | - |")


def test_the_speed_table_states_the_joint_heads_cost(speed):
    rates = {"typed": [1000.0, 1200.0], "typed-rank-none": [3000.0, 3000.0]}
    rates["all-gaussian"] = [2000.0, 2400.0]
    assert speed.time_ratio(rates, "typed", "typed-rank-none") == {
        "median": 2.75,
        "rounds": [3.0, 2.5],
    }
    result = {
        "table": {"rows": 10, "columns": 30, "types": {"real": 30}, "missing_share": 0.05},
        "rows_per_s": {c: {"median": sum(r) / 2, "rounds": r} for c, r in rates.items()},
        "cost_typed_over_gaussian": speed.time_ratio(rates, "typed", "all-gaussian"),
        "cost_joint_head": speed.time_ratio(rates, "typed", "typed-rank-none"),
    }
    result["table"]["all_gaussian_columns"] = 88
    lines = speed.markdown(result, steps=60, warmup_steps=20, rounds=2)
    assert [line.split(" | ")[0] for line in lines if line.startswith("| ")][1:] == [
        f"| {c}" for c in speed.CONTESTANTS
    ]
    assert "| typed-rank-none | 3,000 | 0.73x |" in lines
    assert "Typed heads cost 2.00x the all-Gaussian model (target <= 1.5x: NOT met)." in lines
    assert any(line.startswith("The joint low-rank head costs 2.75x") for line in lines)
