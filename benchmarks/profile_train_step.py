"""Where a `vaekit train` step spends its time: the reference model's, or a preset's.

Runs the default training path (``vaekit.train``, the same setup as
contestants/vaekit_train.py) under torch.profiler for ``--steps`` steps after a warm-up
epoch fraction, and prints milliseconds per step by category (GEMMs, optimiser, gradient
norm, likelihood, a mixture prior's log-density, other operators, Python and dispatch outside
operators) plus the top operators. It also reports the minor page faults and kernel time per
step (getrusage). ``--preset NAME`` profiles a preset's model, objective and batch size (one
epoch of ``--steps`` batches of the binarised Fashion-MNIST benchmark images) instead of the
reference model.

    .venv/bin/python benchmarks/profile_train_step.py --steps 200
    .venv/bin/python benchmarks/profile_train_step.py --steps 200 --preset mnist-record-1h
    .venv/bin/python benchmarks/profile_train_step.py --steps 300 --preset mnist-record-1h \
        --repeat 2 --no-profile    # an A/B of two checkouts: run each with its PYTHONPATH
    .venv/bin/python benchmarks/profile_train_step.py --steps 60 --preset mnist-deep \
        --callers aten::copy_,aten::add    # who calls these operators, per step

The profiler adds its own overhead to every operator call, so absolute times are higher than
in bench_train_speed.py; the shares are what this script is for.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import vaekit  # noqa: E402
from bench_train_speed import ROOT, prepare_data  # noqa: E402
from contestants.vaekit_train import reference_config, reference_dataset  # noqa: E402
from vaekit.config import ConfigError, load_config  # noqa: E402

CATEGORIES = {
    "GEMMs (mm, addmm)": ("aten::mm", "aten::addmm"),
    "Adam (fused kernel)": ("aten::_fused_adam_",),
    "gradient norm": ("aten::linalg_vector_norm", "aten::_foreach_norm"),
    "Bernoulli log-density": (
        "aten::log_sigmoid_forward",
        "aten::log_sigmoid_backward",
        "aten::binary_cross_entropy_with_logits",
    ),
    # the VampPrior's mixture log-density (its products count as GEMMs; a training step
    # keeps them in float32, so casts here come from elsewhere)
    "mixture prior (logsumexp), dtype casts": ("aten::logsumexp", "aten::_to_copy"),
}


def dataset(steps: int, batch: int, shared: Path, cache: Path):
    """The first ``steps`` batches of the benchmark images."""
    x = torch.from_numpy(np.load(prepare_data(shared, cache))).reshape(-1, 1, 28, 28)
    return reference_dataset(x[: batch * steps])


def preset_config(name: str) -> vaekit.Config:
    """A preset's model, objective, optimiser and batch size, for one epoch on the CPU. The
    step runs on the benchmark's binarised images (its cost does not depend on the pixels),
    so only presets whose model takes such images alone qualify: Bernoulli, no labels."""
    try:
        config = load_config(name)
    except ConfigError as exc:
        raise SystemExit(f"--preset: {exc}") from None
    if config.model.likelihood != "bernoulli" or config.model.kind == "cvae":
        raise SystemExit(
            f"--preset {name}: profiles run on binarised images without labels; this preset's "
            f"model ({config.model.kind}, {config.model.likelihood}) needs other data"
        )
    config.train.epochs, config.train.max_steps, config.train.max_minutes = 1, None, None
    config.train.device = "cpu"
    config.train.report = config.train.tensorboard = False
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/vaekit-bench"))
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--preset", help="profile this preset's step (default: the reference)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="timed runs without the profiler (an A/B takes the best)",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="only the timings without the profiler"
    )
    parser.add_argument(
        "--callers",
        default="",
        help="comma-separated operators (aten::copy_,aten::add): their calls and self time per "
        "step, by the operators that called them",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        raise SystemExit(f"--repeat must be >= 1, got {args.repeat}")
    torch.set_num_threads(args.threads)
    make_config = (lambda: preset_config(args.preset)) if args.preset else reference_config
    data = dataset(args.steps, make_config().train.batch_size, args.shared, args.cache)
    quiet = lambda line: None  # noqa: E731
    vaekit.train(make_config(), dataset=data, log=quiet)  # warm-up: allocator, kernels
    for _ in range(args.repeat):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        vaekit.train(make_config(), dataset=data, log=quiet)
        after, seconds = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
        print(
            f"without profiler: {seconds / args.steps * 1e3:.2f} ms per step (setup included), "
            f"{(after.ru_minflt - before.ru_minflt) / args.steps:.1f} minor page faults and "
            f"{(after.ru_stime - before.ru_stime) / args.steps * 1e3:.3f} ms kernel time per step"
        )
    if args.no_profile:
        return
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        vaekit.train(make_config(), dataset=data, log=quiet)
        wall = time.perf_counter() - start
    events = [e for e in prof.key_averages() if not e.key.startswith(("Optimizer.", "autograd"))]
    per_step = lambda us: us / 1e3 / args.steps  # noqa: E731  microseconds total -> ms per step
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if not event.key.startswith("aten::"):
            continue
        name = next((c for c, keys in CATEGORIES.items() if event.key in keys), "other ops")
        totals[name] += event.self_cpu_time_total
    wall_ms = wall * 1e3 / args.steps
    print(f"with profiler: {wall_ms:.2f} ms per step, {args.threads} threads")
    print("| category | ms per step | share of the step |")
    print("|---|---|---|")
    for name, us in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {per_step(us):.2f} | {100 * per_step(us) / wall_ms:.0f}% |")
    rest = wall_ms - sum(per_step(us) for us in totals.values())
    label = "Python, autograd engine, dispatch (the rest)"
    print(f"| {label} | {rest:.2f} | {100 * rest / wall_ms:.0f}% |")
    print()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    if args.callers:
        print_callers(prof.events(), set(args.callers.split(",")), args.steps)


def print_callers(events, names: set[str], steps: int) -> None:
    """Calls per step and self microseconds per step of the operators ``names``, split by
    the chain of operators that called them (innermost first, and the outermost)."""
    calls: dict[str, int] = defaultdict(int)
    self_us: dict[str, float] = defaultdict(float)
    for event in events:
        if event.name not in names:
            continue
        chain, parent = [], event.cpu_parent
        while parent is not None:
            chain.append(parent.name)
            parent = parent.cpu_parent
        where = " < ".join(chain[:3]) + (f" ... {chain[-1]}" if len(chain) > 3 else "")
        key = f"{event.name} <- {where or '(the step)'}"
        calls[key] += 1
        self_us[key] += event.self_cpu_time_total
    print("| operator <- callers | calls per step | self us per step |")
    print("|---|---|---|")
    for key in sorted(calls, key=lambda k: -self_us[k]):
        print(f"| {key} | {calls[key] / steps:.1f} | {self_us[key] / steps:.0f} |")


if __name__ == "__main__":
    main()
