"""The likelihood record on this CPU: presets trained for their wall-clock budget, their
learning curves from snapshots, their test nll, and the picture ``docs/mnist-record.png``.

For each ``--preset`` (a preset in configs/) and ``--seed``:

1. ``vaekit train --config PRESET --set train.seed=S --set train.snapshot_minutes=M``: the
   preset's own ``train.max_steps`` and ``train.max_minutes`` are the budget; the run's wall
   time is measured around ``vaekit train`` (start-up, training and validation, no
   evaluation). Snapshots of the model every M minutes of training go to RUN/snapshots/;
2. the row: the final model at ``--num-samples`` (5000) on all test images, ± standard error,
   bits/dim and active units; and the throughput as a share of the model's own GEMM
   roofline, measured in this process as ``bench_models.py`` does;
3. the learning curve: every snapshot and the final model, ``vaekit evaluate --num-samples
   K_curve`` (1000) on all 10,000 test images, against the training minutes the snapshot's
   metadata records (the final model: the run's own training seconds; the row's evaluation
   when both K are the same: one evaluation, not two).

Each evaluation's result is kept beside its model (``bench-eval-kK.json``); ``--reuse``
evaluates a run trained before and reads back the evaluations it finds, so a run stopped
during its evaluations goes on where it stopped. Evaluations do not depend on the machine's
load, only their seconds do: ``--busy`` records those as null, for evaluations run beside
other work (the training and the roofline still need the machine to themselves).
``--final-only`` evaluates the final model alone (the curve is its one point), for a run whose
snapshots wait for another day: a later ``--reuse`` without it adds their points.

The evaluation's test binarisation is fixed (``vaekit evaluate --seed 0``), so every number
is on the same binarised test images; ``vaekit compare RUN_A RUN_B`` pairs two runs on them.
Each finished run is written to ``--results`` (JSON keyed ``PRESET/seed-S``; runs there are
kept), and ``--plot`` draws the picture from that file: test nll (K_curve) against training
minutes, with the published numbers of Burda et al. (2015) as horizontal lines. Run it on an
otherwise idle machine: the budget and the throughput both assume the cores are the run's.

    .venv/bin/python benchmarks/bench_record.py --preset mnist-record-1h --seed 0
    .venv/bin/python benchmarks/bench_record.py --plot     # docs/mnist-record.png

The same preset on other data or with other settings: ``--set KEY=VALUE`` (repeatable) goes
to ``vaekit train`` after the preset, and ``--label`` names the variant's runs and results
(``PRESET+LABEL/seed-S``). ``--shared`` is passed as ``--data-dir``, where ``vaekit train``
finds each built-in set in its own folder (``mnist/``, ``fashion-mnist/``). Fashion-MNIST,
binarised and in 8 bits with the discretised logistic:

    bench_record.py --preset mnist-record-1h --label fashion \
        --set data.name=fashion-mnist-binarized-dynamic
    bench_record.py --preset mnist-record-1h --label fashion-dlogistic \
        --set data.name=fashion-mnist --set model.likelihood=discretized-logistic \
        --set train.max_steps=61000

The discretised logistic's decoder writes two numbers per pixel, so its step is dearer: 61,000
steps (not the preset's 78,000) end the cosine schedule inside the hour on this CPU.
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

from bench_models import (  # noqa: E402
    ALL_EXAMPLES,
    active_units_cell,
    eval_fields,
    linear_shapes,
    roofline,
    training_rate,
    vaekit_cli,
)
from timing import best_seconds_per_call  # noqa: E402

# Test nll (nats) on dynamically binarised MNIST, Burda et al. (2015), table 1: the lines
# of the picture, with the model each belongs to.
PUBLISHED = {
    "VAE, 1 stochastic layer, k = 1 (86.76)": 86.76,
    "IWAE, 1 stochastic layer, k = 50 (84.78)": 84.78,
    "IWAE, 2 stochastic layers, k = 50 (82.90)": 82.90,
}
# The picture's data: only runs on it are drawn against the published MNIST numbers.
RECORD_DATA = "mnist-binarized-dynamic"


def data_name(preset: str, overrides: list[str]) -> str:
    """The ``data.name`` a run of ``preset`` with ``--set`` ``overrides`` trains on. Loading
    the preset and applying the overrides as ``vaekit train`` will also checks every setting
    now, before any training: a misspelt key fails here, not an hour in."""
    from vaekit.config import ConfigError, apply_overrides, load_config

    try:
        return apply_overrides(load_config(preset_file(preset)), overrides).data.name
    except ConfigError as exc:
        raise SystemExit(f"--preset {preset} --set {' '.join(overrides)}: {exc}") from None


def evaluate(model_dir: Path, num_samples: int, args: argparse.Namespace) -> tuple[dict, float]:
    """``vaekit evaluate`` on all test images at K = ``num_samples``: its JSON result and
    its wall seconds. Each result is kept beside the model (``bench-eval-kK.json``), and
    ``--reuse`` reads it back instead of evaluating again, so an interrupted run's
    evaluations are not lost. With ``--busy`` the seconds are None: they were measured on a
    machine shared with other work."""
    kept = model_dir / f"bench-eval-k{num_samples}.json"
    if args.reuse and kept.exists():
        stored = json.loads(kept.read_text())
        return stored["result"], stored["seconds"]
    command = ["evaluate", str(model_dir), "--num-samples", str(num_samples), "--no-fcd"]
    command += ["--max-examples", str(ALL_EXAMPLES)]
    start = time.perf_counter()
    proc = vaekit_cli(*command, "--json", "--progress", "plain", threads=args.threads)
    seconds = None if args.busy else time.perf_counter() - start
    result = json.loads(proc.stdout)
    kept.write_text(json.dumps({"result": result, "seconds": seconds}) + "\n")
    return result, seconds


def train_seconds(model_dir: Path) -> float:
    """The training seconds a snapshot (or the run's last checkpoint) was taken at."""
    config = json.loads((model_dir / "config.json").read_text())
    if "train_seconds" in config.get("metadata", {}):
        return float(config["metadata"]["train_seconds"])
    trainer = json.loads((model_dir / "checkpoints" / "last" / "trainer.json").read_text())
    return float(trainer["loop"]["train_seconds"])


def decoder_roofline_seconds(
    run: Path, result: dict, threads: int
) -> tuple[float, float] | tuple[None, None]:
    """(seconds, GFLOP/s): the GEMMs of the p(x|z) decoder alone for the evaluation
    ``result`` describes (every test image times K draws, in blocks of batch_size x
    chunk_size rows as ``vaekit evaluate`` runs them), forward only, best of 5 blocks. The
    floor an importance-sampled log p(x) cannot beat: each draw must be decoded once. The
    decoder must be an MLP (each Linear applied once per draw); (None, None) for a model
    without one p(x|z) network (the deep hierarchy)."""
    import torch
    from torch import nn

    import vaekit

    torch.set_num_threads(threads)
    model = vaekit.load(run)
    if not isinstance(getattr(model, "decoder", None), nn.Module):
        # a hierarchy decodes through every group's cells, not one p(x|z) network
        return None, None
    layers = list(model.decoder.modules())
    if any(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in layers):
        raise SystemExit(f"{run}: the decoder-GEMM roofline is defined for MLP decoders only")
    shapes = [(m.in_features, m.out_features) for m in layers if isinstance(m, nn.Linear)]
    rows = result["batch_size"] * result["chunk_size"]
    mats = [(torch.randn(rows, i), torch.randn(i, o)) for i, o in shapes]

    def block() -> None:
        for x, w in mats:
            torch.mm(x, w)

    seconds = best_seconds_per_call(block, calls_per_block=10, warmup=3)
    draws = result["num_examples"] * result["num_samples"]
    flops = 2 * rows * sum(i * o for i, o in shapes)
    return draws / rows * seconds, flops / seconds / 1e9


def preset_file(preset: str) -> Path:
    """A preset's TOML file: configs/PRESET.toml, or a path given as such."""
    return Path(preset) if preset.endswith(".toml") else ROOT / "configs" / f"{preset}.toml"


def run_name(preset: str, label: str | None) -> str:
    """A variant's name: the preset's, with ``+LABEL`` when run with other settings."""
    return Path(preset).stem + (f"+{label}" if label else "")


def run_preset(preset: str, seed: int, args: argparse.Namespace) -> dict:
    name = run_name(preset, args.label)
    data = data_name(preset, args.set)
    run = args.runs / f"{name}-seed{seed}"
    train = ["train", "--config", str(preset_file(preset))]
    train += ["--data-dir", str(args.shared), "--out", str(run)]
    train += ["--overwrite", "--progress", "plain"]
    for item in (
        *args.set,
        f"train.seed={seed}",
        f"train.snapshot_minutes={args.snapshot_minutes}",
        "train.report=false",
        "train.tensorboard=false",
    ):
        train += ["--set", item]
    record = run / "bench-train.json"
    if args.reuse and record.exists():
        wall = json.loads(record.read_text())["wall_seconds"]
    else:
        start = time.perf_counter()
        vaekit_cli(*train, threads=args.threads)
        wall = time.perf_counter() - start
        record.write_text(json.dumps({"wall_seconds": wall}) + "\n")
    # the row's number first: the final model at the row's K, the curve's points after it
    final, eval_seconds = evaluate(run, args.num_samples, args)
    curve = []
    snapshots = sorted((run / "snapshots").glob("step-*")) if (run / "snapshots").exists() else []
    # --final-only: the curve is the row's own point (no snapshot evaluated)
    curve_k = args.num_samples if args.final_only else args.curve_samples
    for model_dir in [run] if args.final_only else [*snapshots, run]:
        if model_dir == run and curve_k == args.num_samples:
            result = final  # one evaluation, not two
        else:
            result = evaluate(model_dir, curve_k, args)[0]
        curve.append(
            {
                "train_minutes": train_seconds(model_dir) / 60,
                "nll": result["nll"],
                "nll_stderr": result["nll_stderr"],
                "num_samples": curve_k,
            }
        )
        print(f"{name} seed {seed}: {curve[-1]}", file=sys.stderr)
    decoder_seconds, decoder_gflops = decoder_roofline_seconds(run, final, args.threads)
    rate, _ = training_rate(run)
    shapes, batch, params = linear_shapes(run)
    roof, gflops = roofline(shapes, batch, args.threads)
    trainer = json.loads((run / "checkpoints" / "last" / "trainer.json").read_text())
    return {
        "preset": name,
        "data": data,
        "seed": seed,
        "command": " ".join(["vaekit", *train])
        .replace(str(args.runs), "runs/record")
        .replace(str(ROOT) + "/", "")
        .replace(str(args.shared), "../shared/datasets"),
        "steps": trainer["loop"]["step"],
        "train_wall_minutes": wall / 60,
        "examples_per_s": rate,
        "roofline_examples_per_s": roof,
        "roofline_gflops": gflops,
        "parameters": params,
        "eval_seconds": eval_seconds,
        "eval_decoder_roofline_seconds": decoder_seconds,
        "eval_decoder_gflops": decoder_gflops,
        "curve": curve,
        "eval": eval_fields(final),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def table(results: dict[str, dict]) -> str:
    head = (
        "| preset | data | seed | params | steps | training min (wall) | % of own GEMM roofline "
        "| test nll (nats) | K | bits/dim | active units |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in results.values():
        e = r["eval"]
        lines.append(
            f"| {r['preset']} | {r.get('data', RECORD_DATA)} | {r['seed']} | "
            f"{r['parameters']:,} | {r['steps']:,} | "
            f"{r['train_wall_minutes']:.1f} | "
            f"{100 * r['examples_per_s'] / r['roofline_examples_per_s']:.0f}% | "
            f"{e['nll']:.2f} ± {e['nll_stderr']:.2f} | {e['num_samples']} | "
            f"{e['bits_per_dim']:.4f} | {active_units_cell(e)} |"
        )
    return head + "\n".join(lines)


def plot(results: dict[str, dict], path: Path) -> None:
    """Test nll against training minutes on ``RECORD_DATA``, one line per preset (its first
    seed; a further seed's final number as a hollow star; a variant run with other settings,
    ``PRESET+LABEL``, as a diamond in its preset's colour), with the published numbers as
    horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colours: dict[str, str] = {}
    results = {k: r for k, r in results.items() if r.get("data", RECORD_DATA) == RECORD_DATA}
    # presets first, so that a variant or a further seed finds its preset's colour
    ordered = sorted(results.values(), key=lambda r: "+" in r["preset"])
    for r in ordered:
        base, _, variant = r["preset"].partition("+")
        if variant:
            # a variant is one run with other settings, not a curve of its own
            e = r["eval"]
            minutes = r["curve"][-1]["train_minutes"]
            ax.plot(minutes, e["nll"], marker="D", markersize=5, color=colours.get(base, "0.2"),
                    linestyle="none")  # fmt: skip
            ax.annotate(f"{e['nll']:.2f} ({variant}, K = {e['num_samples']})",
                        (minutes, e["nll"]), ha="left", va="top",
                        fontsize=7, textcoords="offset points", xytext=(2, -6))  # fmt: skip
            continue
        if r["preset"] in colours:
            # a further seed: its final number only, a hollow star in the preset's colour
            e = r["eval"]
            minutes = r["curve"][-1]["train_minutes"]
            ax.plot(minutes, e["nll"], marker="*", markersize=10, color=colours[r["preset"]],
                    markerfacecolor="none", linestyle="none")  # fmt: skip
            ax.annotate(f"{e['nll']:.2f} (seed {r['seed']}, K = {e['num_samples']})",
                        (minutes, e["nll"]), ha="left",
                        fontsize=7, textcoords="offset points", xytext=(8, -3))  # fmt: skip
            continue
        minutes = [p["train_minutes"] for p in r["curve"]]
        nll = [p["nll"] for p in r["curve"]]
        k = r["curve"][-1]["num_samples"]
        (line,) = ax.plot(
            minutes, nll, marker="o", markersize=3, label=f"vaekit {r['preset']} (K = {k})"
        )
        colours[r["preset"]] = line.get_color()
        # the row's own number: the final model at K = 5000 (lower than K = 1000 gives)
        e = r["eval"]
        ax.plot(minutes[-1], e["nll"], marker="*", markersize=10, color=line.get_color())
        label = f"{e['nll']:.2f} (K = {e['num_samples']})"
        offset = {"textcoords": "offset points", "xytext": (8, -3)}
        ax.annotate(label, (minutes[-1], e["nll"]), ha="left", fontsize=7, **offset)
    for i, (label, value) in enumerate(PUBLISHED.items()):
        ax.axhline(value, color="0.4", linestyle=(0, (4, 2 + 2 * i)), linewidth=1)
        ax.annotate(label, (0.99, value), xycoords=("axes fraction", "data"), ha="right",
                    va="bottom", fontsize=7, color="0.3")  # fmt: skip
    ax.set_xlabel("training time on 2 CPU cores (minutes, validation included)")
    ax.set_ylabel("test nll (nats per image, lower is better)")
    ax.set_title("Dynamically binarised MNIST: all 10,000 test images")
    values = [p["nll"] for r in results.values() for p in r["curve"]] or [90.0]
    ax.set_ylim(min(82.0, min(values)) - 0.5, min(max(values), 96.0) + 0.5)  # first points high
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", nargs="*", default=[], help="presets in configs/ to run")
    parser.add_argument("--seed", nargs="*", type=int, default=[0])
    parser.add_argument("--snapshot-minutes", type=float, default=10.0)
    parser.add_argument("--curve-samples", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "record")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "record.json")
    parser.add_argument("--plot", type=Path, nargs="?", const=ROOT / "docs" / "mnist-record.png")
    parser.add_argument(
        "--reuse", action="store_true", help="evaluate a run trained before instead of training"
    )
    parser.add_argument(
        "--final-only",
        action="store_true",
        help="evaluate the final model only: the curve is its one point at --num-samples",
    )
    parser.add_argument(
        "--busy",
        action="store_true",
        help="evaluations run beside other work: their seconds are not recorded (null)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for vaekit train after the preset (repeatable); needs --label",
    )
    parser.add_argument("--label", help="names a variant run with --set: PRESET+LABEL")
    args = parser.parse_args()
    if args.set and not args.label:
        raise SystemExit("--set needs --label: a variant's results must not replace the preset's")
    for preset in args.preset:  # every name checked before the first hour of training
        if not preset_file(preset).is_file():
            raise SystemExit(f"--preset {preset}: no such preset ({preset_file(preset)})")
        data_name(preset, args.set)
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    for preset in args.preset:
        for seed in args.seed:
            key = f"{run_name(preset, args.label)}/seed-{seed}"
            results[key] = run_preset(preset, seed, args)
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps(results, indent=1) + "\n")
    if args.plot is not None:
        plot(results, args.plot)
    print(table(results))


if __name__ == "__main__":
    main()
