"""Write the out-of-distribution benchmark set: the first N test images of an in-distribution
IDX set (label ood = 0) and of an out-of-distribution one (ood = 1), as one ``.npz`` that
``vaekit score --data`` reads (``x`` uint8 [2N, 28, 28], ``ood`` int64 [2N]).

    python benchmarks/make_ood_set.py --in-dir ../shared/datasets/fashion-mnist \\
        --out-dir ../shared/datasets/mnist -n 2000 -o fashion-vs-mnist.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vaekit.data.builtin import FASHION_MNIST, MNIST, find_idx
from vaekit.data.idx import read_idx
from vaekit.data.sources import verify_set

SOURCES = {"fashion-mnist": FASHION_MNIST, "mnist": MNIST}


def test_images(folder: Path, n: int) -> np.ndarray:
    """The first ``n`` test images of the verified MNIST-format set in ``folder``."""
    found = find_idx(folder)
    if found is None:
        raise SystemExit(f"{folder}: no complete MNIST-format set")
    source = next((s for s in SOURCES.values() if _verifies(s, found)), None)
    if source is None:
        raise SystemExit(f"{folder}: neither MNIST nor Fashion-MNIST (checksums differ)")
    return read_idx(found["test_x"], source.hashes["test_x"], (10000, 28, 28))[:n]


def _verifies(source, found) -> bool:
    try:
        verify_set(source, found)
    except ValueError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-dir", type=Path, required=True, help="in-distribution IDX folder")
    parser.add_argument("--out-dir", type=Path, required=True, help="out-of-distribution folder")
    parser.add_argument("-n", type=int, default=2000, help="test images taken from each")
    parser.add_argument("-o", "--output", type=Path, required=True, help=".npz to write")
    args = parser.parse_args()
    x_in, x_out = test_images(args.in_dir, args.n), test_images(args.out_dir, args.n)
    x = np.concatenate([x_in, x_out])
    ood = np.r_[np.zeros(len(x_in), np.int64), np.ones(len(x_out), np.int64)]
    np.savez(args.output, x=x, ood=ood)
    print(f"wrote {args.output}: {len(x_in)} in-distribution + {len(x_out)} out-of-distribution")


if __name__ == "__main__":
    main()
