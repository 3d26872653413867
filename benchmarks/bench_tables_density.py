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
for real and positive columns, in the column's own units; probabilities for the others; a
zero-inflated column's cell a probability where it is 0 and a density per unit of the
column above 0), mean ± standard error over the seeds, and every figure covers every cell
of the row. The reference measure is the same for every method: Lebesgue measure on the
real and positive cells, counting measure on the others, and for a zero-inflated cell
counting measure at 0 plus Lebesgue measure on (0, inf):

* ``vaekit``: ``VAEEstimator(column_types=schema)``: one likelihood per column type,
  trained on every training row (no validation share, as the peers) with the estimator's
  defaults for a table (the IWAE bound, weight decay, a joint low-rank Gaussian over the
  real and positive columns); log p(x) importance-sampled with
  K = 100 (``score_samples``; a lower bound in expectation, so the nll is, if anything,
  pessimistic);
* ``marginals``: the columns independent, each exact maximum likelihood on the training
  rows in the family vaekit's head for that type uses: Gaussian (real), log-normal
  (positive), a share of zeros and a log-normal above 0 (zero-inflated), negative binomial
  (count; Poisson where the counts are not over-dispersed), Bernoulli and categorical
  (frequencies with one pseudo-count per category, or per zero and non-zero, so that no
  held-out value has probability 0);
* ``gmm+marginals``: a full-covariance Gaussian mixture (components chosen by BIC among 1, 2,
  3, 5 and 8 on the training rows) jointly over the real and positive columns (positive ones
  on the log scale, the change of variables included), times the marginals above for the
  count and category columns. Zero-inflated columns join it by their pattern of zeros:
  which of them are 0 is a category of its own (frequencies with one pseudo-count per
  pattern), and each pattern has its own mixture over the real and positive columns and the
  logs of its non-zero zero-inflated ones, fitted on the training rows of that pattern (a
  pattern with too few rows for one full Gaussian takes the marginals above instead). A
  mixture cannot put a density on a point mass, and a spike of width 1e-3 on the zeros
  would be counted as nats of a measure the others do not use. On breast_cancer (real and
  positive columns only) it is the mixture alone, and the comparison is like for like; on
  wine, diabetes and fair it models only the continuous columns jointly; anes96 has none
  (no figure).
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
ZERO = "zero-inflated"
MEASURE = (
    "Lebesgue measure on real and positive cells, counting measure on count and category "
    "cells, counting measure at 0 plus Lebesgue measure on (0, inf) on zero-inflated cells"
)


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
    if kind == ZERO:  # log P(0) at a zero; log(1 - P(0)) + the log-normal's density above
        log_zero = math.log(((v == 0).sum() + 1) / (len(v) + 2))
        log_above = math.log(((v > 0).sum() + 1) / (len(v) + 2))
        above = np.where(t > 0, t, 1.0)
        lv = np.log(v[v > 0])
        positive = stats.norm.logpdf(np.log(above), lv.mean(), lv.std()) - np.log(above)
        return np.where(t > 0, log_above + positive, log_zero)
    if kind == "real":
        return stats.norm.logpdf(t, v.mean(), v.std())
    if kind == "positive":
        lv = np.log(v)
        return stats.norm.logpdf(np.log(t), lv.mean(), lv.std()) - np.log(t)
    fit = negbin_fit(v) if kind == "count" else None
    if fit is None:
        return stats.poisson.logpmf(t, v.mean())
    return stats.nbinom.logpmf(t, *fit)


def mixture(x: np.ndarray, seed: int):
    """The Gaussian mixture of ``x [N, D]`` with the lowest BIC among 1, 2, 3, 5 and 8
    components (as many as the rows allow), or None where the rows are too few for one."""
    from sklearn.mixture import GaussianMixture

    best, best_bic = None, math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notices of the larger mixtures
        for k in (1, 2, 3, 5, 8):
            if k * (x.shape[1] + 1) >= len(x):
                break
            gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-6, random_state=seed)
            gmm.fit(x)
            bic = gmm.bic(x)
            if bic < best_bic:
                best, best_bic = gmm, bic
    return best


def gmm_logp(train: pd.DataFrame, test: pd.DataFrame, kinds: dict[str, str], seed: int):
    """log p ``[N]`` of the real, positive and zero-inflated columns jointly (the module
    doc): the pattern of zeros of the zero-inflated columns, then per pattern a BIC-chosen
    Gaussian mixture over the continuous values it leaves (positive and non-zero values on
    the log scale, with the change of variables); and the largest number of components."""
    names = [n for n, k in kinds.items() if k in CONTINUOUS or k == ZERO]
    zeros = [n for n in names if kinds[n] == ZERO]
    logged = {n for n in names if kinds[n] != "real"}

    def pattern(df):
        return [tuple(z) for z in (df[zeros].to_numpy(float) == 0)] if zeros else [()] * len(df)

    def values(df, present):
        cols = [df[n].to_numpy(float) for n in present]
        return np.stack(
            [np.log(c) if n in logged else c for n, c in zip(present, cols, strict=True)], 1
        )

    train_patterns, test_patterns = pattern(train), pattern(test)
    seen = {s: train_patterns.count(s) for s in set(train_patterns)}
    total = len(train) + 2 ** len(zeros)  # one pseudo-count for each of the 2^Z patterns
    logp, most = np.zeros(len(test)), 0
    for s in set(test_patterns):
        rows = np.array([p == s for p in test_patterns])
        here = test[rows]
        logp[rows] = math.log((seen.get(s, 0) + 1) / total)
        present = [n for n in names if n not in zeros or not s[zeros.index(n)]]
        if not present:
            continue
        fitted = train[np.array([p == s for p in train_patterns])] if s in seen else train[:0]
        gmm = mixture(values(fitted, present), seed) if len(fitted) else None
        if gmm is None:  # too few rows of this pattern: the columns' own marginals
            for n in present:
                kind = "positive" if kinds[n] == ZERO else kinds[n]
                source = train[n][train[n] > 0] if kinds[n] == ZERO else train[n]
                logp[rows] += marginal_logp(source, here[n], kind)
            continue
        most = max(most, gmm.n_components)
        jacobian = sum(-np.log(here[n].to_numpy(float)) for n in present if n in logged)
        logp[rows] += gmm.score_samples(values(here, present)) + jacobian
    return logp, most


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
            discrete = [n for n, k in kinds.items() if k not in (*CONTINUOUS, ZERO)]
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
        "columns (zero-inflated ones: their pattern of zeros, then one mixture per pattern "
        "over the values above 0 with the others) times independent marginals for the "
        "others (the mixture alone on breast_cancer; '-': no real, positive or "
        f"zero-inflated column). Reference measure: {MEASURE}.",
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
    parser.add_argument("--tables", nargs="+", default=None, choices=TABLES)
    parser.add_argument("--seeds", type=int, default=None, help="default 3")
    parser.add_argument("--steps", type=int, default=None, help="vaekit's (default 1500)")
    parser.add_argument("--max-rows", type=int, default=None, help="rows per table at most")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a check that it runs: tiny (wine and anes96, 2 seeds, 30 steps, 150 rows, where "
        "not given), its files under the temporary folder",
    )
    args = parser.parse_args()
    tiny = args.quick
    args.tables = args.tables or (["wine", "anes96"] if tiny else list(TABLES))
    args.seeds = args.seeds or (2 if tiny else 3)
    args.steps = args.steps or (30 if tiny else 1500)
    args.max_rows = args.max_rows or (150 if tiny else None)
    results = run(args.tables, args.seeds, args.steps, args.max_rows)
    payload = {
        "command": " ".join(["python", "benchmarks/bench_tables_density.py", *sys.argv[1:]]),
        "seeds": args.seeds,
        "vaekit_steps": args.steps,
        "units": "nats per held-out row of the table as given, every cell of the row",
        "measure": MEASURE,
        "results": results,
    }
    stem = "tables_density"
    for path in write_results(stem, payload, markdown(results, args.seeds, args.steps), args.quick):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
