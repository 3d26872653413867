"""The deep-versus-one-layer benchmark's own logic: every row is a valid config, the two runs
share seed, data and budget, and the table reads `vaekit compare`'s JSON (its runs take
hours, so a mistake must fail in the first second)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from vaekit.config import apply_overrides, load_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_deep", BENCHMARKS / "bench_deep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_variant_changes_the_deep_preset_and_is_valid(bench):
    base = load_config(BENCHMARKS.parent / "configs" / "mnist-deep.toml")
    bench.check_rows([bench.BASELINE, bench.DEEP, *bench.VARIANTS])
    for name, (overrides, _) in bench.VARIANTS.items():
        assert apply_overrides(base, overrides) != base, name


def test_a_bad_variant_stops_before_any_training(bench, monkeypatch):
    monkeypatch.setitem(bench.VARIANTS, "typo", (["model.widht=3"], "a typo"))
    with pytest.raises(SystemExit, match="row typo: "):
        bench.check_rows(["typo"])


def test_both_runs_share_seed_data_and_budget(bench, tmp_path):
    args = argparse.Namespace(minutes=15.0, seed=3, shared=tmp_path)
    one = bench.train_args(bench.BASELINE, tmp_path / "a", 100, args)
    deep = bench.train_args(bench.DEEP, tmp_path / "b", 200, args)
    shared = ["train.max_minutes=15.0", "train.seed=3", str(tmp_path / "mnist")]
    assert all(item in one and item in deep for item in shared)
    assert "train.max_steps=100" in one and "train.max_steps=200" in deep
    assert one[one.index("--config") + 1].endswith("mnist-vamp.toml")


def test_the_table_reads_the_paired_differences(bench):
    run = {"what": "w", "steps": 1200, "train_wall_minutes": 15.04, "examples_per_s": 2958.4}
    comparison = {
        "num_examples": 100,
        "num_samples": 10,
        "seed": 0,
        "runs": [
            {"name": "one-layer", "values": {"nll": 85.431}, "stderrs": {"nll": 0.241}},
            {"name": "deep", "values": {"nll": 84.9}, "stderrs": {"nll": 0.239}},
        ],
        "differences": [
            {"metric": "elbo", "b": "deep", "difference": 9.0, "stderr": 9.0},
            {"metric": "nll", "b": "deep", "difference": -0.531, "stderr": 0.052},
        ],
    }
    rows = bench.table({"one-layer": run, "deep": run}, comparison).splitlines()
    assert rows[-2].endswith("| 1,200 | 15.0 | 2,958 | 85.43 ± 0.24 |  |")
    assert rows[-1].endswith("| 84.90 ± 0.24 | -0.53 ± 0.05 |")
