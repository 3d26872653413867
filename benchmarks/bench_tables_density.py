"""Held-out negative log-likelihood per row, in nats, on five complete tables: vaekit against
independent per-column marginals and a Gaussian mixture on the continuous columns.

Rerun (about 4 minutes on 2 cores; nothing else running), from the repository root:

    pip install -e '.[bench]'     # statsmodels (the fair and anes96 tables)
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_tables_density.py

Writes results/tables_density.json and .md; ``--quick`` is a check that it runs, its files
under the temporary folder.

Per table (``tables_data.py``) and seed, the rows are split 80/20 at random; every model is
fitted on the 80 % and scored on the 20 %. A held-out row whose category the training rows
never hold is left out for every model (their number is reported). Every figure is
-mean log p(row) over the held-out rows, in nats per row of the table as given (densities
for real and positive columns, in the column's own units; probabilities for the others),
mean ± standard error over the seeds, and every figure covers every cell of the row:

* ``vaekit``: ``VAEEstimator(column_types=schema)``: one likelihood per column type,
  trained on every training row (no validation share, as the peers) with the estimator's
  defaults for a table (the IWAE bound, weight decay, a joint low-rank Gaussian over the
  real and positive columns); log p(x) importance-sampled with
  K = 100 (``score_samples``; a lower bound in expectation, so the nll is, if anything,
  pessimistic);
* ``marginals``: the columns independent, each exact maximum likelihood on the training
  rows in the family vaekit's head for that type uses: Gaussian (real), log-normal
  (positive), negative binomial (count; Poisson where the counts are not over-dispersed),
  Bernoulli and categorical (frequencies with one pseudo-count per category, so that no
  held-out category has probability 0);
* ``gmm+marginals``: a full-covariance Gaussian mixture (components chosen by BIC among 1, 2,
  3, 5 and 8 on the training rows) jointly over the real and positive columns (positive ones
  on the log scale, the change of variables included), times the marginals above for the
  count and category columns. On breast_cancer (real and positive columns only) it is the
  mixture alone, and the comparison is like for like; on wine, diabetes and fair it models
  only the continuous columns jointly; anes96 has none (no figure).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables_data import (
    TABLES,
    load_table,
    mean_and_stderr,
    schema_of,
    vae_settings,
    write_results,
)

METHODS = ("vaekit", "marginals", "gmm+marginals")
CONTINUOUS = ("real", "positive")


def split(df: pd.DataFrame, kinds: dict[str, str], seed: int):
    """80/20 rows; held-out rows with a category the training rows lack are dropped."""
    order = np.random.default_rng(seed).permutation(len(df))
    cut = round(0.8 * len(df))
    train, test = df.iloc[np.sort(order[:cut])], df.iloc[np.sort(order[cut:])]
    keep = np.ones(len(test), dtype=bool)
    for name, kind in kinds.items():
        if kind in ("binary", "categorical"):
            keep &= test[name].isin(set(train[name])).to_numpy()
    return train.reset_index(drop=True), test[keep].reset_index(drop=True), int((~keep).sum())


def negbin_fit(v: np.ndarray):
    """Maximum-likelihood negative binomial (r, p) of counts ``v``, or None where the counts
    are not over-dispersed (Poisson is then the maximum)."""
    mean, var = v.mean(), v.var()
    if var <= mean:
        return None

    def nll(params):
        r, p = math.exp(params[0]), special.expit(params[1])
        return -stats.nbinom.logpmf(v, r, p).sum()

    r0 = mean**2 / (var - mean)
    start = [math.log(r0), special.logit(r0 / (r0 + mean))]
    best = optimize.minimize(nll, start, method="Nelder-Mead", options={"maxiter": 2000})
    return math.exp(best.x[0]), float(special.expit(best.x[1]))


def marginal_logp(train: pd.Series, test: pd.Series, kind: str) -> np.ndarray:
    """log p(v) of each held-out cell under the column's own family, fitted on ``train``."""
    if kind in ("binary", "categorical"):
        counts = train.value_counts()
        categories = sorted(set(train))
        total = len(train) + len(categories)
        table = {c: math.log((counts.get(c, 0) + 1) / total) for c in categories}
        return np.array([table[c] for c in test])
    v, t = train.to_numpy(dtype=float), test.to_numpy(dtype=float)
    if kind == "real":
        return stats.norm.logpdf(t, v.mean(), v.std())
    if kind == "positive":
        lv = np.log(v)
        return stats.norm.logpdf(np.log(t), lv.mean(), lv.std()) - np.log(t)
    fit = negbin_fit(v) if kind == "count" else None
    if fit is None:
        return stats.poisson.logpmf(t, v.mean())
    return stats.nbinom.logpmf(t, *fit)


def gmm_logp(train: pd.DataFrame, test: pd.DataFrame, kinds: dict[str, str], seed: int):
    """log p of the continuous columns jointly under a BIC-chosen Gaussian mixture (the
    positive ones on the log scale, with the change of variables), ``[N]``."""
    from sklearn.mixture import GaussianMixture

    names = [n for n, k in kinds.items() if k in CONTINUOUS]

    def values(df):
        cols = [
            np.log(df[n].to_numpy(float)) if kinds[n] == "positive" else df[n].to_numpy(float)
            for n in names
        ]
        return np.stack(cols, axis=1)

    x, t = values(train), values(test)
    jacobian = sum(-np.log(test[n].to_numpy(float)) for n in names if kinds[n] == "positive")
    best, best_bic = None, math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notices of the larger mixtures
        for k in (1, 2, 3, 5, 8):
            if k * (len(names) + 1) >= len(x):
                break
            gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-6, random_state=seed)
            gmm.fit(x)
            bic = gmm.bic(x)
            if bic < best_bic:
                best, best_bic = gmm, bic
    return best.score_samples(t) + jacobian, best.n_components


def run(tables, seeds: int, steps: int, max_rows: int | None) -> dict:
    from vaekit import VAEEstimator

    results = {}
    for table in tables:
        df = load_table(table, max_rows)
        kinds = schema_of(df)
        per: dict = {m: [] for m in METHODS}
        dropped, components = [], []
        for seed in range(seeds):
            train, test, gone = split(df, kinds, seed)
            dropped.append(gone)
            settings = vae_settings(df.shape[1], steps)
            # Every training row trains (val_fraction 0), as the peers fit on all of them.
            est = VAEEstimator(**settings, val_fraction=0.0, random_state=seed, column_types=kinds)
            est.fit(train)
            per["vaekit"].append(float(-est.score_samples(test).mean()))
            marg = {n: marginal_logp(train[n], test[n], k) for n, k in kinds.items()}
            per["marginals"].append(float(-sum(marg.values()).mean()))
            discrete = [n for n, k in kinds.items() if k not in CONTINUOUS]
            if len(discrete) < len(kinds):
                joint, k = gmm_logp(train, test, kinds, seed)
                components.append(k)
                joint = joint + sum((marg[n] for n in discrete), np.zeros(len(test)))
                per["gmm+marginals"].append(float(-joint.mean()))
            print(
                f"{table} seed {seed}: "
                + ", ".join(f"{m} {v[-1]:.3f}" for m, v in per.items() if v)
                + " nats per row",
                flush=True,
            )
        results[table] = {
            "rows": len(df),
            "schema": kinds,
            "heldout_rows_dropped_for_unseen_categories": dropped,
            "gmm_components": components,
            **{m: {"nll": mean_and_stderr(v), "per_seed": v} for m, v in per.items()},
        }
    return results


def markdown(results: dict, seeds: int, steps: int) -> list[str]:
    lines = [
        f"Held-out nll, nats per row (every cell of the row; lower is better), mean ± "
        f"standard error over {seeds} seeds of an 80/20 split; vaekit {steps} training "
        "steps, K = 100. gmm+marginals: a Gaussian mixture over the real and positive "
        "columns times independent marginals for the others (the mixture alone on "
        "breast_cancer; '-': no real or positive column).",
        "",
        "| table | columns | " + " | ".join(METHODS) + " |",
        "|---|---|" + "---|" * len(METHODS),
    ]
    for table, r in results.items():
        kinds = list(r["schema"].values())
        counted = ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds))
        cells = []
        for m in METHODS:
            mean, se = r[m]["nll"]
            cells.append("-" if np.isnan(mean) else f"{mean:.2f} ± {se:.2f}")
        lines.append(f"| {table} ({r['rows']} rows) | {counted} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1500, help="vaekit's training steps")
    parser.add_argument("--max-rows", type=int, default=None, help="rows per table at most")
    parser.add_argument("--quick", action="store_true", help="a check that it runs: tiny")
    args = parser.parse_args()
    if args.quick:
        args.tables, args.seeds, args.steps, args.max_rows = ["wine", "anes96"], 2, 30, 150
    results = run(args.tables, args.seeds, args.steps, args.max_rows)
    payload = {
        "command": " ".join(["python", "benchmarks/bench_tables_density.py", *sys.argv[1:]]),
        "seeds": args.seeds,
        "vaekit_steps": args.steps,
        "units": "nats per held-out row of the table as given, every cell of the row",
        "results": results,
    }
    stem = "tables_density"
    for path in write_results(stem, payload, markdown(results, args.seeds, args.steps), args.quick):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
