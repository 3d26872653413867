"""The picture of the imputation benchmark: docs/tables-impute.png from
benchmarks/results/tables_impute.json (written by bench_tables_impute.py).

Top: RMSE over the hidden numeric cells, in standard deviations of the complete column (lower
is better); bottom: the share of hidden category cells imputed right (higher is better). One
group of bars per table and pattern of hidden cells, one bar per method, with the standard
error over seeds as a whisker. Where the results hold vaekit with ``--missing self-masking``
too (a model of why cells are missing), a black diamond on vaekit's bar marks it.

    .venv/bin/python benchmarks/plot_tables.py
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LABELS = {
    "vaekit": "vaekit (MIWAE)",
    "mean/mode": "mean / mode",
    "knn": "KNNImputer",
    "iterative-bayesridge": "IterativeImputer (BayesianRidge)",
    "iterative-extratrees": "IterativeImputer (ExtraTrees)",
}
SELF_MASKING = "vaekit (self-masking)"  # drawn as a marker on vaekit's bar, where it ran


def main() -> None:
    source = HERE / "results" / "tables_impute.json"
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "tables-impute.png"
    results = json.loads(source.read_text())["results"]
    from vaekit.report.plots import pyplot, save_figure

    plt = pyplot()
    methods = list(LABELS)
    fig, axes = plt.subplots(2, 1, figsize=(12, 7.5), constrained_layout=True)
    for ax, key, title in (
        (axes[0], "rmse", "RMSE over hidden numeric cells (column sds, lower is better)"),
        (axes[1], "acc", "accuracy over hidden category cells (higher is better)"),
    ):
        groups = [
            (f"{table.replace('_', chr(10))}\n{pattern}", cell)
            for table, by_pattern in results.items()
            for pattern, cell in by_pattern.items()
            if isinstance(cell, dict)
            and "hidden_share" in cell
            and not math.isnan(cell["vaekit"][key][0])
        ]
        width = 0.8 / len(methods)
        for j, method in enumerate(methods):
            xs = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(groups))]
            means = [cell[method][key][0] for _, cell in groups]
            errors = [cell[method][key][1] for _, cell in groups]
            ax.bar(xs, means, width, yerr=errors, capsize=2, label=LABELS[method])
            if method == "vaekit":
                _self_masking(ax, [(x, cell) for x, (_, cell) in zip(xs, groups, strict=True)], key)
        ax.set_xticks(range(len(groups)), [name for name, _ in groups], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=9)
    save_figure(fig, target)
    print(f"wrote {target}")


def _self_masking(ax, places: list[tuple[float, dict]], key: str) -> None:
    """The self-masking model's mean and standard error at the x of vaekit's bar, for the
    groups that ran it (not every table does)."""
    points = [
        (x, *cell[SELF_MASKING][key])
        for x, cell in places
        if SELF_MASKING in cell and not math.isnan(cell[SELF_MASKING][key][0])
    ]
    if points:
        xs, means, errors = zip(*points, strict=True)
        ax.errorbar(
            xs, means, yerr=errors, fmt="D", color="black", markersize=5, capsize=2,
            label="vaekit (MIWAE, --missing self-masking)", zorder=3,
        )  # fmt: skip


if __name__ == "__main__":
    main()
