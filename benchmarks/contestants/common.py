"""What every training-speed contestant shares: the model size, the data file, the report line.

The reference model of the speed benchmarks: MLP encoder 784-512-256 -> 16-d diagonal
Gaussian, decoder mirrored, ReLU, Bernoulli likelihood (BCE with logits), Adam lr 1e-3,
batch 128, one epoch over the 60,000 statically binarised Fashion-MNIST training images.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys

import numpy as np

HIDDEN = (512, 256)
LATENT = 16
BATCH = 128
LR = 1e-3
K = 5  # importance samples of the iwae5 and hvae models
MODELS = ("reference", "iwae5", "hvae")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="float32 .npy [N, 784] of 0/1 pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="reference",
        help="reference: the model above, ELBO; iwae5: configs/mnist-nll.toml's shapes "
        "(latent 32) on the IWAE bound with K = 5; hvae: configs/mnist-hvae.toml's two "
        "stochastic layers (Burda et al. 2015, tanh) on the IWAE bound with K = 5",
    )
    parser.add_argument("--epochs", type=int, default=1, help="passes over the images")
    parser.add_argument(
        "--compile",
        choices=["auto", "true", "false"],
        default="auto",
        help="vaekit's train.compile (the other contestants ignore it)",
    )
    return parser.parse_args()


def load(path: str) -> np.ndarray:
    x = np.load(path)
    assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == 784, x.shape
    return x


def report(name: str, images: int, seconds: float, note: str | None = None) -> None:
    """Print the one JSON line the driver reads: throughput and peak resident memory (and a
    ``note``, e.g. vaekit's train.compile decision)."""
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    line = {
        "name": name,
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "peak_rss_mib": peak_kib / 1024,
    }
    if note is not None:
        line["note"] = note
    print(json.dumps(line))
    sys.stdout.flush()
