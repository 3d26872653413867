"""Training throughput under each thread setting, on a quiet and on a loaded machine.

    python benchmarks/bench_threads.py [--seconds 4] [--repeats 3] [--out results/threads.json]

Each cell runs the reference training step (MLP VAE 784-512-256-16, batch 128, Adam; the
model of the speed benchmarks) in a fresh process for ``--seconds`` after a warm-up, and
reports images per second (median over ``--repeats`` processes, run in rotation so drift hits
every setting alike). "Loaded" starts one busy-looping process per core beside it, the
situation of a shared machine (a test suite, another training run). Settings:

* ``1 thread``: torch.set_num_threads(1);
* ``2 threads, spin``: two OpenMP threads with the runtime's default wait policy (threads spin
  while they wait for work);
* ``2 threads, passive``: two threads with OMP_WAIT_POLICY=PASSIVE (threads sleep);
* ``2 threads, short spin``: two threads that spin 10,000 times (GOMP_SPINCOUNT; the
  default is 300,000 for GNU OpenMP) before they sleep;
* ``vaekit policy``: what ``vaekit`` itself does (``vaekit.support.runtime.apply_thread_policy``).

Run it alone on the machine; the note in RESULTS.md says so.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
from pathlib import Path

STEP = r"""
import os, sys, time
seconds = float(sys.argv[1])
threads = int(sys.argv[2])
if threads == -1:
    from vaekit.support.runtime import apply_thread_policy
    apply_thread_policy()
import torch
if threads > 0:
    torch.set_num_threads(threads)
torch.manual_seed(0)
lin, relu = torch.nn.Linear, torch.nn.ReLU
enc = torch.nn.Sequential(lin(784, 512), relu(), lin(512, 256), relu(), lin(256, 32))
dec = torch.nn.Sequential(lin(16, 256), relu(), lin(256, 512), relu(), lin(512, 784))
params = [*enc.parameters(), *dec.parameters()]
opt = torch.optim.Adam(params, lr=1e-3)
x = (torch.rand(128, 784) > 0.5).float()
def step():
    mu, log_var = enc(x).chunk(2, dim=1)
    z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
    rec = torch.nn.functional.binary_cross_entropy_with_logits(dec(z), x, reduction="sum")
    kl = 0.5 * (mu.square() + log_var.exp() - 1 - log_var).sum()
    loss = (rec + kl) / x.shape[0]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
for _ in range(20):
    step()
start, steps = time.perf_counter(), 0
while time.perf_counter() - start < seconds:
    step()
    steps += 1
print(steps * x.shape[0] / (time.perf_counter() - start), torch.get_num_threads())
"""

SETTINGS = {
    "1 thread": (1, {}),
    "2 threads, spin": (2, {}),
    "2 threads, passive": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "2 threads, short spin": (2, {"GOMP_SPINCOUNT": "10000"}),
    "vaekit policy": (-1, {}),
}


def _busy() -> None:
    while True:
        pass


def run_cell(threads: int, env: dict[str, str], seconds: float) -> tuple[float, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "GOMP"))}
    out = subprocess.run(
        [sys.executable, "-c", STEP, str(seconds), str(threads)],
        env=clean | env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/threads.json"))
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    table: dict[str, dict[str, dict]] = {}
    for load in ("quiet", "loaded"):
        hogs = []
        if load == "loaded":
            hogs = [mp.Process(target=_busy, daemon=True) for _ in range(cores)]
            for h in hogs:
                h.start()
        try:
            rates: dict[str, list[float]] = {name: [] for name in SETTINGS}
            used: dict[str, int] = {}
            for _ in range(args.repeats):
                for name, (threads, env) in SETTINGS.items():
                    rate, n = run_cell(threads, env, args.seconds)
                    rates[name].append(rate)
                    used[name] = n
        finally:
            for h in hogs:
                h.terminate()
        table[load] = {
            name: {"images_per_s": statistics.median(r), "runs": r, "threads": used[name]}
            for name, r in rates.items()
        }
        for name, cell in table[load].items():
            print(
                f"{load:7s} {name:20s} {cell['images_per_s']:9.0f} images/s "
                f"(median of {args.repeats}; torch threads {cell['threads']})"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cores": cores, "seconds": args.seconds, **table}, indent=2))


if __name__ == "__main__":
    main()
