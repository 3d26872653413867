"""Throughput of the importance-sampled log-likelihood (``vaekit.evaluation.importance``).

Measures images x samples per second on MNIST test images (28x28, 256 grey levels,
dequantised) for the MLP VAE (hidden 512,256, latent 16, learned per-pixel Gaussian decoder)
and the conv VAE, batched over examples and chunked over samples (chunk from the memory
budget), against a per-image Python loop given the same memory per decoder call. The
weights are freshly initialised: for these models the speed does not depend on them (a
VampPrior's does: see ``--narrow-posteriors`` below).
The time for the full 10,000-image test set at K = 5000 is extrapolated linearly from a
subset (the cost is exactly proportional to images x samples).

The roofline, measured in the same run for the MLP: the decoder's GEMMs on the very row count
of one decoder call (chunk x batch latents), timed back to back (best of 5 blocks), give the
images x samples per second that no evaluation can beat without less arithmetic (the encoder
runs once per image: 1/K of the work, ignored). ``--likelihood bernoulli`` on binarised images
is the reference model. ``--preset mnist-record-1h`` times the likelihood record's model
instead (latent 40, VampPrior of 500 components, Bernoulli), ``--run DIR`` a trained run's;
``--narrow-posteriors`` gives a fresh model's posteriors a trained one's shape (standard
deviations near 0.05, means spread over units), so that, as after training, most of a
VampPrior's components lie far below the nearest one for every draw. ``--compile`` runs the
chunks under ``torch.compile`` as a long ``vaekit evaluate`` does (``CompiledChunk``; its
compile time, reported apart, is paid once per model and shape). Run:

    PYTHONPATH=src python benchmarks/bench_eval.py [--images 200] [--num-samples 5000]
    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/bench_eval.py --preset mnist-record-1h \
        --narrow-posteriors --images 100 --num-samples 5000 --loop-images 0 [--compile]

Results are recorded in benchmarks/notes/evaluation-throughput.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch

import vaekit
from timing import best_seconds_per_call
from vaekit.config import load_config
from vaekit.evaluation.chunking import choose_chunk_size
from vaekit.evaluation.importance import CompiledChunk, log_likelihood
from vaekit.models import VAE, Model, VAEConfig, build_model
from vaekit.support.runtime import keep_freed_memory

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def mnist_test_images(count: int, binary: bool) -> torch.Tensor:
    """The first ``count`` MNIST test images ``[count, 1, 28, 28]``: dequantised to [0, 1], or
    one seeded Bernoulli draw of each pixel (``binary``)."""
    path = DATASETS / "mnist" / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)[:count]
    generator = torch.Generator().manual_seed(0)
    v = torch.from_numpy(images.copy()).float()
    if binary:
        return torch.bernoulli(v / 255.0, generator=generator)
    return (v + torch.rand(v.shape, generator=generator)) / 256.0


def build(network: str, likelihood: str) -> VAE:
    torch.manual_seed(0)
    config = VAEConfig(
        latent_dim=16,
        network=network,
        hidden_dims=[512, 256],
        likelihood=likelihood,
        data_shape=[1, 28, 28],
    )
    return VAE(config).eval()


def build_preset(name: str) -> Model:
    """The model of preset ``name`` for 28x28 MNIST images, freshly initialised (seed 0)."""
    torch.manual_seed(0)
    config = load_config(name).model
    config.data_shape = [1, 28, 28]
    return build_model(config).eval()


@torch.no_grad()
def narrow_posteriors(model: Model) -> None:
    """Give a fresh model's diagonal posteriors a trained one's shape: log-variance -6
    (standard deviation 0.05) and means 20 times as spread. The arithmetic of an evaluation
    is unchanged; what changes is where its mixture prior's components lie relative to the
    draws (far, as after training)."""
    head = model.posterior.head
    m = model.latent_dim
    head.weight[:m] *= 20.0
    head.bias[:m] *= 20.0
    head.weight[m:] = 0.0
    head.bias[m:] = -6.0


def decoder_roofline(model: Model, rows: int, repeats: int = 20) -> float:
    """Images x samples per second of the MLP decoder's GEMMs alone on ``rows`` latents."""
    layers = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    inputs = [torch.randn(rows, layer.in_features) for layer in layers]
    weights = [layer.weight.detach().T.contiguous() for layer in layers]

    def call() -> None:
        for h, w in zip(inputs, weights, strict=True):
            torch.mm(h, w)

    best = best_seconds_per_call(call, calls_per_block=repeats)
    return rows / best


def measure(
    model: Model,
    x: torch.Tensor,
    num_samples: int,
    batch_size: int,
    chunk: int,
    compiled: CompiledChunk | None = None,
) -> float:
    """Seconds to estimate log p(x) for all of ``x`` with K = ``num_samples``, eager
    (``model.log_likelihood``) or with ``compiled`` chunks."""
    start = time.perf_counter()
    for i in range(0, x.shape[0], batch_size):
        log_likelihood(model, x[i : i + batch_size], num_samples, chunk, compiled=compiled)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="test images timed")
    parser.add_argument("--num-samples", type=int, default=5000, help="K")
    parser.add_argument("--batch-size", type=int, default=100, help="examples per batch")
    parser.add_argument("--memory-mb", type=float, default=32, help="memory budget (MiB)")
    parser.add_argument("--networks", default="mlp,conv", help="comma-separated networks")
    parser.add_argument("--loop-images", type=int, default=4, help="images for the loop baseline")
    parser.add_argument(
        "--likelihood", default="gaussian-learned", help="gaussian-learned or bernoulli"
    )
    parser.add_argument("--preset", help="time this preset's model (e.g. mnist-record-1h)")
    parser.add_argument("--run", help="time this trained run's model")
    parser.add_argument(
        "--narrow-posteriors", action="store_true", help="trained-shaped posteriors"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="run the chunks under torch.compile (its compile time reported apart)",
    )
    args = parser.parse_args()
    keep_freed_memory()  # as `vaekit evaluate` does
    if args.run:
        models = {args.run: vaekit.load(args.run).eval()}
    elif args.preset:
        models = {args.preset: build_preset(args.preset)}
    else:
        models = {n: build(n, args.likelihood) for n in args.networks.split(",")}
    binary = any(getattr(m.config, "likelihood", "") == "bernoulli" for m in models.values())
    x = mnist_test_images(args.images, binary=binary)
    results = {
        "torch_threads": torch.get_num_threads(),
        "images": args.images,
        "K": args.num_samples,
        "likelihood": getattr(next(iter(models.values())).config, "likelihood", None),
        "narrow_posteriors": args.narrow_posteriors,
        "compile": args.compile,
    }
    for name, model in models.items():
        if args.narrow_posteriors:
            narrow_posteriors(model)
        chunk = choose_chunk_size(model, args.batch_size, args.num_samples, args.memory_mb)
        measure(model, x[:2], 10, 2, 10)  # warm-up
        compiled, compile_seconds = None, None
        if args.compile:
            compiled = CompiledChunk.for_model(model)
            started = time.perf_counter()  # the compile, at the timed calls' shape
            measure(model, x[: args.batch_size], chunk, args.batch_size, chunk, compiled)
            compile_seconds = round(time.perf_counter() - started, 1)
        seconds = measure(model, x, args.num_samples, args.batch_size, chunk, compiled)
        rate = args.images * args.num_samples / seconds
        results[name] = {
            "chunk_size": chunk,
            "memory_mb": args.memory_mb,
            "batch_size": args.batch_size,
            "seconds": round(seconds, 2),
            "compile_seconds": compile_seconds,
            "compiled_fell_back": None if compiled is None else compiled.failed,
            "images_x_samples_per_s": round(rate),
            "extrapolated_s_for_10000_images_K5000": round(10000 * 5000 / rate),
        }
        if args.loop_images > 0:
            # the loop gets the same memory per decoder call: a larger chunk for one image
            loop_chunk = choose_chunk_size(model, 1, args.num_samples, args.memory_mb)
            loop = measure(model, x[: args.loop_images], args.num_samples, 1, loop_chunk)
            loop_rate = args.loop_images * args.num_samples / loop
            results[name] |= {
                "per_image_loop_chunk_size": loop_chunk,
                "per_image_loop_images_x_samples_per_s": round(loop_rate),
                "speedup_over_per_image_loop": round(rate / loop_rate, 2),
            }
        if getattr(model.config, "network", None) == "mlp":
            roof = decoder_roofline(model, chunk * min(args.batch_size, args.images))
            results[name] |= {
                "roofline_images_x_samples_per_s": round(roof),
                "roofline_s_for_10000_images_K5000": round(10000 * 5000 / roof),
                "time_over_roofline_time": round(roof / rate, 3),
            }
        print(name, json.dumps(results[name]), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
