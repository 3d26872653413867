"""What vaekit's training step costs beyond the arithmetic: one process, alternating blocks.

Three ways to take a step on the same model object (the reference model of
contestants/common.py) and the same batches, timed in alternating blocks of ``--block``
steps so that the machine's drift hits them alike:

* ``plain``: the step written out (encoder, reparameterisation, BCE + closed-form KL,
  ``Adam(fused=True)``), nothing else;
* ``vaekit``: ``Trainer.step``, what ``vaekit train`` runs per batch (the objective and its
  metrics, the NaN/inf guard, the metric sums, the interrupt and checkpoint checks);
* ``vaekit, no guard``: the same with the NaN/inf guard's look at the gradients switched off,
  so the guard's own cost is the difference to ``vaekit``.

Prints ms per step (median over blocks) and the median of the per-pair time ratios.

    .venv/bin/python benchmarks/bench_step_overheads.py --blocks 60

``--compiled PRESET`` instead times ``Trainer.step`` of a preset's model (as
profile_train_step.py builds it, KL warm-up off) eager against under ``torch.compile``, in
alternating blocks after one compile, and prints the compile's seconds:

    .venv/bin/python benchmarks/bench_step_overheads.py --compiled mnist-deep --blocks 8 --block 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_train_speed import ROOT, prepare_data  # noqa: E402
from contestants.common import BATCH, LR  # noqa: E402
from contestants.vaekit_train import reference_config, reference_dataset  # noqa: E402
from vaekit.training import loop as training_loop  # noqa: E402
from vaekit.training.loop import Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=60)
    parser.add_argument("--block", type=int, default=30, help="steps per timed block")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/vaekit-bench"))
    parser.add_argument("--compiled", metavar="PRESET", help="eager against compiled steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.compiled:
        compiled_against_eager(args)
        return
    pixels = np.load(prepare_data(args.shared, args.cache))
    x = torch.from_numpy(pixels).reshape(-1, 1, 28, 28)
    trainer = Trainer(reference_config(), None, False, reference_dataset(x), lambda m: None, None)
    trainer.clock.start_epoch(0)  # what _train_epochs does
    model = trainer.model
    plain_optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    n = x.shape[0] - BATCH

    def batch(i: int) -> torch.Tensor:
        start = i * BATCH % n
        return x[start : start + BATCH]

    def plain(i: int) -> None:
        xb = batch(i)
        mu, log_var = model.posterior.head(model.encoder(xb)).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        logits = model.decoder(z)
        bce = F.binary_cross_entropy_with_logits(logits, xb, reduction="none").sum((1, 2, 3))
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(-1)
        loss = (bce + kl).mean()
        plain_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        plain_optimizer.step()

    def vaekit(i: int) -> None:
        trainer.step(batch(i), None, BATCH)

    real_check = training_loop.check_gradients

    def vaekit_no_guard(i: int) -> None:
        training_loop.check_gradients = lambda params, clip, measure: (True, None)
        try:
            trainer.step(batch(i), None, BATCH)
        finally:
            training_loop.check_gradients = real_check

    ways = {"plain": plain, "vaekit": vaekit, "vaekit, no guard": vaekit_no_guard}
    times: dict[str, list[float]] = {name: [] for name in ways}
    names = list(ways)
    step = 0
    for b in range(args.blocks + 2):  # the first two rounds warm up
        for name in names[b % 3 :] + names[: b % 3]:
            start = time.perf_counter()
            for _ in range(args.block):
                ways[name](step)
                step += 1
            if b >= 2:
                times[name].append((time.perf_counter() - start) / args.block * 1e3)
    print(f"| step | ms per step (median of {args.blocks} blocks of {args.block}) | vs plain |")
    print("|---|---|---|")
    for name in names:
        ratio = statistics.median(a / b for a, b in zip(times[name], times["plain"], strict=True))
        print(f"| {name} | {statistics.median(times[name]):.3f} | {ratio:.3f}x |")
    guard = statistics.median(
        a / b for a, b in zip(times["vaekit"], times["vaekit, no guard"], strict=True)
    )
    print(f"NaN/inf guard: vaekit / vaekit without it = {guard:.3f}x (median of pair ratios)")


def compiled_against_eager(args: argparse.Namespace) -> None:
    """``Trainer.step`` of preset ``args.compiled``, eager and compiled, alternating blocks."""
    from profile_train_step import dataset, preset_config

    config = preset_config(args.compiled)
    config.objective.kl_warmup_steps = 0  # auto measures with it too; here: one graph
    config.train.compile = False
    data = dataset(args.block, config.train.batch_size, args.shared, args.cache)
    trainer = Trainer(config, None, False, data, lambda m: None, None)
    trainer.clock.start_epoch(0)
    order = trainer.order.for_epoch(0)
    batches = trainer.dataset.train.epoch_batches(config.train.batch_size, order)
    xs = [trainer.dataset.transform(x, trainer.order.generator) for x, _ in batches]
    eager = trainer.compiler.module
    ways = {"eager": eager, "compiled": torch.compile(eager)}

    def block(name: str, steps: int) -> float:
        trainer.compiler.module = trainer.compiler.eager = ways[name]
        start = time.perf_counter()
        for i in range(steps):
            trainer.step(xs[i % len(xs)], None, xs[0].shape[0])
        return (time.perf_counter() - start) / steps * 1e3

    start = time.perf_counter()
    block("compiled", 1)
    print(f"compile and first step: {time.perf_counter() - start:.0f} s")
    block("compiled", 3)
    block("eager", 3)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for b in range(args.blocks):
        for name in ["eager", "compiled"][:: 1 if b % 2 == 0 else -1]:
            times[name].append(block(name, args.block))
    print(f"| step | ms per step (median of {args.blocks} blocks of {args.block}) |")
    print("|---|---|")
    for name in ways:
        print(f"| {name} | {statistics.median(times[name]):.2f} |")
    pairs = zip(times["eager"], times["compiled"], strict=True)
    print(f"eager / compiled: {statistics.median(a / b for a, b in pairs):.3f}x (median of pairs)")


if __name__ == "__main__":
    main()
