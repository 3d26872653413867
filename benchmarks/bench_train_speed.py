"""Training throughput: vaekit vs pythae vs two plain PyTorch loops, with the matmul roofline.

Each contestant trains the reference model (contestants/common.py) for one epoch over the same
60,000 statically binarised Fashion-MNIST images, in its own fresh process, with the same
thread count. Rounds alternate the order (A/B/C, B/C/A, ...) so drifting machine load hits all
contestants alike; the table reports medians and same-run ratios.

The roofline bound: the reference model's GEMMs for one training step at batch 128 (forward,
grad-input and grad-weight of every Linear layer: 3 x forward multiply-adds x 2 FLOP = 6.46
MFLOP per image) are timed back to back in this process; images/s = 128 / that time. No
training loop can beat it on this machine without doing less arithmetic.

Run (`make bench-setup` first creates .venv-peers with torch==2.13.0 and pythae):

    .venv/bin/python benchmarks/bench_train_speed.py --rounds 3

``--quick`` uses 2 rounds (``make bench``). Results are copied into
benchmarks/notes/training-throughput.md.
To A/B a change, check the old commit out next to this one and add it as a contestant:

    git worktree add /tmp/vaekit-old HEAD~1
    .venv/bin/python benchmarks/bench_train_speed.py --only vaekit --baseline-src \
        /tmp/vaekit-old/src

``vaekit`` runs the default train.compile ("auto"), ``vaekit-eager`` the same with
train.compile = false. One epoch (469 steps) is too short for "auto" to compile, so the two
match there; ``--epochs N`` trains longer (vaekit, vaekit-eager and the fused loop only; the
rate then counts every epoch's training time, a compile's included), e.g.

    .venv/bin/python benchmarks/bench_train_speed.py --rounds 3 --epochs 20 \
        --only vaekit vaekit-eager fused
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from timing import best_seconds_per_call

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_PYTHON = Path(os.environ.get("VAEKIT_PEERS_PYTHON", ROOT / ".venv-peers" / "bin" / "python"))
BATCH = 128
K = 5
# Each model's Linear layers for one training step: (rows, inputs, outputs). The encoder of
# q(z_1|x) sees the batch; everything after the first draw sees K draws of it.
SHAPES = {
    "reference": [
        (BATCH, i, o)
        for i, o in [(784, 512), (512, 256), (256, 32), (16, 256), (256, 512), (512, 784)]
    ],
    "iwae5": [(BATCH, 784, 512), (BATCH, 512, 256), (BATCH, 256, 64)]
    + [(K * BATCH, i, o) for i, o in [(32, 256), (256, 512), (512, 784)]],
    "hvae": [
        *[(BATCH, i, o) for i, o in [(784, 200), (200, 200), (200, 200)]],  # q(z_1|x)
        *[(K * BATCH, i, o) for i, o in [(100, 100), (100, 100), (100, 100)]],  # q(z_2|z_1)
        *[(K * BATCH, i, o) for i, o in [(50, 100), (100, 100), (100, 200)]],  # p(z_1|z_2)
        *[(K * BATCH, i, o) for i, o in [(100, 200), (200, 200), (200, 784)]],  # p(x|z_1)
    ],
}


def prepare_data(shared: Path, out: Path) -> Path:
    """Statically binarise Fashion-MNIST's training images once (seed 0) into a .npy file."""
    path = out / "fashion-mnist-train-binarized-seed0.npy"
    if path.exists():
        return path
    raw = gzip.decompress((shared / "fashion-mnist" / "train-images-idx3-ubyte.gz").read_bytes())
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 784)
    rng = np.random.default_rng(0)
    binary = (rng.random(pixels.shape) < pixels / 255.0).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    np.save(path, binary)
    return path


def flops_per_image(model: str = "reference") -> float:
    return 3 * 2 * sum(rows * i * o for rows, i, o in SHAPES[model]) / BATCH


def roofline_images_per_s(threads: int, repeats: int = 200, model: str = "reference") -> float:
    """Time a model's training GEMMs for one step at batch 128 and return images/s."""
    torch.set_num_threads(threads)
    mats = []
    for rows, n_in, n_out in SHAPES[model]:
        x, w = torch.randn(rows, n_in), torch.randn(n_in, n_out)
        g = torch.randn(rows, n_out)
        mats.append((x, w, g))

    def step() -> None:
        for x, w, g in mats:
            torch.mm(x, w)  # forward
            torch.mm(g, w.T)  # grad w.r.t. the input
            torch.mm(x.T, g)  # grad w.r.t. the weight

    best = best_seconds_per_call(step, calls_per_block=repeats // 5, warmup=20)
    return BATCH / best


CONTESTANTS = {
    "vaekit": (sys.executable, "contestants/vaekit_train.py"),
    "vaekit-eager": (sys.executable, "contestants/vaekit_train.py"),
    "plain": (sys.executable, "contestants/plain_loop.py"),
    "fused": (sys.executable, "contestants/fused_loop.py"),
    "pythae": (str(PEERS_PYTHON), "contestants/pythae_train.py"),
}


def run(
    name: str,
    data: Path,
    threads: int,
    baseline_src: Path | None = None,
    model: str = "reference",
    epochs: int = 1,
) -> dict:
    """One contestant in a fresh process; ``baseline`` is vaekit imported from another tree."""
    python, script = CONTESTANTS["vaekit" if name == "baseline" else name]
    src = baseline_src if name == "baseline" else ROOT / "src"
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{src}", OMP_NUM_THREADS=str(threads))
    extra = ["--compile", "false"] if name == "vaekit-eager" else []
    extra += ["--epochs", str(epochs)] if epochs != 1 else []
    proc = subprocess.run(
        [python, script, "--data", str(data), "--threads", str(threads), "--model", model, *extra],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/vaekit-bench"))
    parser.add_argument("--only", nargs="*", default=list(CONTESTANTS))
    parser.add_argument(
        "--model",
        choices=list(SHAPES),
        default="reference",
        help="reference (all contestants); iwae5 or hvae: the IWAE preset's and the two-layer "
        "preset's shapes at K = 5 (vaekit and the plain fused loop only)",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="the src/ directory of another vaekit checkout (e.g. a git worktree of an older "
        "commit), run as one more contestant, 'baseline', to A/B a change",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=1,
        help="passes over the images (above 1: vaekit, vaekit-eager, fused and the baseline "
        "only), long enough for train.compile = auto to compile",
    )
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    names = [n for n in CONTESTANTS if n in args.only]
    if args.baseline_src is not None:
        if not (args.baseline_src / "vaekit" / "__init__.py").exists():
            parser.error(f"--baseline-src {args.baseline_src}: no vaekit package there")
        names.append("baseline")
    if args.model != "reference" or args.epochs != 1:
        names = [n for n in names if n in ("vaekit", "vaekit-eager", "fused", "baseline")]
    if "pythae" in names and not PEERS_PYTHON.exists():
        print(f"skipping pythae: {PEERS_PYTHON} missing (make bench-setup)", file=sys.stderr)
        names.remove("pythae")
    data = prepare_data(args.shared, args.cache)
    results: dict[str, list[dict]] = {n: [] for n in names}
    roofs = []
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        roofs.append(roofline_images_per_s(args.threads, model=args.model))
        for name in order:
            got = run(name, data, args.threads, args.baseline_src, args.model, args.epochs)
            results[name].append(got)
            note = f" ({got['note']})" if "note" in got else ""
            print(
                f"round {r + 1}: {name}: {got['images_per_s']:.0f} images/s{note}", file=sys.stderr
            )
    roof = statistics.median(roofs)
    med = {n: statistics.median(x["images_per_s"] for x in v) for n, v in results.items()}
    mem = {n: max(x["peak_rss_mib"] for x in v) for n, v in results.items()}
    flops = flops_per_image(args.model)
    print(
        f"roofline of {args.model} (GEMMs only, {flops / 1e6:.2f} MFLOP/image): "
        f"{roof:.0f} images/s = {roof * flops / 1e9:.0f} GFLOP/s"
    )
    print(f"| contestant | images/s (median of {rounds}) | % of roofline | peak RSS MiB |")
    print("|---|---|---|---|")
    for n in names:
        label = results[n][0]["name"]
        if n == "baseline":
            label = f"vaekit train from {args.baseline_src}"
        print(f"| {label} | {med[n]:.0f} | {100 * med[n] / roof:.0f}% | {mem[n]:.0f} |")
    if "vaekit" in med:
        for n in names:  # ratios against every other contestant, the baseline included
            if n != "vaekit":
                print(f"vaekit / {n}: {med['vaekit'] / med[n]:.2f}x")


if __name__ == "__main__":
    main()
