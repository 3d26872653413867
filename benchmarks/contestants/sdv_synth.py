"""SDV's TVAE and CTGAN on one training table, and SDMetrics' quality scores of every
synthetic table in the folder (runs in the SDV venv; see bench_tables_synth.py).

    cd benchmarks && ../.venv-sdv/bin/python contestants/sdv_synth.py --folder DIR --seed 0

``DIR`` holds ``train.csv`` (the real training rows), ``types.json`` (column name -> vaekit
type) and any synthetic tables already made (``vaekit.csv``). For each of ``--fit`` (TVAE,
CTGAN by default) this fits SDV's synthesizer on the training rows (2 threads, on the CPU,
``--epochs`` or SDV's default of 300), draws as many rows as it was given into
``DIR/<name>.csv``, then scores every synthetic table in ``DIR`` against ``train.csv`` with
SDMetrics' QualityReport: Column Shapes, and Column Pair Trends both over the pairs SDMetrics
counts by default (a real correlation above 0.5 or association above 0.3) and over every
pair. It prints one JSON line: fit seconds and epochs per fitted method, scores per table.

Pure pandas helpers (:func:`as_categories`) are shared with the driver, which imports this
file without SDV installed: SDV and SDMetrics are imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

CATEGORY_KINDS = ("binary", "categorical")
METHODS = ("tvae", "ctgan")
TABLE = "table"


def as_categories(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """``frame`` with its binary and categorical columns as text, a number written the same
    way whatever its dtype (3, 3.0 and "3" are all "3"), so that real and synthetic tables
    read back from CSV files name each category alike. Other columns as float."""
    out = {}
    for name, kind in kinds.items():
        column = frame[name]
        if kind not in CATEGORY_KINDS:
            out[name] = column.astype(np.float64)
        elif pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            out[name] = column.map(lambda v: None if pd.isna(v) else f"{float(v):g}")
        else:
            out[name] = column.map(lambda v: None if pd.isna(v) else str(v))
    return pd.DataFrame(out, index=frame.index)


def metadata(kinds: dict[str, str]) -> dict:
    """SDV's and SDMetrics' metadata of one table: categorical or numerical columns."""
    sdtype = {k: "categorical" if k in CATEGORY_KINDS else "numerical" for k in set(kinds.values())}
    columns = {name: {"sdtype": sdtype[kind]} for name, kind in kinds.items()}
    return {"tables": {TABLE: {"columns": columns}}, "METADATA_SPEC_VERSION": "V1"}


def fit_and_sample(method: str, train: pd.DataFrame, kinds: dict, seed: int, epochs: int | None):
    """One SDV synthesizer fitted on ``train``, ``len(train)`` rows drawn; returns the rows,
    the fit's seconds and its epochs."""
    import torch
    from sdv.metadata import Metadata
    from sdv.single_table import CTGANSynthesizer, TVAESynthesizer

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    synthesizer_class = {"tvae": TVAESynthesizer, "ctgan": CTGANSynthesizer}[method]
    options = {"enable_gpu": False}
    if epochs is not None:
        options["epochs"] = epochs
    synthesizer = synthesizer_class(Metadata.load_from_dict(metadata(kinds)), **options)
    start = time.perf_counter()
    synthesizer.fit({TABLE: train})
    seconds = time.perf_counter() - start
    rows = synthesizer.sample(len(train))
    rows = rows[TABLE] if isinstance(rows, dict) else rows
    return rows, seconds, synthesizer.epochs


def quality(real: pd.DataFrame, synthetic: pd.DataFrame, kinds: dict) -> dict[str, float]:
    """SDMetrics' Column Shapes and Column Pair Trends (its default pairs, and every pair),
    each between 0 and 1 (1: the same as the real rows)."""
    from sdmetrics.reports import QualityReport

    scores = {}
    for label, every_pair in (("default", False), ("every_pair", True)):
        report = QualityReport()
        if every_pair:
            report.real_correlation_threshold = 0
            report.real_association_threshold = 0
        report.generate({TABLE: real}, {TABLE: synthetic}, metadata(kinds), verbose=False)
        table = report.get_properties().set_index("Property")["Score"]
        if label == "default":
            scores["column_shapes"] = float(table["Column Shapes"])
            scores["column_pair_trends"] = float(table["Column Pair Trends"])
        else:
            scores["column_pair_trends_every_pair"] = float(table["Column Pair Trends"])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="default: SDV's own (300)")
    parser.add_argument("--fit", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # SDV's and SDMetrics' notices would bury the JSON line
    kinds = json.loads((args.folder / "types.json").read_text())
    train = as_categories(pd.read_csv(args.folder / "train.csv"), kinds)
    result: dict = {"fit_seconds": {}, "epochs": {}, "quality": {}}
    for method in args.fit:
        rows, seconds, epochs = fit_and_sample(method, train, kinds, args.seed, args.epochs)
        rows.to_csv(args.folder / f"{method}.csv", index=False)
        result["fit_seconds"][method], result["epochs"][method] = seconds, epochs
    for path in sorted(args.folder.glob("*.csv")):
        if path.stem != "train":
            synthetic = as_categories(pd.read_csv(path), kinds)
            result["quality"][path.stem] = quality(train, synthetic, kinds)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
