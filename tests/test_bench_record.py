"""The likelihood-record benchmark's own logic: which data a variant reads, how its runs and
results are named, and that bad flags stop it before any training (its runs take hours, so a
mistake must fail in the first second)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_record", BENCHMARKS / "bench_record.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(bench, monkeypatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["bench_record.py", *argv])
    bench.main()


def test_a_variant_reads_the_data_its_settings_name(bench):
    assert bench.data_name("mnist-record-1h", []) == "mnist-binarized-dynamic"
    fashion = ["data.name=fashion-mnist-binarized-dynamic"]
    assert bench.data_name("mnist-record-1h", fashion) == "fashion-mnist-binarized-dynamic"
    assert bench.run_name("mnist-record-1h", "fashion") == "mnist-record-1h+fashion"
    assert bench.run_name("mnist-record-1h", None) == "mnist-record-1h"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--preset", "mnist-record-1h", "--set", "data.name=fashion-mnist"],
            "--set needs --label",
        ),
        (["--preset", "no-such-preset"], "--preset no-such-preset: no such preset"),
        # the messages echo the flag, so each checks the config module's own words
        (
            ["--preset", "mnist-record-1h", "--label", "x", "--set", "train.no_such=1"],
            "unknown field 'train.no_such'",
        ),
        (
            ["--preset", "mnist-record-1h", "--label", "x", "--set", "train.max_steps"],
            "expected section.field=value",
        ),
        (
            ["--preset", "mnist-record-1h", "--label", "x", "--set", "train.max_steps=-3"],
            "train.max_steps must be >= 1",
        ),
    ],
)
def test_bad_flags_stop_before_any_training(bench, monkeypatch, tmp_path, argv, message):
    def no_training(*args, **kwargs):
        raise AssertionError("a bad flag reached training")

    monkeypatch.setattr(bench, "vaekit_cli", no_training)
    results = tmp_path / "record.json"
    with pytest.raises(SystemExit) as stop:
        run_main(bench, monkeypatch, *argv, "--runs", str(tmp_path), "--results", str(results))
    assert message in str(stop.value) and "\n" not in str(stop.value)
    assert not results.exists()


def test_a_variant_trains_on_its_own_data_with_its_settings_after_the_preset(
    bench, monkeypatch, tmp_path
):
    calls = []

    class TrainingCalledError(Exception):
        pass

    def record_training(*args, threads):
        calls.append(args)
        raise TrainingCalledError  # the command is what this test checks; nothing trains

    monkeypatch.setattr(bench, "vaekit_cli", record_training)
    shared = tmp_path / "datasets"
    argv = ["--preset", "mnist-record-1h", "--seed", "3", "--label", "fashion"]
    argv += ["--set", "data.name=fashion-mnist-binarized-dynamic", "--set", "train.max_steps=7"]
    with pytest.raises(TrainingCalledError):
        run_main(bench, monkeypatch, *argv, "--runs", str(tmp_path), "--shared", str(shared))
    (args,) = calls
    assert args[0] == "train"
    # vaekit train finds fashion-mnist/ under the shared folder itself
    assert args[args.index("--data-dir") + 1] == str(shared)
    assert args[args.index("--out") + 1] == str(tmp_path / "mnist-record-1h+fashion-seed3")
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    # the variant's settings first, then the benchmark's own (the seed cannot be overridden)
    assert sets[:3] == [
        "data.name=fashion-mnist-binarized-dynamic",
        "train.max_steps=7",
        "train.seed=3",
    ]


def test_the_table_names_each_runs_data(bench):
    row = {
        "preset": "mnist-record-1h+fashion",
        "data": "fashion-mnist-binarized-dynamic",
        "seed": 0,
        "parameters": 1490080,
        "steps": 78000,
        "train_wall_minutes": 55.8,
        "examples_per_s": 54.0,
        "roofline_examples_per_s": 100.0,
        "eval": {"nll": 230.123, "nll_stderr": 0.456, "num_samples": 5000, "bits_per_dim": 0.4},
        # no active_units recorded: the cell says so instead of failing
    }
    line = bench.table({"mnist-record-1h+fashion/seed-0": row}).splitlines()[-1]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:4] == [
        "mnist-record-1h+fashion",
        "fashion-mnist-binarized-dynamic",
        "0",
        "1,490,080",
    ]
    assert "54%" in cells and "230.12 ± 0.46" in cells


def fake_run(tmp_path: Path) -> Path:
    """A trained run as ``--reuse`` finds it: its checkpoint, its training record, and one
    snapshot (so the curve has two points)."""
    run = tmp_path / "mnist-record-1h-seed0"
    (run / "checkpoints" / "last").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    trainer = {"loop": {"step": 7, "train_seconds": 60.0}}
    (run / "checkpoints" / "last" / "trainer.json").write_text(json.dumps(trainer))
    (run / "bench-train.json").write_text(json.dumps({"wall_seconds": 61.0}))
    snapshot = run / "snapshots" / "step-3"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"metadata": {"train_seconds": 30.0}}))
    return run


@pytest.fixture
def no_roofline(bench, monkeypatch):
    monkeypatch.setattr(bench, "decoder_roofline_seconds", lambda *a: (1.0, 1.0))
    monkeypatch.setattr(bench, "training_rate", lambda run: (10.0, None))
    monkeypatch.setattr(bench, "linear_shapes", lambda run: ([(784, 512)], 128, 1000))
    monkeypatch.setattr(bench, "roofline", lambda shapes, batch, threads: (20.0, 1.0))
    monkeypatch.setattr(bench, "eval_fields", lambda result: result)


class FakeEvaluations:
    """``vaekit evaluate`` as the benchmark calls it: each call's (model, K) is recorded and
    its nll is 90 minus the number of calls so far, so a row shows which call it came from."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    def __call__(self, *args, threads):
        assert args[0] == "evaluate"
        k = int(args[args.index("--num-samples") + 1])
        self.asked.append((Path(args[1]).name, k))
        result = {"nll": 90.0 - len(self.asked), "nll_stderr": 0.2, "num_samples": k}
        return type("Proc", (), {"stdout": json.dumps(result | {"bits_per_dim": 0.1})})


@pytest.mark.parametrize(
    ("curve_k", "row_k", "evaluations"),
    [
        (1000, 1000, [("mnist-record-1h-seed0", 1000), ("step-3", 1000)]),
        (
            1000,
            5000,
            [("mnist-record-1h-seed0", 5000), ("step-3", 1000), ("mnist-record-1h-seed0", 1000)],
        ),
    ],
)
def test_the_final_model_is_evaluated_once_when_the_curve_and_the_row_share_k(
    bench, monkeypatch, tmp_path, no_roofline, curve_k, row_k, evaluations
):
    """An 8-bit evaluation at K = 5000 takes about 40 minutes: the row must not repeat the
    curve's last evaluation when both ask for the same K, and it comes first."""
    run = fake_run(tmp_path)
    fake = FakeEvaluations()
    monkeypatch.setattr(bench, "vaekit_cli", fake)
    argv = ["--preset", "mnist-record-1h", "--reuse", "--runs", str(tmp_path)]
    argv += ["--curve-samples", str(curve_k), "--num-samples", str(row_k)]
    run_main(bench, monkeypatch, *argv, "--results", str(tmp_path / "record.json"))
    row = json.loads((tmp_path / "record.json").read_text())["mnist-record-1h/seed-0"]
    assert fake.asked == evaluations
    assert row["eval"]["num_samples"] == row_k
    assert row["eval"]["nll"] == 89.0  # the row is the first evaluation made
    assert [p["train_minutes"] for p in row["curve"]] == [0.5, 1.0]
    assert row["curve"][-1]["num_samples"] == curve_k
    assert row["eval_seconds"] is not None and (run / f"bench-eval-k{row_k}.json").exists()


def test_kept_evaluations_are_read_back_and_busy_ones_have_no_seconds(
    bench, monkeypatch, tmp_path, no_roofline
):
    """A run stopped during its evaluations goes on where it stopped: ``--reuse`` reads the
    evaluations kept beside each model and makes only the missing ones; ``--busy`` records
    no seconds (they were measured beside other work)."""
    run = fake_run(tmp_path)
    results = tmp_path / "record.json"
    argv = ["--preset", "mnist-record-1h", "--reuse", "--runs", str(tmp_path)]
    argv += ["--results", str(results), "--busy"]
    first = FakeEvaluations()
    monkeypatch.setattr(bench, "vaekit_cli", first)
    run_main(bench, monkeypatch, *argv)
    assert len(first.asked) == 3
    row = json.loads(results.read_text())["mnist-record-1h/seed-0"]
    assert row["eval_seconds"] is None and row["eval"]["nll"] == 89.0
    # the snapshot's evaluation is lost: only it is made again
    (run / "snapshots" / "step-3" / "bench-eval-k1000.json").unlink()
    again = FakeEvaluations()
    monkeypatch.setattr(bench, "vaekit_cli", again)
    run_main(bench, monkeypatch, *argv)
    assert again.asked == [("step-3", 1000)]
    row = json.loads(results.read_text())["mnist-record-1h/seed-0"]
    assert row["eval"]["nll"] == 89.0 and row["curve"][0]["nll"] == 89.0
    assert row["curve"][1]["nll"] == 87.0  # the final model's K = 1000, kept from the first


def test_final_only_evaluates_the_final_model_once(bench, monkeypatch, tmp_path, no_roofline):
    """``--final-only``: the row's evaluation is the whole curve; no snapshot is evaluated."""
    fake_run(tmp_path)
    fake = FakeEvaluations()
    monkeypatch.setattr(bench, "vaekit_cli", fake)
    results = tmp_path / "record.json"
    argv = ["--preset", "mnist-record-1h", "--reuse", "--final-only", "--runs", str(tmp_path)]
    run_main(bench, monkeypatch, *argv, "--results", str(results))
    assert fake.asked == [("mnist-record-1h-seed0", 5000)]
    row = json.loads(results.read_text())["mnist-record-1h/seed-0"]
    assert row["curve"] == [
        {"train_minutes": 1.0, "nll": 89.0, "nll_stderr": 0.2, "num_samples": 5000}
    ]
