"""The GPU check: the record model trained in bf16 autocast on one CUDA device, its
throughput against the device's own GEMM roofline, and the minutes it takes to reach the
CPU record's neighbourhood (84.78 nats, the one-hour preset's first recorded CPU number).

Run by ``benchmarks/gpu_check.sh`` (which also runs the CUDA tests) on a bare GPU machine with
PyTorch installed and vaekit on ``PYTHONPATH``; it needs no network. The steps:

1. ``vaekit train --config mnist-record-1h --device cuda --precision bf16`` for
   ``--minutes`` of training, with a snapshot every ``--snapshot-minutes``;
2. every snapshot and the final model: ``vaekit evaluate --num-samples 1000`` on all 10,000
   test images (test nll in nats per image, dynamically binarised MNIST, fixed binarisation);
   the first snapshot at or under ``--target`` gives the minutes to the target;
3. the final model at K = 5000 (the record's K);
4. the roofline: the (rows, inputs, outputs) of every Linear in one training step of the
   trained model, timed back to back on the device in bf16 (forward, grad-input and
   grad-weight GEMMs, best of 5 blocks); the throughput share is the run's training
   examples/s over that bound.

    bash benchmarks/gpu_check.sh                 # on the GPU machine, writes gpu-check/
    python3 benchmarks/gpu_check.py --minutes 4 --shared .gpu-data --out gpu-check

Everything lands in ``--out``: ``gpu-check.json`` and the run folder's metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_models import ALL_EXAMPLES, linear_shapes, training_rate, vaekit_cli  # noqa: E402
from bench_record import train_seconds  # noqa: E402
from timing import best_seconds_per_call  # noqa: E402

PRESET = "mnist-record-1h"


def evaluate(model_dir: Path, num_samples: int, max_examples: int, device: str) -> dict:
    """``vaekit evaluate`` at K = ``num_samples`` on the first ``max_examples`` test images,
    on ``device`` with a decoder-call budget that suits it (its JSON result)."""
    args = ["evaluate", str(model_dir), "--num-samples", str(num_samples), "--no-fcd", "--json"]
    args += ["--max-examples", str(max_examples), "--progress", "plain"]
    if device == "cuda":
        args += ["--memory-mb", "2048", "--batch-size", "1000"]
    return json.loads(vaekit_cli(*args, threads=4).stdout)


def device_roofline(
    shapes: list[tuple[int, int, int]], batch: int, device: str
) -> tuple[float, float]:
    """(examples/s, TFLOP/s) of one training step's GEMMs alone on ``device``: bf16 on CUDA,
    fp32 on the CPU (the smoke run's)."""
    opts = {"device": device, "dtype": torch.bfloat16 if device == "cuda" else torch.float32}
    mats = [
        (torch.randn(r, i, **opts), torch.randn(i, o, **opts), torch.randn(r, o, **opts))
        for r, i, o in shapes
    ]

    def step() -> None:
        for x, w, g in mats:
            torch.mm(x, w)
            torch.mm(g, w.T)
            torch.mm(x.T, g)
        if device == "cuda":
            torch.cuda.synchronize()

    seconds = best_seconds_per_call(step, calls_per_block=50, warmup=10)
    flops = 6 * sum(r * i * o for r, i, o in shapes)
    return batch / seconds, flops / seconds / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget")
    parser.add_argument("--snapshot-minutes", type=float, default=0.5)
    parser.add_argument("--target", type=float, default=84.78, help="nats per test image")
    parser.add_argument("--shared", type=Path, required=True, help="holds mnist/*.gz")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--eval-examples", type=int, default=ALL_EXAMPLES, help="smoke runs")
    parser.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a smoke run of the script"
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check.py: no CUDA device is visible to torch")
    precision = "bf16" if args.device == "cuda" else "fp32"
    args.out.mkdir(parents=True, exist_ok=True)
    run = args.out / "run"
    train = ["train", "--config", PRESET, "--data-dir", str(args.shared), "--out", str(run)]
    train += [
        "--device",
        args.device,
        "--precision",
        precision,
        "--progress",
        "plain",
        "--overwrite",
    ]
    for item in (
        f"train.max_minutes={args.minutes}",
        f"train.snapshot_minutes={args.snapshot_minutes}",
        "train.report=false",
        "train.tensorboard=false",
    ):
        train += ["--set", item]
    start = time.perf_counter()
    vaekit_cli(*train, threads=4)
    wall = time.perf_counter() - start
    curve = []
    snapshots = sorted((run / "snapshots").glob("step-*"), key=lambda p: int(p.name[5:]))
    for model_dir in [*snapshots, run]:
        result = evaluate(model_dir, 1000, args.eval_examples, args.device)
        point = {"train_minutes": train_seconds(model_dir) / 60, "nll": result["nll"]}
        curve.append(point)
        print(f"K=1000: {point}", file=sys.stderr, flush=True)
    reached = [p["train_minutes"] for p in curve if p["nll"] <= args.target]
    final = evaluate(run, 5000, args.eval_examples, args.device)
    rate, _ = training_rate(run)
    shapes, batch, _ = linear_shapes(run)
    roof, tflops = device_roofline(shapes, batch, args.device)
    result = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "preset": PRESET,
        "precision": precision,
        "train_wall_minutes": wall / 60,
        "examples_per_s": rate,
        "roofline_examples_per_s": roof,
        "roofline_tflops": tflops,
        "roofline_share": rate / roof,
        "curve_k1000": curve,
        "minutes_to_target": reached[0] if reached else None,
        "target_nats": args.target,
        "final_nll_k5000": final["nll"],
        "final_nll_stderr": final["nll_stderr"],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    (args.out / "gpu-check.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
