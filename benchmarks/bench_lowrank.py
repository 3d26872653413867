"""What the low-rank Gaussian decoder buys in held-out nll: diagonal against rank 1, 4, 8.

Each dataset is trained once per decoder with the same VAE (MLP bodies, the same latent
dimension, seed, step budget and time cap) and scored on its held-out test rows with the
importance-sampled nll (K = --num-samples), in nats per example of the data as given (the
standardisation's or dequantisation's change of variables included), with its standard
error over test examples. The decoders:

* diagonal (learned): ``gaussian-learned``, one sigma per dimension;
* diagonal (decoded): ``gaussian-heteroscedastic``, a sigma per dimension and example, the
  rank-0 limit of the low-rank decoder (the same decoded diagonal, no factor);
* rank R: ``gaussian-lowrank --rank R``.

Datasets (all on this machine, nothing downloaded):

* ``breast-cancer`` (scikit-learn, 569 rows x 30 real columns) and ``diabetes`` (442 x 10),
  standardised with the training rows' statistics; 20 % of the rows held out as the test
  split (fixed seed), 10 % of the rest for validation;
* ``digits`` (vaekit's built-in 8x8 digits, 1797 images, dequantised to [0, 1]: MNIST-style
  continuous data small enough for CPU); its own test split.

The whole run keeps to ``--minutes`` (default 8): every training run gets an equal share as
its ``train.max_minutes`` cap and otherwise stops at ``--steps``; each line says how many
steps it made. Run it alone on an otherwise idle machine (CPU):

    OMP_NUM_THREADS=4 PYTHONPATH=src python benchmarks/bench_lowrank.py --minutes 8

A quick check that it works: ``--minutes 0.5 --steps 30 --datasets diabetes --ranks 1``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from vaekit.config import Config, apply_overrides
from vaekit.data import Dataset, Split, load_dataset
from vaekit.data.stored import describe_values
from vaekit.evaluate import evaluate
from vaekit.training.api import train

DATASETS = ("breast-cancer", "diabetes", "digits")
# (dataset) -> (latent dimension, hidden widths): small models for small data.
SIZES = {"breast-cancer": (4, [64]), "diabetes": (2, [32]), "digits": (8, [128])}


def table_dataset(name: str, seed: int = 0) -> Dataset:
    """A scikit-learn table as vaekit's training sees a user's array: standardised per column
    with the training rows' statistics; test 20 %, validation 10 % of the rest."""
    from sklearn import datasets

    loader = {"breast-cancer": datasets.load_breast_cancer, "diabetes": datasets.load_diabetes}
    x = np.asarray(loader[name]().data, dtype=np.float64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = len(x) // 5
    n_val = (len(x) - n_test) // 10
    test, val, train_rows = np.split(order, [n_test, n_test + n_val])
    transform, support, likelihood, levels = describe_values(x, train_rows, x.shape[1:])
    data = torch.from_numpy(x)
    return Dataset(
        name=name,
        shape=tuple(x.shape[1:]),
        train=Split(data[train_rows]),
        val=Split(data[val]),
        test=Split(data[test]),
        transform=transform,
        support=support,
        default_likelihood=likelihood,
        num_levels=levels,
        description=f"scikit-learn's {name}, {x.shape[0]} rows x {x.shape[1]} columns",
    )


def decoders(ranks: list[int]) -> list[tuple[str, int, list[str]]]:
    """(label, rank, config settings) of every decoder compared (rank 0: diagonal)."""
    cases = [
        ("diagonal (learned)", 0, ['model.likelihood="gaussian-learned"']),
        ("diagonal (decoded)", 0, ['model.likelihood="gaussian-heteroscedastic"']),
    ]
    for rank in ranks:
        settings = ['model.likelihood="gaussian-lowrank"', f"model.rank={rank}"]
        cases.append((f"rank {rank}", rank, settings))
    return cases


def run_one(dataset: Dataset, settings: list[str], args, minutes: float) -> dict:
    """Train one model and score its test split; the numbers of one result line."""
    latent, hidden = SIZES[dataset.name]
    base = [
        f"model.latent_dim={latent}",
        f"model.hidden_dims={hidden}",
        'model.network="mlp"',
        f"train.max_steps={args.steps}",
        "train.epochs=1000000",
        f"train.max_minutes={minutes}",
        f"train.batch_size={args.batch_size}",
        f"train.seed={args.seed}",
        'train.device="cpu"',
        "train.tensorboard=false",
        'train.progress="plain"',
    ]
    config = apply_overrides(Config(), [*base, *settings])
    start = time.perf_counter()
    result = train(config, dataset=dataset, log=lambda *_: None)
    seconds = time.perf_counter() - start
    torch.manual_seed(args.seed)
    scores = evaluate(
        result.model, dataset, "test", num_samples=args.num_samples, fcd=False, progress="plain"
    )
    steps = result.history[-1].get("step") if result.history else None
    return {
        "nll": scores["nll"],
        "nll_stderr": scores["nll_stderr"],
        "space": scores.get("space"),
        "steps": steps,
        "train_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="time budget of all runs")
    parser.add_argument("--steps", type=int, default=4000, help="step budget of each run")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-samples", type=int, default=500, help="K for the test nll")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    if args.minutes <= 0 or args.steps < 1 or args.num_samples < 1:
        parser.error("--minutes must be > 0, --steps and --num-samples >= 1")
    if any(r < 1 for r in args.ranks):
        parser.error("--ranks must be >= 1")
    cases = decoders(args.ranks)
    runs = len(args.datasets) * len(cases)
    # Leave a tenth of the budget for loading and evaluation.
    per_run = 0.9 * args.minutes / runs
    print(f"{runs} runs, each capped at {per_run * 60:.0f} s or {args.steps} steps")
    results = []
    # One short untimed run first: the first training in a process pays for imports and
    # first calls, which would eat the first decoder's time cap.
    warm = argparse.Namespace(**{**vars(args), "steps": 2, "num_samples": 1})
    run_one(table_dataset("diabetes"), cases[0][2], warm, per_run)
    for name in args.datasets:
        dataset = load_dataset("digits") if name == "digits" else table_dataset(name)
        dims = math.prod(dataset.shape)
        print(f"\n{name} ({dims} dimensions): held-out nll, nats per example of the data as given")
        for label, rank, settings in cases:
            if rank >= dims:
                print(f"  {label:<20} skipped: the rank must be below D = {dims}")
                continue
            row = run_one(dataset, settings, args, per_run)
            row.update(dataset=name, decoder=label, rank=rank)
            results.append(row)
            print(
                f"  {label:<20} nll {row['nll']:9.3f} +- {row['nll_stderr']:.3f} nats/example"
                f"  ({row['steps']} steps, {row['train_seconds']:.0f} s training)"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
