"""Batches per second: vaekit's ``Dataset.batches`` against a torch DataLoader.

MNIST-sized data (60000 x 784 uint8, random values), batch size 128, shuffled, one full epoch
(469 batches) per run. The two paths alternate (DataLoader, vaekit, DataLoader, ...) so a
shared, busy machine slows both alike; the medians over the runs are reported.

* ``DataLoader``: ``torch.utils.data.DataLoader(TensorDataset(x_float, y), shuffle=True,
  batch_size=128)`` (x already float in [0, 1]; per-item ``__getitem__`` + default collate;
  num_workers=0, the default);
* ``vaekit, float``: the same float tensor, identity transform: one gather per batch;
* ``vaekit, uint8 + dequantise``: what vaekit really does for 8-bit images: stored uint8,
  gathered, then uniformly dequantised (x = (v + u) / 256, one fresh noise draw per pixel);
  compared with a DataLoader over the uint8 tensor followed by the same dequantisation.

Threads: 1 by default (``--threads``). On a busy 2-core machine torch's intra-op threads make a
small gather (128 x 784) up to 40x slower; one thread is the honest setting for both paths.

Usage: python benchmarks/bench_batching.py [--runs 5] [--device cpu] [--threads 1] [--write]
``--write`` rewrites benchmarks/notes/batching.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from vaekit.data import Dataset, Split
from vaekit.data.transforms import Dequantize, Transform

N, D, BATCH = 60000, 784, 128


def epoch_rate(batches, device: torch.device) -> float:
    """Batches per second over one full pass of ``batches`` (each batch touched on device)."""
    start = time.perf_counter()
    count = 0
    for x, _ in batches:
        x = x.to(device, non_blocking=True)
        count += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="epochs per path (default 5)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--write", action="store_true", help="write benchmarks/notes/batching.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    g = torch.Generator().manual_seed(0)
    x8 = torch.randint(0, 256, (N, 1, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (N,), generator=g)
    xf = x8.float() / 255
    loader = DataLoader(TensorDataset(xf, y), shuffle=True, batch_size=BATCH)
    loader8 = DataLoader(TensorDataset(x8, y), shuffle=True, batch_size=BATCH)
    dequantize = Dequantize(256)

    def vaekit_dataset(x, transform):
        split = Split(x, y)
        return Dataset("bench", (1, 28, 28), split, split, split, transform, "unit-interval", "g")

    deq = vaekit_dataset(x8, Dequantize(256))
    flt = vaekit_dataset(xf, Transform())
    makers = {
        "DataLoader(TensorDataset)": lambda gen: iter(loader),
        "vaekit Dataset.batches, float": lambda gen: flt.batches(
            "train", BATCH, shuffle=True, generator=gen, device=device
        ),
        "DataLoader(TensorDataset uint8) + dequantise": lambda gen: (
            (dequantize(x, gen), yb) for x, yb in loader8
        ),
        "vaekit Dataset.batches, uint8 + dequantise": lambda gen: deq.batches(
            "train", BATCH, shuffle=True, generator=gen, device=device
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in makers}
    gen = torch.Generator().manual_seed(1)
    for make in makers.values():  # warm-up epoch each (page-in, device residency)
        epoch_rate(make(gen), device)
    for _ in range(args.runs):
        for name, make in makers.items():
            rates[name].append(epoch_rate(make(gen), device))

    base = statistics.median(rates["DataLoader(TensorDataset)"])
    command = "PYTHONPATH=src python benchmarks/bench_batching.py " + " ".join(sys.argv[1:])
    lines = [
        "# Batching",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Data: {N} x {D} (1x28x28) random uint8 values, batch size {BATCH}, shuffled, one "
        f"epoch ({-(-N // BATCH)} batches) per run; {args.runs} runs per path, alternating, after "
        "one warm-up epoch each. Unit: batches per second (median over runs; min..max).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"device {device}, torch threads {torch.get_num_threads()}. The machine is shared with "
        "other engineers' jobs, so absolute numbers are noisy; the ratio is the result.",
        "",
        "| path | batches/s (median) | min..max | speed-up vs DataLoader |",
        "|---|---|---|---|",
    ]
    for name, values in rates.items():
        med = statistics.median(values)
        lines.append(
            f"| {name} | {med:.0f} | {min(values):.0f}..{max(values):.0f} | {med / base:.1f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        path = Path(__file__).resolve().parent / "notes" / "batching.md"
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
