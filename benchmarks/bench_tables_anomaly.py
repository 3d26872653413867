"""Anomaly detection on tables: AUROC of vaekit's -log p(row) against scikit-learn's
IsolationForest and PyOD's ECOD and VAE detectors, on the same rows.

Rerun (about 3 minutes on 2 cores; nothing else running), from the repository root:

    pip install -e '.[bench]'     # pyod (ECOD, its VAE); without it those peers are skipped
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_tables_anomaly.py

Writes results/tables_anomaly.json and .md; ``--quick`` is a check that it runs, its files
under the temporary folder.

Two tables, each with a rare class made the anomalies:

* ``breast_cancer``: the 357 benign tumours and malignant ones drawn at random until they
  are 10 % of the rows (40 of 397);
* ``wine``: cultivars 1 and 2 (119 rows) and cultivar 0 drawn to 10 % of the rows (13 of 132).

The setting is unsupervised and transductive: every detector is fitted on all the rows,
anomalies included and unlabelled, and scores the same rows; the labels serve only the AUROC
(anomaly = positive class, higher score = more anomalous). Each figure is the mean over seeds
(a new draw of the anomalies and a new initialisation per seed) ± its standard error. vaekit's
score is -log p(row) in nats (``VAEEstimator.score_samples``, K = 100, ``column_types`` the
inferred schema, ``tables_data.vae_settings``); IsolationForest and the PyOD detectors run
with their defaults (PyOD's VAE on standardised columns, its own preprocessing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables_data import mean_and_stderr, schema_of, vae_settings, write_results

TABLES = ("breast_cancer", "wine")
METHODS = ("vaekit", "isolation-forest", "pyod-ecod", "pyod-vae")
RARE_SHARE = 0.10


def rows(table: str, seed: int, rare_share: float) -> tuple[pd.DataFrame, np.ndarray]:
    """The table's normal rows and rare ones drawn to ``rare_share`` of all; labels 1 rare."""
    from sklearn import datasets

    if table == "breast_cancer":
        bunch = datasets.load_breast_cancer(as_frame=True)
        rare = bunch.target.to_numpy() == 0  # malignant
    else:
        bunch = datasets.load_wine(as_frame=True)
        rare = bunch.target.to_numpy() == 0
    normal_rows, rare_rows = np.flatnonzero(~rare), np.flatnonzero(rare)
    n_rare = round(rare_share * len(normal_rows) / (1 - rare_share))
    picked = np.random.default_rng(seed).choice(rare_rows, n_rare, replace=False)
    keep = np.sort(np.concatenate([normal_rows, picked]))
    return bunch.data.iloc[keep].reset_index(drop=True), rare[keep].astype(int)


def peer_scores(method: str, df: pd.DataFrame, seed: int) -> np.ndarray | None:
    """Higher = more anomalous; None where the peer is not installed."""
    x = df.to_numpy(dtype=float)
    if method == "isolation-forest":
        from sklearn.ensemble import IsolationForest

        return -IsolationForest(random_state=seed).fit(x).score_samples(x)
    try:
        if method == "pyod-ecod":
            from pyod.models.ecod import ECOD

            detector = ECOD()
        else:
            from pyod.models.vae import VAE

            detector = VAE(random_state=seed, verbose=0)
    except ImportError:
        return None
    return detector.fit(x).decision_scores_


def run(tables, seeds: int, steps: int, rare_share: float) -> tuple[dict, list[str]]:
    from vaekit import VAEEstimator

    results, skipped = {}, set()
    for table in tables:
        per: dict = {m: [] for m in METHODS}
        for seed in range(seeds):
            df, labels = rows(table, seed, rare_share)
            kinds = schema_of(df)
            for method in METHODS:
                if method == "vaekit":
                    settings = vae_settings(df.shape[1], steps)
                    est = VAEEstimator(**settings, random_state=seed, column_types=kinds)
                    scores = -est.fit(df).score_samples(df)
                else:
                    scores = peer_scores(method, df, seed)
                if scores is None:
                    skipped.add(method)
                    continue
                per[method].append(float(roc_auc_score(labels, scores)))
            print(
                f"{table} seed {seed}: "
                + ", ".join(f"{m} {v[-1]:.4f}" for m, v in per.items() if v)
                + " AUROC",
                flush=True,
            )
        results[table] = {
            "rows": len(df),
            "anomalies": int(labels.sum()),
            **{m: {"auroc": mean_and_stderr(v), "per_seed": v} for m, v in per.items() if v},
        }
    notes = [f"{m}: not run, pyod is not installed (pip install pyod)" for m in sorted(skipped)]
    return results, notes


def markdown(results: dict, seeds: int, steps: int, notes: list[str]) -> list[str]:
    lines = [
        f"AUROC, anomaly = the rare class (higher is better), mean ± standard error over "
        f"{seeds} seeds; every detector fitted on all rows, unlabelled; vaekit {steps} "
        "training steps, score -log p(row) in nats (K = 100).",
        "",
        "| table | " + " | ".join(METHODS) + " |",
        "|---|" + "---|" * len(METHODS),
    ]
    for table, r in results.items():
        cells = []
        for m in METHODS:
            cells.append(f"{r[m]['auroc'][0]:.3f} ± {r[m]['auroc'][1]:.3f}" if m in r else "-")
        head = f"{table} ({r['rows']} rows, {r['anomalies']} anomalies)"
        lines.append(f"| {head} | " + " | ".join(cells) + " |")
    return lines + (["", *notes] if notes else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1500, help="vaekit's training steps")
    parser.add_argument("--quick", action="store_true", help="a check that it runs: tiny")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps = 1, 30
    results, notes = run(args.tables, args.seeds, args.steps, RARE_SHARE)
    payload = {
        "command": " ".join(["python", "benchmarks/bench_tables_anomaly.py", *sys.argv[1:]]),
        "seeds": args.seeds,
        "vaekit_steps": args.steps,
        "units": "AUROC (anomaly = positive class)",
        "notes": notes,
        "results": results,
    }
    stem = "tables_anomaly"
    for path in write_results(
        stem, payload, markdown(results, args.seeds, args.steps, notes), args.quick
    ):
        print(f"wrote {path}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
