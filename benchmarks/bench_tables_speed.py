"""Training throughput on a mixed-type table, in rows per second: one likelihood per column
type (the typed heads) against an all-Gaussian model of the same widths.

Rerun (about 18 minutes on 2 cores, nothing else running; most of it is each run reading
its CSV file, which the rates leave out), from the repository root:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_tables_speed.py

Writes results/tables_speed.json and .md; ``--quick`` is a check that it runs (a small table,
few steps), its files under the temporary folder.

The table (:func:`make_table`, seed 0): 100,000 rows x 30 columns drawn from a shared
4-dimensional latent code, so the columns are correlated: 12 real, 4 positive (log-normal),
4 count (over-dispersed), 4 binary (two of them the words no/yes) and 6 categorical (words,
3, 5, 8, 12, 16 and 20 categories); 5 % of the cells missing completely at random.

The three contestants train through ``vaekit train`` on CSV files, each in its own fresh
process with 2 threads, the same network (two hidden layers of 128, a code of 15, batch 256,
Adam lr 1e-3) and the same number of steps:

* ``typed``: the table as it is, every column's type given (``--column-type``), with the
  default joint low-rank Gaussian over the real and positive columns (``model.rank``);
* ``typed-rank-none``: the same with ``--rank none`` (independent Gaussian heads), so that
  the table shows what the joint head costs;
* ``all-gaussian``: the same cells as numbers, every column of type real (a Gaussian head
  with a learned scale): a binary column as 0/1, a categorical one as one 0/1 indicator
  column per category (missing where the cell is). The decoder has the same outputs (one
  per feature) and the encoder the same features; only the observed-mask part of the
  encoder's input is wider (one mask entry per indicator: 88 instead of 30).

Rows per second are the run's own records (``metrics.jsonl``'s step records, training time
only, validation excluded): the median over the records after the first ``--warmup-steps``
steps (start-up, the first allocations). Rounds alternate the order of the contestants, so
drifting machine load hits all; the table gives each one's median over the rounds and the
ratios of time per row typed / all-gaussian and typed / typed-rank-none (the joint head's
cost) of the same round's rates, median over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables_data import write_results

ROOT = Path(__file__).resolve().parent.parent
VAEKIT = Path(sys.executable).with_name("vaekit")
CONTESTANTS = ("typed", "typed-rank-none", "all-gaussian")
CATEGORY_COUNTS = (3, 5, 8, 12, 16, 20)
LAYOUT = (("real", 12), ("positive", 4), ("count", 4), ("binary", 4))
LATENT = 4
MISSING_SHARE = 0.05
SETTINGS = {"hidden_dims": [128, 128], "latent_dim": 15, "batch_size": 256, "lr": 1e-3}


def make_table(rows: int, seed: int = 0, missing: float = MISSING_SHARE):
    """The benchmark's table (the module doc) as a DataFrame, and its column types
    (name -> type). Missing cells are NaN (None in the word columns)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, LATENT))

    def signal() -> np.ndarray:  # one column's share of the code, variance about 1
        return z @ rng.standard_normal(LATENT) / np.sqrt(LATENT)

    columns: dict[str, object] = {}
    kinds: dict[str, str] = {}
    for kind, number in LAYOUT:
        for i in range(number):
            name = f"{kind}{i}"
            s = signal()
            if kind == "real":
                v = rng.normal(0, 10) + rng.uniform(0.5, 5) * (s + 0.5 * rng.standard_normal(rows))
            elif kind == "positive":
                v = rng.uniform(1, 100) * np.exp(s + 0.3 * rng.standard_normal(rows))
            elif kind == "count":  # negative binomial, mean exp(1.5 + s), total count 2
                mean = np.exp(1.5 + s)
                v = rng.poisson(rng.gamma(2.0, mean / 2.0)).astype(np.float64)
            else:
                on = rng.random(rows) < 1 / (1 + np.exp(-2 * s))
                v = np.where(on, "yes", "no").astype(object) if i < 2 else on.astype(np.float64)
            columns[name], kinds[name] = v, kind
    for i, k in enumerate(CATEGORY_COUNTS):
        name = f"category{i}"
        logits = z @ rng.standard_normal((LATENT, k))
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        drawn = (p.cumsum(1) > rng.random((rows, 1))).argmax(1)
        columns[name] = np.array([f"{name}_{c}" for c in range(k)], dtype=object)[drawn]
        kinds[name] = "categorical"
    frame = pd.DataFrame(columns)
    hidden = rng.random(frame.shape) < missing
    for j, name in enumerate(frame.columns):
        values = frame[name].to_numpy().copy()
        values[hidden[:, j]] = None if values.dtype == object else np.nan
        frame[name] = values
    return frame, kinds


def as_numbers(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """The all-Gaussian model's table: the same cells as numbers (the module doc), every
    column then read as type real. A missing cell stays missing in each of its columns."""
    parts = {}
    for name, kind in kinds.items():
        column = frame[name]
        if kind in ("binary", "categorical"):
            observed = column.notna()
            for value in sorted(column.dropna().unique(), key=str):
                one = (column == value).astype(np.float64).where(observed)
                parts[name if kind == "binary" else f"{name}={value}"] = one
        else:
            parts[name] = column.astype(np.float64)
    return pd.DataFrame(parts)


def steady_rate(records: list[dict], warmup_steps: int) -> float:
    """Rows per second of a run: the median ``examples_per_s`` of its step records after
    the first ``warmup_steps`` steps."""
    rates = [
        r["examples_per_s"] for r in records if r.get("kind") == "step" and r["step"] > warmup_steps
    ]
    if not rates:
        raise ValueError(f"no step record after step {warmup_steps}: train more steps")
    return float(statistics.median(rates))


def time_ratio(rates: dict[str, list[float]], slow: str, fast: str) -> dict:
    """Time per row of ``slow`` over ``fast`` (rows per second, one a round), round by round,
    and its median over the rounds."""
    ratios = [f / s for s, f in zip(rates[slow], rates[fast], strict=True)]
    return {"median": statistics.median(ratios), "rounds": ratios}


def train(
    csv: Path, kinds: dict[str, str], out: Path, steps: int, log_every: int, extra: list[str]
) -> list[dict]:
    """One ``vaekit train`` (with the flags ``extra``) in a fresh process; its metrics.jsonl
    records."""
    command = [str(VAEKIT), "train", "--data", str(csv), "--out", str(out), "--overwrite"]
    command += ["--max-steps", str(steps), "--epochs", "1000", "--log-every", str(log_every)]
    command += ["--hidden-dims", ",".join(map(str, SETTINGS["hidden_dims"]))]
    command += ["--latent-dim", str(SETTINGS["latent_dim"])]
    command += ["--batch-size", str(SETTINGS["batch_size"]), "--lr", str(SETTINGS["lr"])]
    command += ["--progress", "plain", "--no-report", "--no-tensorboard"]
    command += ["--checkpoint-every", str(10 * steps)]  # only the epochs' checkpoints
    for name, kind in kinds.items():
        command += ["--column-type", f"{name}={kind}"]
    command += extra
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"vaekit train failed on {csv}:\n{done.stderr[-2000:]}")
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def run(rows: int, rounds: int, steps: int, warmup_steps: int, log_every: int, work: Path):
    frame, kinds = make_table(rows)
    numbers = as_numbers(frame, kinds)
    typed, gaussian = work / "typed.csv", work / "all-gaussian.csv"
    frame.to_csv(typed, index=False)
    numbers.to_csv(gaussian, index=False)
    every_real = dict.fromkeys(numbers.columns, "real")
    runs = {
        "typed": (typed, kinds, []),
        "typed-rank-none": (typed, kinds, ["--rank", "none"]),
        "all-gaussian": (gaussian, every_real, []),
    }
    rates: dict[str, list[float]] = {c: [] for c in CONTESTANTS}
    for r in range(rounds):
        order = CONTESTANTS if r % 2 == 0 else CONTESTANTS[::-1]
        for name in order:
            start = time.perf_counter()
            csv, types, extra = runs[name]
            records = train(csv, types, work / name, steps, log_every, extra)
            rates[name].append(steady_rate(records, warmup_steps))
            print(
                f"round {r + 1}: {name} {rates[name][-1]:,.0f} rows/s "
                f"({time.perf_counter() - start:.0f} s with start-up)",
                flush=True,
            )

    return {
        "table": {
            "rows": rows,
            "columns": frame.shape[1],
            "types": {k: list(kinds.values()).count(k) for k in dict.fromkeys(kinds.values())},
            "categories": list(CATEGORY_COUNTS),
            "missing_share": float(frame.isna().to_numpy().mean()),
            "all_gaussian_columns": numbers.shape[1],
        },
        "rows_per_s": {c: {"median": statistics.median(v), "rounds": v} for c, v in rates.items()},
        "cost_typed_over_gaussian": time_ratio(rates, "typed", "all-gaussian"),
        "cost_joint_head": time_ratio(rates, "typed", "typed-rank-none"),
    }


def markdown(result: dict, steps: int, warmup_steps: int, rounds: int) -> list[str]:
    t = result["table"]
    cost = result["cost_typed_over_gaussian"]["median"]
    joint = result["cost_joint_head"]["median"]
    lines = [
        f"Training throughput, rows per second (training time only; median of the step "
        f"records after step {warmup_steps} of {steps}, then the median over {rounds} "
        f"alternating rounds), 2 threads. Table: {t['rows']:,} rows x {t['columns']} "
        f"columns ({', '.join(f'{n} {k}' for k, n in t['types'].items())}), "
        f"{100 * t['missing_share']:.1f} % of cells missing; the all-Gaussian model reads "
        f"the same cells as {t['all_gaussian_columns']} real columns. Network: "
        f"{SETTINGS['hidden_dims']} hidden, code {SETTINGS['latent_dim']}, batch "
        f"{SETTINGS['batch_size']}.",
        "",
        "| model | rows/s | time per row, relative to all-Gaussian |",
        "|---|---|---|",
    ]
    rounds = {name: r["rounds"] for name, r in result["rows_per_s"].items()}
    for name in CONTESTANTS:
        relative = time_ratio(rounds, name, "all-gaussian")["median"]
        rate = result["rows_per_s"][name]["median"]
        lines.append(f"| {name} | {rate:,.0f} | {relative:.2f}x |")
    verdict = "met" if cost <= 1.5 else "NOT met"
    lines += [
        "",
        f"Typed heads cost {cost:.2f}x the all-Gaussian model (target <= 1.5x: {verdict}).",
        f"The joint low-rank head costs {joint:.2f}x: typed / typed-rank-none time per row "
        f"(median of the rounds' ratios).",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=800, help="training steps per run")
    parser.add_argument("--warmup-steps", type=int, default=100, help="steps left out of the rate")
    parser.add_argument("--log-every", type=int, default=25, help="steps per step record")
    parser.add_argument("--quick", action="store_true", help="a check that it runs: tiny")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.rounds, args.steps, args.warmup_steps, args.log_every = 3000, 2, 60, 20, 10
    if not VAEKIT.exists():
        raise SystemExit(f"{VAEKIT} missing: run this script with the project's venv python")
    with tempfile.TemporaryDirectory(prefix="vaekit-speed-") as work:
        result = run(
            args.rows, args.rounds, args.steps, args.warmup_steps, args.log_every, Path(work)
        )
    payload = {
        "command": " ".join(["python", "benchmarks/bench_tables_speed.py", *sys.argv[1:]]),
        "threads": 2,
        "settings": SETTINGS,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "units": "rows per second of training (validation excluded)",
        **result,
    }
    lines = markdown(result, args.steps, args.warmup_steps, args.rounds)
    print("\n".join(lines))
    for path in write_results("tables_speed", payload, lines, args.quick):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
