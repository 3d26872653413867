"""The tables the bench_tables_*.py scripts share, their schema, and the shared settings.

Five tables, each complete (no cell of them is missing as shipped):

* ``breast_cancer``, ``wine``, ``diabetes``: scikit-learn's own (features only; diabetes
  unscaled, its ``sex`` column a binary 1/2);
* ``fair``: statsmodels' extramarital-affairs survey (Fair 1978), 1,000 of its 6,366 rows
  drawn once (seed 0) to bound the time; coded answers (marriage rating, religiosity,
  education, occupations, and the bracketed age, years married and children: at most 7
  values each) are categorical, the affairs measure zero-inflated (70 % of the 1,000 rows
  exactly 0, a log-normal above);
* ``anes96``: statsmodels' 1996 American National Election Study, 944 rows; 7-point scales
  categorical, population and income counts, age real (integers far from zero), the vote
  binary (``logpopul`` left out: it is a function of ``popul``).

Each table's schema is the one ``vaekit train`` infers for it (``infer_schema`` of the
complete table); the benchmarks hand it to ``VAEEstimator(column_types=...)`` so that
removing cells cannot change a column's type. statsmodels ships with the ``bench`` extra
(``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vaekit.data.frames import frame_table
from vaekit.data.table_schema import infer_schema

TABLES = ("breast_cancer", "wine", "diabetes", "fair", "anes96")
NUMERIC = ("real", "positive", "zero-inflated", "count", "poisson")
RESULTS = Path(__file__).resolve().parent / "results"


def load_table(name: str, max_rows: int | None = None) -> pd.DataFrame:
    """One complete table (the module doc) as a DataFrame, at most ``max_rows`` rows (a
    fixed draw, seed 0)."""
    from sklearn import datasets

    if name == "breast_cancer":
        df = datasets.load_breast_cancer(as_frame=True).data
    elif name == "wine":
        df = datasets.load_wine(as_frame=True).data
    elif name == "diabetes":
        df = datasets.load_diabetes(as_frame=True, scaled=False).data
    elif name in ("fair", "anes96"):
        import statsmodels.api as sm

        df = getattr(sm.datasets, name).load_pandas().data
        if name == "anes96":
            df = df.drop(columns=["logpopul"])
        if name == "fair":
            max_rows = min(max_rows or 1000, 1000)
    else:
        raise ValueError(f"unknown table {name!r}; choose from {', '.join(TABLES)}")
    df = df.reset_index(drop=True)
    if max_rows is not None and len(df) > max_rows:
        rows = np.random.default_rng(0).choice(len(df), max_rows, replace=False)
        df = df.iloc[np.sort(rows)].reset_index(drop=True)
    return df


def schema_of(df: pd.DataFrame) -> dict[str, str]:
    """Column name -> the type ``vaekit train`` infers for the complete table."""
    return {c.name: c.kind for c in infer_schema(frame_table(df))}


def mean_and_stderr(values: list[float]) -> tuple[float, float]:
    """The mean and its standard error over seeds (sample sd / sqrt(n); 0 for one seed)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or np.isnan(v).all():
        return float("nan"), float("nan")
    v = v[~np.isnan(v)]
    se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
    return float(v.mean()), se


def write_results(
    stem: str, payload: dict[str, Any], markdown: list[str], quick: bool = False
) -> list[Path]:
    """``results/STEM.json`` and ``results/STEM.md`` (a ``--quick`` check's under the
    temporary folder, never among the results); returns their paths."""
    folder = Path(tempfile.gettempdir()) / "vaekit-bench-quick" if quick else RESULTS
    folder.mkdir(exist_ok=True)
    payload = {"written": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), **payload}
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text("\n".join(markdown) + "\n")
    return [json_path, md_path]


def vae_settings(num_columns: int, steps: int) -> dict[str, Any]:
    """The VAEEstimator settings every table benchmark uses (one setting for all tables,
    chosen before any result was seen): a code of half the columns, two hidden layers of
    128, ``steps`` Adam steps of 64 rows. The objective, weight decay and rank are the
    estimator's defaults for a table (the IWAE bound with K = 10, decay 1e-4, a rank min(16, G - 1)
    joint Gaussian over the real and positive columns)."""
    return dict(
        latent_dim=max(2, num_columns // 2),
        hidden_dims=(128, 128),
        max_steps=steps,
        batch_size=64,
        lr=1e-3,
        num_samples=100,
    )
