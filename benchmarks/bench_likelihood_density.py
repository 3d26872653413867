"""Time a likelihood's log p(x|z) at the shapes `vaekit evaluate` feeds it (no gradients)
and at a training step's shapes (forward and backward): the elementwise part of evaluation
and training that the decoder's GEMMs do not cover.

A/B of two checkouts: run it once with each checkout's ``src`` on ``PYTHONPATH``, alternated,
on an otherwise idle machine, and compare the best times:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_likelihood_density.py
"""

from __future__ import annotations

import argparse
import time

import torch

from vaekit.distributions import LIKELIHOODS

# (name, options): the plain discretised logistic and the preset mixture of five.
CASES = [
    ("discretized-logistic", {}),
    ("discretized-logistic-mixture", {"num_components": 5}),
]


def best_and_median(fn, repeats: int) -> tuple[float, float]:
    """Milliseconds of ``fn()``: the best and the median of ``repeats`` calls after 3 warm-ups."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[0] * 1e3, times[len(times) // 2] * 1e3


def time_case(name: str, options: dict, repeats: int) -> None:
    """Print the evaluate-shaped and training-shaped times of one likelihood."""
    pixels = 784
    likelihood = LIKELIHOODS[name]((pixels,), num_levels=256, **options)
    # evaluate: 11 draws x 100 images per decoder call (its default 32 MiB blocks)
    x = torch.randint(0, 256, (100, pixels)).float() / 255
    out = torch.randn(11, 100, *likelihood.param_shape)
    with torch.no_grad():
        best, median = best_and_median(lambda: likelihood.log_density(out, x), repeats)
    print(f"{name}: evaluate 11x100 rows: best {best:.2f} ms, median {median:.2f} ms")
    # a training step: K = 5 draws x 128 images, forward and backward
    x_train = torch.randint(0, 256, (128, pixels)).float() / 255
    out_train = torch.randn(5, 128, *likelihood.param_shape, requires_grad=True)
    best, median = best_and_median(
        lambda: likelihood.log_density(out_train, x_train).sum().backward(), repeats
    )
    print(f"{name}: train fwd+bwd 5x128 rows: best {best:.2f} ms, median {median:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per case (>= 1)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    torch.manual_seed(0)
    for name, options in CASES:
        time_case(name, options, args.repeats)


if __name__ == "__main__":
    main()
