"""Packed data: packing speed, start-up, streaming throughput and bounded memory.

    python benchmarks/bench_pack.py --part all                       # every part, full size
    python benchmarks/bench_pack.py --part pack --images 20000       # packing speed
    python benchmarks/bench_pack.py --part startup --images 20000    # first batch: pack vs folder
    python benchmarks/bench_pack.py --part throughput --steps 2000   # MNIST streamed vs in memory
    python benchmarks/bench_pack.py --part memory --gb 10 --cap-gb 2 # 10 GB under a 2 GB cap
    python benchmarks/bench_pack.py --part all --tiny                # a smoke run (seconds)

Run it alone on the machine (the numbers are rates). Each part writes
``benchmarks/results/pack-PART.json`` (``--results`` moves them); scratch data goes to
``--work`` (default: a temporary folder, deleted at the end).

* ``pack``: a generated set of 64x64 RGB PNG images (``--images``) in a class folder,
  packed with ``vaekit pack`` (npy and webdataset layouts); images per second, decoding
  included.
* ``startup``: seconds from a fresh process's start to the first training batch (imports,
  loading, the split, the first read), on the raw image folder and on its pack.
* ``throughput``: training images per second with 2 torch threads, MNIST from the built-in
  loader (``--data-dir``, default ``/work/shared/datasets``) held in memory, against its npy
  pack streamed from disk; the step is the reference MLP VAE 784-512-256-16 (batch 128).
* ``memory``: a synthetic uint8 set of ``--gb`` GB (64x64 RGB, written as one ``.npy`` without
  holding it), packed, then one training pass over it in a child process whose address space
  is capped at ``--cap-gb`` GB (``RLIMIT_AS``, as ``ulimit -v``); reports its peak RSS
  (``getrusage``) and whether it finished under the cap. ``RLIMIT_AS`` counts reserved
  address space, which torch's allocator inflates; where it refuses to start, cap with a
  cgroup instead, which the training process alone joins (page cache counts in its limit;
  generating and packing the set run outside it):

      mkdir /sys/fs/cgroup/memory/vaekit
      echo 2G > /sys/fs/cgroup/memory/vaekit/memory.limit_in_bytes
      python benchmarks/bench_pack.py --part memory --cap-gb 0 --cgroup /sys/fs/cgroup/memory/vaekit
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIDE = 64

STEP = r"""
import json, resource, sys, time
threads, source, steps, cap = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
if cap > 0:
    limit = int(cap * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
started = time.perf_counter()


def peak_rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024


import torch
torch.set_num_threads(threads)
from vaekit.data import load_dataset
dataset = load_dataset(source, data_dir=sys.argv[5] or None, progress=False) if source == "mnist" \
    else load_dataset(source)
split = dataset.train  # MNIST: in memory; a pack: streamed from its shards
dim = 1
for d in dataset.shape:
    dim *= d
torch.manual_seed(0)
lin, relu = torch.nn.Linear, torch.nn.ReLU
enc = torch.nn.Sequential(lin(dim, 512), relu(), lin(512, 256), relu(), lin(256, 32))
dec = torch.nn.Sequential(lin(16, 256), relu(), lin(256, 512), relu(), lin(512, dim))
opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
generator = torch.Generator().manual_seed(0)
first = None
done, images, timed = 0, 0, None
while done < steps:
    for stored, _ in split.epoch_batches(128, generator):
        x = dataset.transform(stored, generator).reshape(stored.shape[0], -1)
        mu, log_var = enc(x).chunk(2, dim=1)
        z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
        kl = 0.5 * (mu.square() + log_var.exp() - 1 - log_var).sum()
        loss = ((dec(z) - x).square().sum() + kl) / x.shape[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += 1
        if first is None:
            first = time.perf_counter() - started
        if done == min(10, steps):
            timed, images = time.perf_counter(), 0
        else:
            images += x.shape[0]
        if done >= steps:
            break
seconds = time.perf_counter() - timed
print(json.dumps({
    "seconds_to_first_step": first,
    "images_per_second": images / seconds if seconds > 0 and images else None,
    "steps": done,
    # VmHWM, not getrusage: Linux keeps ru_maxrss across execve, so a child's would include
    # its parent's peak at the fork; the high-water mark of this process image starts afresh.
    "peak_rss_mib": peak_rss_mib(),
}))
"""


def child(
    source: str,
    steps: int,
    threads: int = 2,
    cap_gb: float = 0.0,
    data_dir: str = "",
    cgroup: Path | None = None,
) -> dict:
    """Run the training snippet in a fresh process; its JSON line (or the failure).
    ``cgroup``: a memory cgroup folder the process joins before it starts (its limit caps
    the training alone, not the generation and packing before it)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    args = [sys.executable, "-c", STEP, str(threads), source, str(steps), str(cap_gb), data_dir]

    def join() -> None:
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    proc = subprocess.run(
        args, capture_output=True, text=True, env=env, preexec_fn=join if cgroup else None
    )
    if proc.returncode != 0:
        return {"failed": proc.stderr.strip().splitlines()[-1:] or ["(no message)"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def image_folder(root: Path, n: int) -> Path:
    """``n`` generated 64x64 RGB PNGs in two class folders (smooth gradients and noise)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    for i in range(n):
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        base = (xx * rng.uniform(1, 4) + yy * rng.uniform(1, 4)) % 256
        noise = rng.integers(0, 32, (SIDE, SIDE, 3))
        pixels = ((base[..., None] + noise) % 256).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:07d}.png")
    return root


def pack(source: str, out: Path, layout: str = "npy") -> float:
    """Seconds ``vaekit pack`` takes (loading and decoding included)."""
    from vaekit.data import load_dataset
    from vaekit.data.pack import write_pack

    started = time.perf_counter()
    dataset = load_dataset(source, in_memory=False)
    write_pack(dataset, out, source, layout=layout, log=lambda line: None)
    return time.perf_counter() - started


def part_pack(args, work: Path) -> dict:
    folder = image_folder(work / "images", args.images)
    out = {"images": args.images, "side_pixels": SIDE}
    for layout in ("npy", "webdataset"):
        seconds = pack(str(folder), work / f"pack-{layout}", layout)
        out[layout] = {"seconds": seconds, "images_per_second": args.images / seconds}
    return out


def part_startup(args, work: Path) -> dict:
    folder = work / "images"
    if not folder.exists():
        image_folder(folder, args.images)
    if not (work / "pack-npy").exists():
        pack(str(folder), work / "pack-npy")
    out = {"images": args.images}
    for name, source in (("raw folder", folder), ("npy pack", work / "pack-npy")):
        out[name] = child(str(source), 1)
    return out


def part_throughput(args, work: Path) -> dict:
    from vaekit.data import load_dataset
    from vaekit.data.pack import write_pack

    mnist = load_dataset("mnist", data_dir=args.data_dir, progress=False)
    packed = work / "mnist-pack"
    if not packed.exists():
        write_pack(mnist, packed, "mnist", log=lambda line: None)
    memory = child("mnist", args.steps, 2, data_dir=args.data_dir)
    streamed = child(str(packed), args.steps, 2)
    ratio = None
    if memory.get("images_per_second") and streamed.get("images_per_second"):
        ratio = streamed["images_per_second"] / memory["images_per_second"]
    return {
        "threads": 2,
        "steps": args.steps,
        "in memory": memory,
        "streamed": streamed,
        "streamed_over_in_memory": ratio,
    }


def synthetic_npy(path: Path, gigabytes: float) -> int:
    """A uint8 ``[N, 3, 64, 64]`` .npy of about ``gigabytes`` GB, written block by block."""
    row = 3 * SIDE * SIDE
    n = max(30, int(gigabytes * 1e9) // row)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 3, SIDE, SIDE))
    rng = np.random.default_rng(0)
    for start in range(0, n, 4096):
        stop = min(n, start + 4096)
        array[start:stop] = rng.integers(0, 256, (stop - start, 3, SIDE, SIDE), dtype=np.uint8)
    array.flush()
    del array
    return n


def part_memory(args, work: Path) -> dict:
    rows = synthetic_npy(work / "synthetic.npy", args.gb)
    seconds = pack(str(work / "synthetic.npy"), work / "synthetic-pack")
    (work / "synthetic.npy").unlink()  # only the pack is trained on
    steps = args.steps if args.tiny else max(args.steps, rows // 128)
    run = child(str(work / "synthetic-pack"), steps, 2, cap_gb=args.cap_gb, cgroup=args.cgroup)
    peak = run.get("peak_rss_mib")
    return {
        "gigabytes": args.gb,
        "rows": rows,
        "pack_seconds": seconds,
        "cap_gb": args.cap_gb,
        "train": run,
        "cgroup": None if args.cgroup is None else str(args.cgroup),
        "under_cap": None if peak is None or not args.cap_gb else peak < args.cap_gb * 1024,
    }


PARTS = {
    "pack": part_pack,
    "startup": part_startup,
    "throughput": part_throughput,
    "memory": part_memory,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument(
        "--images", type=int, default=20000, help="generated images (pack, startup)"
    )
    parser.add_argument("--steps", type=int, default=2000, help="training steps timed")
    parser.add_argument("--gb", type=float, default=10.0, help="synthetic set size, GB (memory)")
    parser.add_argument("--cap-gb", type=float, default=2.0, help="address-space cap, GB; 0: none")
    parser.add_argument("--data-dir", default="/work/shared/datasets", help="MNIST's folder")
    parser.add_argument(
        "--cgroup",
        type=Path,
        help="memory: a memory cgroup folder (its limit set) the training process joins",
    )
    parser.add_argument("--tiny", action="store_true", help="a smoke run: tiny sizes")
    parser.add_argument("--work", type=Path, help="scratch folder (default: temporary)")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.tiny:
        args.images, args.steps, args.gb, args.cap_gb = 200, 20, 0.01, args.cap_gb
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for name in PARTS if args.part == "all" else [args.part]:
            result = PARTS[name](args, work) | {"tiny": args.tiny}
            args.results.mkdir(parents=True, exist_ok=True)
            (args.results / f"pack-{name}.json").write_text(json.dumps(result, indent=2) + "\n")
            print(name, json.dumps(result))


if __name__ == "__main__":
    main()
