"""The plain PyTorch loop users write: DataLoader over a TensorDataset, nn.Sequential MLPs."""

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
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x), batch_size=BATCH, shuffle=True
    )
    h1, h2 = HIDDEN
    encoder = nn.Sequential(
        nn.Linear(784, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 2 * LATENT)
    )
    decoder = nn.Sequential(
        nn.Linear(LATENT, h2), nn.ReLU(), nn.Linear(h2, h1), nn.ReLU(), nn.Linear(h1, 784)
    )
    params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.Adam(params, lr=LR)
    start = time.perf_counter()
    seen = 0
    for (xb,) in loader:
        mu, log_var = encoder(xb).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        logits = decoder(z)
        bce = F.binary_cross_entropy_with_logits(logits, xb, reduction="none").sum(-1)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(-1)
        loss = (bce + kl).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += xb.shape[0]
    report("plain PyTorch loop (DataLoader)", seen, time.perf_counter() - start)


if __name__ == "__main__":
    main()
