"""Synthetic rows: vaekit against SDV's TVAE and CTGAN on two real mixed-type tables with a
class column, by machine-learning efficacy and SDMetrics' quality scores.

Rerun (about 20 minutes on 2 cores, nothing else running; with ``--sdv-epochs default``
about 40), from the repository root:

    pip install -e '.[bench]'     # statsmodels (the fair and anes96 tables)
    make bench-sdv                # .venv-sdv: torch==2.13.0 (CPU), then sdv (with sdmetrics)
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_tables_synth.py

Writes results/tables_synth.json and .md (tables_synth_sdv_default.* with ``--sdv-epochs
default``); ``--quick`` is a check that it runs (few steps and
epochs), its files under the temporary folder. The output says which budget ran.

Tables (``tables_data.py``), each with its class column:

* ``fair`` (1,000 rows): ``affair``, 1 where the survey's ``affairs`` is above 0 (the
  classic use of the table), which replaces ``affairs``; 5 categorical, 3 real columns;
* ``anes96`` (944 rows): ``vote`` (Clinton or Dole), binary; 6 categorical, 3 count columns.

Per table and seed the rows are split 80/20 at random; every method is fitted on the same
80 % and draws as many synthetic rows:

* ``vaekit``: ``VAEEstimator(column_types=schema)`` with the settings of every table
  benchmark (``tables_data.vae_settings``: 1,500 Adam steps of 64 rows), ``sample``: every
  cell drawn from p(v|z), z from the prior;
* ``tvae``, ``ctgan``: SDV's TVAESynthesizer and CTGANSynthesizer at their default
  settings (batch 500), on the CPU with 2 threads, in their own venv
  (``contestants/sdv_synth.py``); binary and categorical columns declared categorical, the
  others numerical. Their budget (``--sdv-epochs``): ``equal`` (the default), as many passes
  over the training rows as vaekit's steps make (1,500 x 64 rows: 120 epochs on fair's 800
  training rows); ``default``, SDV's own 300 epochs (at 2 cores more than twice the time);
  or a number of epochs. vaekit's own budget is ``--steps``; its passes over the training
  rows (epochs) are printed beside the peers' so that the two budgets can be read side by
  side: ``--steps 3750`` puts vaekit at SDV's 300 epochs on fair's 800 training rows, and
  with ``equal`` the peers stay at 300 too.

Measures, mean ± standard error over the seeds:

* efficacy: a classifier trained on each method's synthetic rows, tested on the real
  held-out 20 %, as macro-F1 (and accuracy in the JSON). Two classifiers: logistic
  regression and gradient boosting (scikit-learn's HistGradientBoostingClassifier), both on
  one-hot categories and standardised numbers. ``real``: the same classifier on the real
  training rows, the ceiling;
* SDMetrics' QualityReport of the synthetic rows against the real training rows: Column
  Shapes, and Column Pair Trends over the pairs SDMetrics counts by default (real correlation
  above 0.5, or association above 0.3; the JSON also holds the score over every pair);
* fit time in seconds (vaekit: ``fit``; SDV: its ``fit``), a noisy figure on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contestants.sdv_synth import CATEGORY_KINDS, as_categories
from tables_data import load_table, mean_and_stderr, schema_of, vae_settings, write_results

HERE = Path(__file__).resolve().parent

SDV_PYTHON = Path(os.environ.get("VAEKIT_SDV_PYTHON", HERE.parent / ".venv-sdv" / "bin" / "python"))
TARGETS = {"fair": "affair", "anes96": "vote"}
METHODS = ("real", "vaekit", "tvae", "ctgan")
CLASSIFIERS = ("logistic", "boosting")
QUALITY = ("column_shapes", "column_pair_trends", "column_pair_trends_every_pair")


def load(name: str) -> pd.DataFrame:
    """One table with its class column (the module doc)."""
    df = load_table(name)
    if name == "fair":
        df = df.assign(affair=(df["affairs"] > 0).astype(np.float64)).drop(columns="affairs")
    return df


def split(df: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """80/20 rows, at random (seed)."""
    order = np.random.default_rng(seed).permutation(len(df))
    cut = round(0.8 * len(df))
    train, test = df.iloc[np.sort(order[:cut])], df.iloc[np.sort(order[cut:])]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def classifier(name: str, kinds: dict[str, str], target: str, seed: int):
    """An unfitted scikit-learn pipeline: one-hot categories, standardised numbers, then
    logistic regression or gradient boosting."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categories = [c for c, k in kinds.items() if k in CATEGORY_KINDS and c != target]
    numbers = [c for c, k in kinds.items() if k not in CATEGORY_KINDS and c != target]
    encode = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categories),
            ("numbers", StandardScaler(), numbers),
        ]
    )
    if name == "logistic":
        model = LogisticRegression(max_iter=2000)
    else:
        model = HistGradientBoostingClassifier(random_state=seed)
    return make_pipeline(encode, model)


def efficacy(
    train: pd.DataFrame,
    test: pd.DataFrame,
    kinds: dict[str, str],
    target: str,
    name: str,
    seed: int,
) -> dict[str, float]:
    """Accuracy and macro-F1 (over the held-out rows' classes) on the real ``test`` rows of
    classifier ``name`` trained on ``train`` (real or synthetic). Where ``train`` holds one
    class only, the classifier is that constant."""
    from sklearn.metrics import accuracy_score, f1_score

    train, test = as_categories(train, kinds), as_categories(test, kinds)
    x_train, y_train = train.drop(columns=target), train[target]
    x_test, y_test = test.drop(columns=target), test[target]
    if y_train.nunique() == 1:
        predicted = np.full(len(test), y_train.iloc[0], dtype=object)
    else:
        predicted = classifier(name, kinds, target, seed).fit(x_train, y_train).predict(x_test)
    labels = sorted(set(y_test))
    return {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "macro_f1": float(f1_score(y_test, predicted, labels=labels, average="macro")),
    }


def run_sdv(folder: Path, seed: int, epochs: int | None) -> dict:
    """The SDV peer in its own venv on ``folder`` (contestants/sdv_synth.py)."""
    command = [str(SDV_PYTHON), str(HERE / "contestants" / "sdv_synth.py"), "--folder", str(folder)]
    command += ["--seed", str(seed)] + ([] if epochs is None else ["--epochs", str(epochs)])
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the SDV peer failed on {folder}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sdv_budget(choice: str, steps: int, batch: int, rows: int) -> int | None:
    """TVAE's and CTGAN's epochs: ``equal`` (vaekit's passes over ``rows`` training rows,
    ``steps`` x ``batch`` rows, rounded), ``default`` (None: SDV's own) or a number."""
    if choice == "equal":
        return max(1, round(steps * batch / rows))
    if choice == "default":
        return None
    if not choice.isdigit() or int(choice) < 1:
        raise SystemExit(f"--sdv-epochs {choice}: give equal, default or a number of epochs >= 1")
    return int(choice)


def run(tables, seeds: int, steps: int, sdv_epochs: str, work: Path) -> dict:
    from vaekit import VAEEstimator

    results = {}
    for table in tables:
        df, target = load(table), TARGETS[table]
        kinds = schema_of(df)
        per: dict = {m: {c: [] for c in CLASSIFIERS} for m in METHODS}
        scores: dict = {m: {q: [] for q in QUALITY} for m in METHODS[1:]}
        seconds: dict = {m: [] for m in METHODS[1:]}
        epochs: dict = {}
        for seed in range(seeds):
            train, test = split(df, seed)
            folder = work / f"{table}-{seed}"
            folder.mkdir()
            train.to_csv(folder / "train.csv", index=False)
            (folder / "types.json").write_text(json.dumps(kinds))
            start = time.perf_counter()
            settings = vae_settings(df.shape[1], steps)
            est = VAEEstimator(**settings, random_state=seed, column_types=kinds).fit(train)
            seconds["vaekit"].append(time.perf_counter() - start)
            est.sample(len(train), random_state=seed).to_csv(folder / "vaekit.csv", index=False)
            budget = sdv_budget(sdv_epochs, steps, settings["batch_size"], len(train))
            peer = run_sdv(folder, seed, budget)
            epochs = peer["epochs"]
            for method in METHODS:
                rows = train if method == "real" else pd.read_csv(folder / f"{method}.csv")
                for name in CLASSIFIERS:
                    per[method][name].append(efficacy(rows, test, kinds, target, name, seed))
                if method != "real":
                    for q in QUALITY:
                        scores[method][q].append(peer["quality"][method][q])
                if method in ("tvae", "ctgan"):
                    seconds[method].append(peer["fit_seconds"][method])
            f1 = {m: per[m]["boosting"][-1]["macro_f1"] for m in METHODS}
            print(
                f"{table} seed {seed}: boosting macro-F1 "
                + ", ".join(f"{m} {v:.3f}" for m, v in f1.items())
                + "; pair trends "
                + ", ".join(f"{m} {s['column_pair_trends'][-1]:.3f}" for m, s in scores.items()),
                flush=True,
            )
        results[table] = {
            "rows": len(df),
            "target": target,
            "schema": kinds,
            "sdv_epochs": epochs,
            "sdv_budget": sdv_epochs,
            "vaekit_steps": steps,
            "vaekit_epochs": sdv_budget("equal", steps, settings["batch_size"], len(train)),
            "methods": {
                m: {
                    "efficacy": {
                        c: {
                            k: {"mean_stderr": mean_and_stderr([r[k] for r in per[m][c]])}
                            | {"per_seed": [r[k] for r in per[m][c]]}
                            for k in ("accuracy", "macro_f1")
                        }
                        for c in CLASSIFIERS
                    },
                    **(
                        {}
                        if m == "real"
                        else {
                            "quality": {
                                q: {"mean_stderr": mean_and_stderr(v), "per_seed": v}
                                for q, v in scores[m].items()
                            },
                            "fit_seconds": mean_and_stderr(seconds[m]),
                        }
                    ),
                }
                for m in METHODS
            },
        }
    return results


def markdown(results: dict, seeds: int) -> list[str]:
    def cell(pair) -> str:
        return f"{pair[0]:.3f} ± {pair[1]:.3f}"

    lines = []
    for table, r in results.items():
        epochs = ", ".join(f"{m} {e} epochs" for m, e in r["sdv_epochs"].items())
        budget = {
            "equal": "as many passes over the training rows as vaekit's steps",
            "default": "SDV's defaults",
        }.get(r["sdv_budget"], "set by --sdv-epochs")
        lines += [
            f"**{table}** ({r['rows']} rows, class column `{r['target']}`): 80/20 split, "
            f"mean ± standard error over {seeds} seeds; vaekit {r['vaekit_steps']} steps of 64 "
            f"rows ({r['vaekit_epochs']} epochs), {epochs} ({budget}). Macro-F1 on the real "
            "held-out rows of a classifier trained on each method's rows (real: the real "
            "training rows, the ceiling); SDMetrics' scores "
            "against the real training rows (0 to 1, higher is better).",
            "",
            "| rows trained on | macro-F1, logistic | macro-F1, boosting | column shapes "
            "| column pair trends | fit, s |",
            "|---|---|---|---|---|---|",
        ]
        for m in METHODS:
            d = r["methods"][m]
            f1 = [cell(d["efficacy"][c]["macro_f1"]["mean_stderr"]) for c in CLASSIFIERS]
            if m == "real":
                rest = ["-", "-", "-"]
            else:
                q = d["quality"]
                rest = [
                    cell(q["column_shapes"]["mean_stderr"]),
                    cell(q["column_pair_trends"]["mean_stderr"]),
                    f"{d['fit_seconds'][0]:.0f}",
                ]
            lines.append(f"| {m} | " + " | ".join(f1 + rest) + " |")
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1500, help="vaekit's training steps")
    parser.add_argument(
        "--sdv-epochs",
        default="equal",
        help="TVAE's and CTGAN's budget: equal (vaekit's passes over the rows), default "
        "(SDV's 300 epochs) or a number of epochs",
    )
    parser.add_argument("--quick", action="store_true", help="a check that it runs: tiny")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps, args.sdv_epochs = 1, 30, "3"
    sdv_budget(args.sdv_epochs, 1, 1, 1)  # a bad budget fails before any training
    if not SDV_PYTHON.exists():
        raise SystemExit(f"{SDV_PYTHON} missing: make bench-sdv creates the SDV venv")
    with tempfile.TemporaryDirectory(prefix="vaekit-synth-") as work:
        results = run(args.tables, args.seeds, args.steps, args.sdv_epochs, Path(work))
    payload = {
        "command": " ".join(["python", "benchmarks/bench_tables_synth.py", *sys.argv[1:]]),
        "seeds": args.seeds,
        "threads": 2,
        "units": "macro-F1 and accuracy (0 to 1) on real held-out rows; SDMetrics scores "
        "(0 to 1); fit time in seconds",
        "results": results,
    }
    lines = markdown(results, args.seeds)
    print("\n".join(lines))
    # SDV's own budget keeps its own file, so the two budgets' tables sit side by side.
    stem = "tables_synth_sdv_default" if args.sdv_epochs == "default" else "tables_synth"
    for path in write_results(stem, payload, lines, args.quick):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
