"""The deep hierarchical VAE against the best one-layer model at the same wall-clock budget,
paired on the same test images and draws.

The best one-layer model at 15 minutes is the VampPrior VAE (configs/mnist-vamp.toml: 85.43
nats in benchmarks/notes/every-model-15-minutes.md; the conditional VAE's lower number is
-log p(x|y), not comparable). Both are trained on dynamically binarised MNIST with the same
seed and data, each for ``--minutes`` of wall clock:

1. a pilot of ``--pilot-steps`` steps measures each preset's warm step rate (as in
   bench_models.py), and the run gets ``train.max_steps`` = rate x budget x ``--fill`` so its
   cosine schedule ends with the budget; ``train.max_minutes`` = the budget stops it there on
   a slower machine;
2. ``vaekit compare ONE_LAYER DEEP [VARIANTS ...] --num-samples K`` evaluates every run on the
   same test images with the same draws and gives each run's nll and its paired difference
   against the one-layer run (one evaluation per run: ``compare`` does the importance
   sampling itself, so a separate ``vaekit evaluate`` would only repeat it).

The result (commands, steps, wall times, the comparison) goes to ``--results`` as JSON and
the markdown table is printed. ``--variants`` adds ablations of the deep preset at the same
budget (``VARIANTS``: depth, width, gated or residual cells, VampPrior or N(0, I) on top,
warm-up length, free bits, the IWAE bound, EMA); each is one more run in the same comparison.
(Bottom-up inference is not a variant: deep-hvae is top-down only; the two-layer ``hvae``'s
two directions are compared in benchmarks/notes/every-model-15-minutes.md.)

Run it alone on the machine (the budget and the throughput assume the cores are its own):

    .venv/bin/python benchmarks/bench_deep.py                       # the paired 15-minute pair
    .venv/bin/python benchmarks/bench_deep.py --variants residual normal-top warmup-0 depth-2
    .venv/bin/python benchmarks/bench_deep.py --minutes 0.2 --images 100 --num-samples 10 \\
        --pilot-steps 20 --runs /tmp/deep-check                     # a check that it works

Time, on 2 CPU cores (an estimate; nothing here has run at full size): each run is a pilot
(about a minute) and the budget (15 minutes); the comparison at K = 5000 on all 10,000 test
images took 12 minutes for the one-layer VampPrior (every-model-15-minutes.md) and should take
40 to 50 minutes for the deep preset (its decoder is the whole top-down path, 1.86 M
multiply-adds per draw against 0.54 M), so the pair takes about 1 hour 45 minutes and each
variant adds about an hour. ``--num-samples 1000`` cuts the comparison five-fold (the
ablation notes' setting).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_models import steady_rate, training_rate, vaekit_cli  # noqa: E402

BASELINE = "one-layer"
DEEP = "deep"
# name -> (preset, overrides, what the row is)
ROWS = {
    BASELINE: ("mnist-vamp.toml", [], "one layer, VampPrior (500), m = 40, IWAE K = 5"),
    DEEP: ("mnist-deep.toml", [], "deep-hvae: 4 groups (32, 32, 32, 40), gated, width 256"),
}
# Ablations of the deep preset, one change each (``--set`` values, TOML).
VARIANTS = {
    "depth-2": (["model.latent_dims=[32, 40]"], "2 groups (32, 40)"),
    "depth-8": (["model.latent_dims=[16, 16, 16, 16, 16, 16, 16, 40]"], "8 groups (7 x 16, 40)"),
    "width-128": (["model.width=128"], "width 128"),
    "width-512": (["model.width=512"], "width 512"),
    "residual": (['model.cell="residual"'], "residual cells, not gated"),
    "normal-top": (['model.prior="standard-normal"'], "N(0, I) on the top group"),
    "warmup-0": (["objective.kl_warmup_steps=0"], "no KL warm-up"),
    "warmup-20000": (["objective.kl_warmup_steps=20000"], "KL warm-up over 20,000 steps"),
    "free-bits-0": (["objective.free_bits=0.0"], "no free bits"),
    "iwae-5": (
        [
            'objective.name="iwae"',
            "objective.num_importance_samples=5",
            "objective.kl_warmup_steps=0",
            "objective.free_bits=0.0",
        ],
        "IWAE K = 5 (no warm-up, no free bits)",
    ),
    "ema": (["optim.ema_decay=0.999"], "Polyak averaging (EMA 0.999)"),
}


def row_spec(name: str) -> tuple[str, list[str], str]:
    """(preset, overrides, what) of a row: the pair's own, or the deep preset changed."""
    if name in ROWS:
        return ROWS[name]
    overrides, what = VARIANTS[name]
    return ROWS[DEEP][0], overrides, f"deep-hvae, {what}"


def check_rows(names: list[str]) -> None:
    """Every row's preset with its overrides must be a valid config: a typo stops the
    benchmark in its first second, not after an hour of training."""
    from vaekit.config import ConfigError, apply_overrides, load_config

    for name in names:
        preset, overrides, _ = row_spec(name)
        try:
            apply_overrides(load_config(ROOT / "configs" / preset), overrides)
        except ConfigError as exc:
            raise SystemExit(f"bench_deep.py: row {name}: {exc}") from None


def train_args(name: str, out: Path, steps: int, args: argparse.Namespace) -> list[str]:
    preset, overrides, _ = row_spec(name)
    cmd = ["train", "--config", str(ROOT / "configs" / preset)]
    cmd += ["--data-dir", str(args.shared / "mnist"), "--out", str(out), "--overwrite"]
    cmd += ["--progress", "plain"]
    sets = [f"train.max_steps={steps}", f"train.max_minutes={args.minutes}"]
    sets += [f"train.seed={args.seed}", "train.report=false", "train.tensorboard=false"]
    for item in sets + overrides:
        cmd += ["--set", item]
    return cmd


def train_row(name: str, args: argparse.Namespace) -> dict:
    """Pilot, then the budgeted run; what the results file keeps of it."""
    pilot, run = args.runs / f"{name}-pilot", args.runs / name
    record = run / "bench-train.json"
    if args.reuse and record.exists():
        return json.loads(record.read_text())
    pilot_args = train_args(name, pilot, args.pilot_steps, args)
    vaekit_cli(*pilot_args, "--set", "train.log_every=10", threads=args.threads)
    rate = steady_rate(pilot)
    batch = json.loads((pilot / "config.json").read_text())["config"]["train"]["batch_size"]
    steps = max(1, int(rate * args.minutes * 60 * args.fill / batch))
    print(f"{name}: pilot {rate:.0f} examples/s -> {steps} steps", file=sys.stderr)
    start = time.perf_counter()
    command = train_args(name, run, steps, args)
    vaekit_cli(*command, threads=args.threads)
    wall = time.perf_counter() - start
    examples_per_s, _ = training_rate(run)
    summary = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    result = {
        "row": name,
        "what": row_spec(name)[2],
        "command": " ".join(["vaekit", *command]).replace(str(ROOT) + "/", ""),
        "planned_steps": steps,
        "steps": summary.get("step", steps),
        "train_wall_minutes": wall / 60,
        "examples_per_s": examples_per_s,
        "skipped_steps": summary.get("skipped_steps"),
    }
    record.write_text(json.dumps(result) + "\n")
    return result


def compare(names: list[str], args: argparse.Namespace) -> dict:
    """``vaekit compare`` over the runs, the one-layer run first: its JSON."""
    cmd = ["compare", *(str(args.runs / n) for n in names), "--num-samples", str(args.num_samples)]
    cmd += ["--seed", str(args.seed), "--out", str(args.runs / "compare"), "--overwrite", "--json"]
    if args.images is not None:
        cmd += ["--max-examples", str(args.images)]
    proc = vaekit_cli(*cmd, threads=args.threads)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(trained: dict[str, dict], comparison: dict) -> str:
    """The markdown table: each run's budget, throughput, nll and paired difference."""
    nll = {r["name"]: (r["values"]["nll"], r["stderrs"]["nll"]) for r in comparison["runs"]}
    paired = {d["b"]: d for d in comparison["differences"] if d["metric"] == "nll"}
    lines = [
        f"{comparison['num_examples']:,} test images x K = {comparison['num_samples']}, "
        f"seed {comparison['seed']}; differences are B - {BASELINE}, paired, in nats per example",
        "",
        "| run | what | steps | training min (wall) | examples/s | test nll (nats) "
        f"| against {BASELINE} (paired) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in trained.items():
        value, stderr = nll[name]
        d = paired.get(name)
        against = f"{d['difference']:+.2f} ± {d['stderr']:.2f}" if d else ""
        lines.append(
            f"| {name} | {row['what']} | {row['steps']:,} | {row['train_wall_minutes']:.1f} | "
            f"{row['examples_per_s']:,.0f} | {value:.2f} ± {stderr:.2f} | {against} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget per run")
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=[])
    parser.add_argument("--seed", type=int, default=0, help="training and evaluation seed")
    parser.add_argument("--num-samples", type=int, default=5000, help="K per test image")
    parser.add_argument("--images", type=int, help="only the first N test images (default all)")
    parser.add_argument("--fill", type=float, default=0.92, help="share of the budget in steps")
    parser.add_argument("--pilot-steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "deep")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "deep.json")
    parser.add_argument(
        "--reuse", action="store_true", help="a run trained before is compared, not retrained"
    )
    args = parser.parse_args()
    if args.minutes <= 0 or args.num_samples < 1 or (args.images is not None and args.images < 1):
        parser.error("--minutes, --num-samples and --images must be positive")
    names = [BASELINE, DEEP, *args.variants]
    check_rows(names)
    trained = {name: train_row(name, args) for name in names}
    comparison = compare(names, args)
    result = {
        "minutes": args.minutes,
        "seed": args.seed,
        "runs": trained,
        "compare": comparison,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=1) + "\n")
    print(table(trained, comparison))


if __name__ == "__main__":
    main()
