"""The table benchmarks' own logic, without training: the speed benchmark's generated table
(each column read as the type it is meant to have, the missing share), its all-Gaussian
twin, the steady-state rate, and the synthetic-rows benchmark's classifier glue."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
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
