"""The fastest plain loop a skilled user writes: the same layers, the bound written out,
``Adam(fused=True)``, batches cut from one in-memory tensor by a fresh permutation, no metrics.

It is the bar `vaekit train` is measured against: everything vaekit adds per step (its
distribution objects, metric sums, the NaN guard, labels, interrupt and checkpoint checks)
shows as the gap between the two. Three shapes (``--model``): the reference model on the
ELBO (BCE + closed-form KL), the IWAE preset's (K = 5) and the two-layer preset's (K = 5).
"""

from __future__ import annotations

import itertools
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from contestants.common import BATCH, HIDDEN, LATENT, LR, K, load, parse_args, report

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def mlp(sizes: list[int], act: type[nn.Module], last_act: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or last_act:
            layers.append(act())
    return nn.Sequential(*layers)


def log_normal(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(log_var))) summed over the last dimension."""
    return -0.5 * ((z - mu).square() * torch.exp(-log_var) + log_var).sum(-1) - (
        z.shape[-1] * HALF_LOG_2PI
    )


def log_std_normal(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * z.square().sum(-1) - z.shape[-1] * HALF_LOG_2PI


def bernoulli(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
    return -bce.sum(-1)


def reference() -> tuple[list[nn.Module], callable]:
    h1, h2 = HIDDEN
    encoder = mlp([784, h1, h2, 2 * LATENT], nn.ReLU)
    decoder = mlp([LATENT, h2, h1, 784], nn.ReLU)

    def loss(xb: torch.Tensor) -> torch.Tensor:
        mu, log_var = encoder(xb).chunk(2, dim=-1)  # [B, m] each
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(-1)
        return (kl - bernoulli(decoder(z), xb)).mean()

    return [encoder, decoder], loss


def iwae5() -> tuple[list[nn.Module], callable]:
    h1, h2, m = *HIDDEN, 32
    encoder = mlp([784, h1, h2, 2 * m], nn.ReLU)
    decoder = mlp([m, h2, h1, 784], nn.ReLU)

    def loss(xb: torch.Tensor) -> torch.Tensor:
        mu, log_var = encoder(xb).chunk(2, dim=-1)  # [B, m] each
        z = mu + torch.exp(0.5 * log_var) * torch.randn(K, *mu.shape)  # [K, B, m]
        log_w = bernoulli(decoder(z), xb) + log_std_normal(z) - log_normal(z, mu, log_var)
        return -(torch.logsumexp(log_w, dim=0) - math.log(K)).mean()

    return [encoder, decoder], loss


def hvae() -> tuple[list[nn.Module], callable]:
    """Burda et al.'s two stochastic layers (100, 50), tanh, bottom-up inference."""
    q1 = mlp([784, 200, 200, 200], nn.Tanh)  # -> mu, log_var of z_1 (100)
    q2 = mlp([100, 100, 100, 100], nn.Tanh)  # -> mu, log_var of z_2 (50)
    p1 = mlp([50, 100, 100, 200], nn.Tanh)  # p(z_1|z_2)
    px = mlp([100, 200, 200, 784], nn.Tanh)  # p(x|z_1), logits

    def loss(xb: torch.Tensor) -> torch.Tensor:
        mu1, lv1 = q1(xb).chunk(2, dim=-1)  # [B, 100]
        z1 = mu1 + torch.exp(0.5 * lv1) * torch.randn(K, *mu1.shape)  # [K, B, 100]
        mu2, lv2 = q2(z1).chunk(2, dim=-1)  # [K, B, 50]
        z2 = mu2 + torch.exp(0.5 * lv2) * torch.randn_like(mu2)
        mp, lvp = p1(z2).chunk(2, dim=-1)
        log_p = bernoulli(px(z1), xb) + log_normal(z1, mp, lvp) + log_std_normal(z2)
        log_q = log_normal(z1, mu1, lv1) + log_normal(z2, mu2, lv2)
        return -(torch.logsumexp(log_p - log_q, dim=0) - math.log(K)).mean()

    return [q1, q2, p1, px], loss


BUILDERS = {"reference": reference, "iwae5": iwae5, "hvae": hvae}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x = torch.from_numpy(load(args.data))
    modules, loss_of = BUILDERS[args.model]()
    params = [p for module in modules for p in module.parameters()]
    optimizer = torch.optim.Adam(params, lr=LR, fused=True)
    start = time.perf_counter()
    seen = 0
    for _ in range(args.epochs):
        order = torch.randperm(x.shape[0])
        for begin in range(0, x.shape[0], BATCH):
            xb = x[order[begin : begin + BATCH]]  # [B, 784]
            loss = loss_of(xb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += xb.shape[0]
    report(f"plain fused-Adam loop ({args.model})", seen, time.perf_counter() - start)


if __name__ == "__main__":
    main()
