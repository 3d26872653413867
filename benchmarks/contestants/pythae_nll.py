"""pythae's ``get_nll`` (importance-sampled nll, one image at a time) on the reference model.

Prints images x samples per second; run in the peers' venv (see bench_train_speed.py):

    cd benchmarks && ../.venv-peers/bin/python contestants/pythae_nll.py \
        --data /tmp/vaekit-bench/fashion-mnist-train-binarized-seed0.npy
"""

from __future__ import annotations

import json
import time

import torch
from pythae.models import VAE, VAEConfig

from contestants.common import LATENT, load, parse_args
from contestants.pythae_train import Decoder, Encoder

IMAGES, SAMPLES, BATCH = 20, 1000, 100


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x = torch.from_numpy(load(args.data)[:IMAGES]).reshape(-1, 1, 28, 28)
    model = VAE(
        VAEConfig(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce"),
        encoder=Encoder(),
        decoder=Decoder(),
    ).eval()
    start = time.perf_counter()
    with torch.no_grad():
        model.get_nll(x, n_samples=SAMPLES, batch_size=BATCH)
    seconds = time.perf_counter() - start
    rate = IMAGES * SAMPLES / seconds
    print(json.dumps({"name": "pythae get_nll", "images_x_samples_per_s": rate, "s": seconds}))


if __name__ == "__main__":
    main()
