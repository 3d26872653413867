"""Imputation error on five complete tables with cells removed on purpose: vaekit against
mean/mode, KNNImputer and IterativeImputer (BayesianRidge; ExtraTrees, missForest-like).

Rerun (about 16 minutes on 2 cores, 35 with ``--missing self-masking``; nothing else
running), from the repository root:

    pip install -e '.[bench]'     # statsmodels (the fair and anes96 tables)
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_tables_impute.py

Writes results/tables_impute.json and .md; ``--quick`` is a check that it runs (a minute),
its files under the temporary folder.

The tables are those of ``tables_data.py``. Per table, seed and pattern, cells are hidden:

* ``mcar20``, ``mcar50``: each cell independently with probability 0.2 or 0.5;
* ``mnar``: not at random, a cell above its column's median (for a category column: above
  the median category, in the categories' sorted order) with probability 0.5, any other with
  probability 0.1; the share hidden depends on the ties, and is reported.

The errors are over the hidden cells only:

* ``rmse``: the root mean square of (imputed - true) / sd over every hidden cell of a
  numeric column (real, positive, zero-inflated, count), sd the column's standard deviation
  in the complete table: error in standard deviations, pooled over the numeric columns;
* ``acc``: the share of hidden cells of categorical and binary columns imputed with the true
  category.

Each figure is the mean over seeds ± its standard error (sd / sqrt(seeds)). Every method
sees the same hidden cells of a seed, so whether vaekit is ahead of a peer is a paired
question: a second table gives, per vaekit row, table and pattern, the mean over seeds of
(vaekit - peer) rmse and acc ± the standard error of those differences, against mean/mode
and against the peer with the best mean (JSON: ``paired``). Three seeds by default: the
seconds recorded in the last full results (3 seeds, run alone on 2 cores) sum to 16 minutes
for the at-random methods and 18 more for the self-masking row, so 5 seeds would take about
27 minutes, or 57 with ``--missing self-masking``. The peers see the
numeric columns standardised with the observed cells' mean and sd, and each category column
one-hot (its indicators all missing where the cell is); a category is the largest imputed
indicator. vaekit is ``VAEEstimator(column_types=schema).fit(table).impute(table)``: the
Python API over ``vaekit impute``'s engine, trained on the table with its holes, one setting
for every table (``tables_data.vae_settings``). A row with every cell hidden is imputed too.
``--missing self-masking`` adds a row ``vaekit (self-masking)``: the same settings with the
self-masking model of missing cells (``VAEEstimator(missing="self-masking")``), beside the
at-random one.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables_data import (
    NUMERIC,
    TABLES,
    load_table,
    mean_and_stderr,
    schema_of,
    vae_settings,
    write_results,
)

PATTERNS = ("mcar20", "mcar50", "mnar")
METHODS = ("mean/mode", "knn", "iterative-bayesridge", "iterative-extratrees", "vaekit")
SELF_MASKING = "vaekit (self-masking)"
GAUSSIAN_KINDS = {"real", "positive"}  # the columns the self-masking model covers


def hide(df: pd.DataFrame, kinds: dict[str, str], pattern: str, seed: int) -> np.ndarray:
    """``[N, C]`` True where the cell is hidden (the module doc)."""
    rng = np.random.default_rng(seed)
    u = rng.random(df.shape)
    if pattern.startswith("mcar"):
        return u < int(pattern[4:]) / 100
    above = np.zeros(df.shape, dtype=bool)
    for j, name in enumerate(df.columns):
        col = df[name]
        if kinds[name] in NUMERIC:
            above[:, j] = col.to_numpy(dtype=float) > col.median()
        else:
            codes = pd.Categorical(col).codes
            above[:, j] = codes > np.median(codes)
    return u < np.where(above, 0.5, 0.1)


def design(df: pd.DataFrame, kinds: dict[str, str]):
    """The peers' matrix: numeric columns standardised (observed cells' mean and sd), each
    category column one-hot with NaN indicators where missing; and the way back."""
    blocks, back = [], []
    for name in df.columns:
        col = df[name]
        if kinds[name] in NUMERIC:
            v = col.to_numpy(dtype=float)
            mu, sd = np.nanmean(v), np.nanstd(v) or 1.0
            blocks.append(((v - mu) / sd)[:, None])
            back.append((name, None, mu, sd))
        else:
            cats = sorted(col.dropna().unique())
            onehot = np.stack([(col == c).to_numpy(dtype=float) for c in cats], axis=1)
            onehot[col.isna().to_numpy()] = np.nan
            blocks.append(onehot)
            back.append((name, cats, None, None))
    return np.concatenate(blocks, axis=1), back


def undesign(matrix: np.ndarray, back, template: pd.DataFrame) -> pd.DataFrame:
    out, start = template.copy(), 0
    for name, cats, mu, sd in back:
        if cats is None:
            out[name] = matrix[:, start] * sd + mu
            start += 1
        else:
            k = len(cats)
            out[name] = np.asarray(cats, dtype=object)[matrix[:, start : start + k].argmax(1)]
            start += k
    return out


def impute_peer(method: str, holes: pd.DataFrame, kinds: dict[str, str], seed: int):
    from sklearn.ensemble import ExtraTreesRegressor
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer
    from sklearn.linear_model import BayesianRidge

    if method == "mean/mode":
        out = holes.copy()
        for name in holes.columns:
            col = holes[name]
            fill = col.mean() if kinds[name] in NUMERIC else col.mode().iloc[0]
            out[name] = col.fillna(fill)
        return out
    x, back = design(holes, kinds)
    if method == "knn":
        imputer = KNNImputer(n_neighbors=5)
    elif method == "iterative-bayesridge":
        imputer = IterativeImputer(BayesianRidge(), max_iter=10, random_state=seed)
    else:
        trees = ExtraTreesRegressor(
            n_estimators=20, min_samples_leaf=2, n_jobs=2, random_state=seed
        )
        imputer = IterativeImputer(trees, max_iter=5, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # IterativeImputer's early-stopping notice
        filled = imputer.fit_transform(x)
    if filled.shape[1] != x.shape[1]:  # a column with no observed cell was dropped
        raise RuntimeError(f"{method}: a column has no observed cell")
    return undesign(filled, back, holes)


def impute_vaekit(
    holes: pd.DataFrame, kinds: dict[str, str], seed: int, steps: int, missing: str = "at-random"
):
    from vaekit import VAEEstimator

    settings = vae_settings(holes.shape[1], steps)
    est = VAEEstimator(
        **settings, val_fraction=0.0, random_state=seed, column_types=kinds, missing=missing
    )
    return est.fit(holes).impute(holes)


def errors(truth, filled, hidden, kinds, sd) -> tuple[float, float]:
    """(rmse in sds over hidden numeric cells, accuracy over hidden category cells)."""
    sq, hits, n_num, n_cat = 0.0, 0, 0, 0
    for j, name in enumerate(truth.columns):
        rows = hidden[:, j]
        if not rows.any():
            continue
        t, f = truth[name].to_numpy()[rows], filled[name].to_numpy()[rows]
        if kinds[name] in NUMERIC:
            sq += float((((f.astype(float) - t.astype(float)) / sd[name]) ** 2).sum())
            n_num += int(rows.sum())
        else:
            hits += int(sum(a == b for a, b in zip(f, t, strict=True)))
            n_cat += int(rows.sum())
    rmse = float(np.sqrt(sq / n_num)) if n_num else float("nan")
    return rmse, (hits / n_cat if n_cat else float("nan"))


def run(tables, patterns, seeds: int, steps: int, max_rows: int | None, methods=METHODS) -> dict:
    results: dict = {}
    for table in tables:
        truth = load_table(table, max_rows)
        kinds = schema_of(truth)
        sd = {n: float(truth[n].astype(float).std()) for n in truth if kinds[n] in NUMERIC}
        # The self-masking model covers real and positive columns; a table with none (fair:
        # its one number column is zero-inflated) has no such row.
        here = [m for m in methods if m != SELF_MASKING or GAUSSIAN_KINDS & set(kinds.values())]
        for pattern in patterns:
            cell: dict = {m: {"rmse": [], "acc": [], "seconds": []} for m in here}
            shares = []
            for seed in range(seeds):
                hidden = hide(truth, kinds, pattern, seed)
                shares.append(float(hidden.mean()))
                holes = truth.mask(hidden)
                for method in here:
                    start = time.perf_counter()
                    if method == "vaekit":
                        filled = impute_vaekit(holes, kinds, seed, steps)
                    elif method == SELF_MASKING:
                        filled = impute_vaekit(holes, kinds, seed, steps, "self-masking")
                    else:
                        filled = impute_peer(method, holes, kinds, seed)
                    cell[method]["seconds"].append(time.perf_counter() - start)
                    rmse, acc = errors(truth, filled, hidden, kinds, sd)
                    cell[method]["rmse"].append(rmse)
                    cell[method]["acc"].append(acc)
                    print(
                        f"{table} {pattern} seed {seed} {method}: rmse {rmse:.4f} sd, "
                        f"acc {acc:.4f}, {cell[method]['seconds'][-1]:.1f} s",
                        flush=True,
                    )
            results.setdefault(table, {"rows": len(truth), "schema": kinds})[pattern] = {
                "hidden_share": float(np.mean(shares)),
                **{
                    m: {k: mean_and_stderr(v) for k, v in cell[m].items()} | {"per_seed": cell[m]}
                    for m in here
                },
                "paired": paired(cell),
            }
    return results


def paired(cell: dict) -> dict:
    """Per vaekit row and measure, its paired differences over seeds (vaekit - peer, the same
    hidden cells per seed) against mean/mode and against the best peer on that measure (the
    lowest mean rmse, the highest mean acc): ``{row: {key: {"mean/mode": (mean, se),
    "best peer": name, "best": (mean, se)}}}``, se the standard error of the differences;
    a measure the table lacks is left out."""
    peers = [m for m in cell if not m.startswith("vaekit")]
    out: dict = {}
    for row in (m for m in cell if m.startswith("vaekit")):
        for key, better in (("rmse", min), ("acc", max)):
            ours = np.asarray(cell[row][key], dtype=float)
            if np.isnan(ours).all():
                continue
            best = better(peers, key=lambda m, key=key: float(np.mean(cell[m][key])))
            out.setdefault(row, {})[key] = {
                "mean/mode": mean_and_stderr(list(ours - np.asarray(cell["mean/mode"][key]))),
                "best peer": best,
                "best": mean_and_stderr(list(ours - np.asarray(cell[best][key]))),
            }
    return out


def markdown(results: dict, seeds: int, steps: int, methods=METHODS) -> list[str]:
    lines = [
        f"Imputation error over the hidden cells, mean ± standard error over {seeds} seeds "
        f"(vaekit: {steps} training steps). rmse: numeric cells, in standard deviations of "
        "the complete column (lower is better); acc: category cells, share right (higher "
        "is better); '-': the table has no such column; n/a: the method does not apply (the "
        "self-masking model needs a real or positive column).",
        "",
        "| table | cells hidden | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for table, by_pattern in results.items():
        for pattern in PATTERNS:
            if pattern not in by_pattern:
                continue
            r = by_pattern[pattern]
            cells = []
            for m in methods:
                if m not in r:
                    cells.append("n/a")
                    continue
                parts = []
                for key in ("rmse", "acc"):
                    mean, se = r[m][key]
                    if not np.isnan(mean):
                        parts.append(f"{key} {mean:.3f} ± {se:.3f}")
                cells.append("<br>".join(parts) or "-")
            share = f"{pattern} ({r['hidden_share']:.0%})"
            lines.append(
                f"| {table} ({by_pattern['rows']} rows) | {share} | " + " | ".join(cells) + " |"
            )
    return [*lines, "", *paired_markdown(results, seeds)]


def paired_markdown(results: dict, seeds: int) -> list[str]:
    """The second table: each vaekit row minus mean/mode and minus the best peer, paired."""
    lines = [
        f"vaekit minus a peer on the same hidden cells, mean ± standard error of the {seeds} "
        "per-seed differences (paired): rmse below 0 and acc above 0 are vaekit ahead; "
        "the best peer is the one with the best mean on that measure (named).",
        "",
        "| table | cells hidden | row | rmse - mean/mode | rmse - best peer "
        "| acc - mean/mode | acc - best peer |",
        "|---|---|---|---|---|---|---|",
    ]
    for table, by_pattern in results.items():
        for pattern in PATTERNS:
            for row, by_key in by_pattern.get(pattern, {}).get("paired", {}).items():
                cells = []
                for key in ("rmse", "acc"):
                    if key not in by_key:
                        cells += ["-", "-"]
                        continue
                    d = by_key[key]
                    cells.append("{:+.3f} ± {:.3f}".format(*d["mean/mode"]))
                    cells.append("{:+.3f} ± {:.3f} ({})".format(*d["best"], d["best peer"]))
                lines.append(f"| {table} | {pattern} | {row} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    parser.add_argument("--patterns", nargs="+", default=list(PATTERNS), choices=PATTERNS)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per table and pattern")
    parser.add_argument("--steps", type=int, default=1500, help="vaekit's training steps")
    parser.add_argument("--max-rows", type=int, default=None, help="rows per table at most")
    parser.add_argument("--quick", action="store_true", help="a check that it runs: tiny")
    parser.add_argument(
        "--missing",
        choices=("at-random", "self-masking"),
        default="at-random",
        help="self-masking: also vaekit with --missing self-masking, as its own row (for "
        "cells more likely missing when their own value is high or low, as in mnar)",
    )
    args = parser.parse_args()
    if args.quick:
        args.tables, args.patterns = ["wine", "anes96"], ["mcar20", "mnar"]
        args.seeds, args.steps, args.max_rows = 2, 30, 150
    methods = METHODS + ((SELF_MASKING,) if args.missing == "self-masking" else ())
    results = run(args.tables, args.patterns, args.seeds, args.steps, args.max_rows, methods)
    stem = "tables_impute"
    payload = {
        "command": " ".join(["python", "benchmarks/bench_tables_impute.py", *sys.argv[1:]]),
        "seeds": args.seeds,
        "vaekit_steps": args.steps,
        "missing": args.missing,
        "units": {
            "rmse": "root mean square error over hidden numeric cells, in sds of the column",
            "acc": "share of hidden category cells imputed right",
            "seconds": "wall-clock seconds of one imputation (fit included)",
        },
        "results": results,
    }
    for path in write_results(
        stem, payload, markdown(results, args.seeds, args.steps, methods), args.quick
    ):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
