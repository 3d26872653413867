"""The fastest plain loop a skilled user writes: the same layers, BCE + closed-form KL,
``Adam(fused=True)``, batches cut from one in-memory tensor by a fresh permutation, no metrics.

It is the bar `vaekit train` is measured against: everything vaekit adds per step (its
distribution objects, metric sums, the NaN guard's gradient norm, labels, interrupt and
checkpoint checks) shows as the gap between the two.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from contestants.common import BATCH, HIDDEN, LATENT, LR, load, parse_args, report


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x = torch.from_numpy(load(args.data))
    h1, h2 = HIDDEN
    encoder = nn.Sequential(
        nn.Linear(784, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 2 * LATENT)
    )
    decoder = nn.Sequential(
        nn.Linear(LATENT, h2), nn.ReLU(), nn.Linear(h2, h1), nn.ReLU(), nn.Linear(h1, 784)
    )
    params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.Adam(params, lr=LR, fused=True)
    start = time.perf_counter()
    order = torch.randperm(x.shape[0])
    seen = 0
    for begin in range(0, x.shape[0], BATCH):
        xb = x[order[begin : begin + BATCH]]  # [B, 784]
        mu, log_var = encoder(xb).chunk(2, dim=-1)  # [B, m] each
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        logits = decoder(z)
        bce = F.binary_cross_entropy_with_logits(logits, xb, reduction="none").sum(-1)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(-1)
        loss = (bce + kl).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += xb.shape[0]
    report("plain fused-Adam loop (one tensor, no metrics)", seen, time.perf_counter() - start)


if __name__ == "__main__":
    main()
