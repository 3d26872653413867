"""The per-model table: every model trained for the same wall-clock budget on this machine,
then evaluated on the whole test set.

For each row (``ROWS``: a preset in configs/ and the dataset it reads):

1. a pilot run of ``--pilot-steps`` steps measures the training step rate once warm (the
   median examples/s of its step records after the first, one every 100 steps);
2. the run: the preset with ``train.max_steps`` = the rate x the budget x ``--fill`` (the
   presets' cosine schedules then end with the budget; the rest of the budget is validation
   and start-up), the run's wall time measured around ``vaekit train``;
3. ``vaekit evaluate RUN --num-samples K --no-fcd --json`` on all test images;
4. the model's own GEMM roofline, measured in this process: forward hooks on every
   ``nn.Linear`` record the (rows, inputs, outputs) of one training step of the trained
   model's objective; those GEMMs (forward, grad-input, grad-weight) are timed back to back,
   best of 5 blocks, and the roofline in examples/s is the batch size / that time. The
   throughput share is the run's own training examples/s / the roofline.

Each finished row is written to ``--results`` (JSON, one object per row, rows already there
are kept), so an interrupted table resumes where it stopped; the markdown table is printed
from that file. Run it on an otherwise idle machine: the budget and the throughput both
assume the cores are the run's.

    .venv/bin/python benchmarks/bench_models.py --budget-minutes 15 --only vae hvae
    .venv/bin/python benchmarks/bench_models.py --only deep   # one row, added to the file
    .venv/bin/python benchmarks/bench_models.py --table   # print the table of finished rows
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# `vaekit evaluate`'s default is a quick check on at most 1000 examples; a table's number is
# on every test example, so every call names a limit above any test split.
ALL_EXAMPLES = 10**9
sys.path.insert(0, str(HERE))

from timing import best_seconds_per_call  # noqa: E402

# name -> (preset, dataset folder under --shared, extra --set overrides, what the row is)
ROWS = {
    "vae": ("mnist-nll.toml", "mnist", [], "VAE, one stochastic layer (32), MLP 512-256"),
    "hvae": ("mnist-hvae.toml", "mnist", [], "hierarchical VAE, 2 layers (100, 50), tanh"),
    "vamp": ("mnist-vamp.toml", "mnist", [], "VAE + VampPrior (500 pseudo-inputs), m = 40"),
    "iaf": ("mnist-iaf.toml", "mnist", [], "VAE + IAF posterior (4 steps), m = 32"),
    "cvae": ("mnist-cvae.toml", "mnist", [], "conditional VAE, class prior, m = 16"),
    "vqvae": ("mnist-vqvae.toml", "mnist", [], "VQ-VAE, 16 codes of 256, EMA codebook"),
    "ae": (
        "mnist-nll.toml",
        "mnist",
        ['model.kind="ae"', 'objective.name="reconstruction"'],
        "autoencoder, the VAE's MLP 512-256 and m = 32, no noise or KL",
    ),
    "deep": (
        "mnist-deep.toml",
        "mnist",
        [],
        "deep hierarchical VAE, 4 groups (32, 32, 32, 40), gated dense cells, width 256",
    ),
    "dlogistic": (
        "fashion-dlogistic.toml",
        "fashion-mnist",
        ['model.likelihood="discretized-logistic"'],
        "VAE, discretised logistic, 8-bit Fashion-MNIST",
    ),
}


def vaekit_cli(*args: str, threads: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "vaekit", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return proc


def train_args(row: str, out: Path, steps: int, shared: Path) -> list[str]:
    preset, data, overrides, _ = ROWS[row]
    args = ["train", "--config", str(ROOT / "configs" / preset), "--data-dir", str(shared / data)]
    args += ["--out", str(out), "--overwrite", "--progress", "plain"]
    sets = [f"train.max_steps={steps}", "train.report=false", "train.tensorboard=false"]
    for item in sets + overrides:
        args += ["--set", item]
    return args


def epoch_records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == "epoch"]


def training_rate(run: Path) -> tuple[float, float]:
    """(training examples/s over the whole run, training seconds) from the epoch records."""
    records = epoch_records(run)
    examples = sum(r["examples"] for r in records)
    seconds = sum(r["examples"] / r["examples_per_s"] for r in records)
    return examples / seconds, seconds


def steady_rate(run: Path) -> float:
    """Training examples/s of a pilot run once warm: the median of its step records after
    the first (the first holds the allocations and caches of a fresh process)."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    rates = [r["examples_per_s"] for r in map(json.loads, lines) if r.get("kind") == "step"]
    return statistics.median(rates[1:]) if len(rates) > 1 else training_rate(run)[0]


def linear_shapes(run: Path) -> tuple[list[tuple[int, int, int]], int, int]:
    """The (rows, inputs, outputs) of every Linear call in one training step of the run's
    model on its objective, the batch size and the model's parameter count."""
    import vaekit

    config = vaekit.Config.from_dict(json.loads((run / "config.json").read_text())["config"])
    model = vaekit.load(run)
    batch = config.train.batch_size
    shapes = step_linear_shapes(model, config.objective, batch)
    return shapes, batch, sum(p.numel() for p in model.parameters())


def step_linear_shapes(
    model: nn.Module, objective_config, batch: int
) -> list[tuple[int, int, int]]:
    """The (rows, inputs, outputs) of every ``nn.Linear`` call in one training step of
    ``model`` on ``objective_config`` with ``batch`` random examples, in call order: the
    importance draws and the pseudo-inputs are in the rows where the step runs them."""
    from vaekit.objectives import build_objective

    model.train()
    objective = build_objective(objective_config, model)
    shapes: list[tuple[int, int, int]] = []

    def record(module: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        shapes.append((inputs[0].numel() // module.in_features, *module.weight.shape[::-1]))

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.Linear)]
    x = (torch.rand(batch, *model.data_shape) < 0.5).float()
    if model.config.likelihood.startswith("discretized-logistic"):
        x = torch.randint(0, 256, (batch, *model.data_shape)).float() / 255.0
    y = torch.randint(0, 10, (batch,)) if model.takes_labels else None
    loss, _ = objective(model, x, y)
    for hook in hooks:
        hook.remove()
    loss.backward()
    return shapes


def gemm_flops(shapes: list[tuple[int, int, int]]) -> int:
    """Floating-point operations of a training step's GEMMs: each Linear call of ``rows x
    inputs -> outputs`` is three products of 2 * rows * inputs * outputs FLOPs (forward,
    gradient of the input, gradient of the weight)."""
    return 6 * sum(r * i * o for r, i, o in shapes)


def roofline(shapes: list[tuple[int, int, int]], batch: int, threads: int) -> tuple[float, float]:
    """(examples/s, GFLOP/s) of the step's GEMMs alone, best of 5 blocks."""
    torch.set_num_threads(threads)
    mats = [(torch.randn(r, i), torch.randn(i, o), torch.randn(r, o)) for r, i, o in shapes]

    def step() -> None:
        for x, w, g in mats:
            torch.mm(x, w)  # forward
            torch.mm(g, w.T)  # grad w.r.t. the input
            torch.mm(x.T, g)  # grad w.r.t. the weight

    seconds = best_seconds_per_call(step, calls_per_block=20, warmup=10)
    return batch / seconds, gemm_flops(shapes) / seconds / 1e9


def run_row(row: str, args: argparse.Namespace) -> dict:
    runs = args.runs
    pilot = runs / f"{row}-pilot"
    if not (args.reuse and (pilot / "model.safetensors").exists()):
        pilot_args = train_args(row, pilot, args.pilot_steps, args.shared)
        vaekit_cli(*pilot_args, "--set", "train.log_every=100", threads=args.threads)
    pilot_rate = steady_rate(pilot)
    batch = json.loads((pilot / "config.json").read_text())["config"]["train"]["batch_size"]
    steps = int(pilot_rate * args.budget_minutes * 60 * args.fill / batch)
    run = runs / row
    record = run / "bench-train.json"  # the finished training's steps and wall time
    if args.reuse and record.exists():  # evaluate a run trained before (an interrupted table)
        steps, wall = (json.loads(record.read_text())[k] for k in ("steps", "wall_seconds"))
    else:
        print(f"{row}: pilot {pilot_rate:.0f} examples/s -> {steps} steps", file=sys.stderr)
        start = time.perf_counter()
        vaekit_cli(*train_args(row, run, steps, args.shared), threads=args.threads)
        wall = time.perf_counter() - start
        record.write_text(json.dumps({"steps": steps, "wall_seconds": wall}) + "\n")
    rate, train_seconds = training_rate(run)
    start = time.perf_counter()
    evaluate = ["evaluate", str(run), "--num-samples", str(args.num_samples), "--no-fcd"]
    evaluate += ["--max-examples", str(ALL_EXAMPLES)]
    vaekit_cli(*evaluate, "--json", threads=args.threads)
    eval_seconds = time.perf_counter() - start
    result = json.loads((run / "eval.json").read_text())
    shapes, batch, params = linear_shapes(run)
    roof, gflops = roofline(shapes, batch, args.threads)
    return {
        "row": row,
        "what": ROWS[row][3],
        "command": " ".join(["vaekit", *train_args(row, run, steps, args.shared)])
        .replace(str(ROOT) + "/", "")
        .replace(str(args.shared), "../shared/datasets"),
        "steps": steps,
        "train_wall_minutes": wall / 60,
        "train_step_minutes": train_seconds / 60,
        "examples_per_s": rate,
        "roofline_examples_per_s": roof,
        "roofline_gflops": gflops,
        "parameters": params,
        "eval_seconds": eval_seconds,
        "eval": eval_fields(result),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def eval_fields(result: dict) -> dict:
    """What a results file keeps of ``vaekit evaluate --json``: its scalars, the active units
    per layer and the codebook statistics (not the per-coordinate lists)."""
    kept = ("active_units_per_layer", "codebook")
    return {k: v for k, v in result.items() if not isinstance(v, list | dict)} | {
        k: result[k] for k in kept if k in result
    }


def active_units_cell(e: dict) -> str:
    """The active units as a table cell: the total, and per layer where there are layers."""
    units = str(e.get("active_units", "-"))
    if "active_units_per_layer" in e:
        units = f"{units} ({' + '.join(map(str, e['active_units_per_layer']))})"
    return units


def table(results: dict[str, dict]) -> str:
    head = (
        "| model | params | steps | training min (wall) | examples/s | % of own GEMM roofline "
        "| test nll (nats) | bits/dim | active units | test images x K |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for row in ROWS:
        if row not in results:
            continue
        r, e = results[row], results[row]["eval"]
        if "nll" in e:
            nll = f"{e['nll']:.2f} ± {e['nll_stderr']:.2f}"
            if "conditioned_on" in e:  # a conditional model's nll is -log p(x|y)
                nll += " (−log p(x\\|y))"
        else:  # a model without p(x): what it does report, never a likelihood
            nll = f"none: no p(x) (log p(x\\|z_q) {e.get('log_px_z', float('nan')):.2f}"
            if "codebook_perplexity" in e:
                nll += f", code perplexity {e['codebook_perplexity']:.0f}"
            nll += ")"
        bpd = f"{e['bits_per_dim']:.4f}" if "bits_per_dim" in e else "-"
        units = active_units_cell(e)
        k = e.get("num_samples", "-")
        lines.append(
            f"| {r['what']} | {r['parameters']:,} | {r['steps']:,} | "
            f"{r['train_wall_minutes']:.1f} | {r['examples_per_s']:,.0f} | "
            f"{100 * r['examples_per_s'] / r['roofline_examples_per_s']:.0f}% | {nll} | {bpd} | "
            f"{units} | {e['num_examples']:,} x {k} |"
        )
    return head + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--budget-minutes", type=float, default=15.0)
    parser.add_argument("--fill", type=float, default=0.92, help="share of the budget in steps")
    parser.add_argument("--pilot-steps", type=int, default=500)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "models")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "models.json")
    parser.add_argument("--table", action="store_true", help="only print the finished rows")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="a row whose pilot or training finished before (RUN/bench-train.json) is not "
        "trained again: its recorded steps and wall time are used, and it is evaluated",
    )
    args = parser.parse_args()
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    if not args.table:
        for row in args.only:
            results[row] = run_row(row, args)
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps(results, indent=1) + "\n")
            print(table({row: results[row]}).splitlines()[-1], file=sys.stderr)
    print(table(results))


if __name__ == "__main__":
    main()
