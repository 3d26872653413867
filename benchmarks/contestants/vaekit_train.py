"""vaekit's default training path (``vaekit.train``) on the reference model.

The throughput is the one vaekit itself records in ``metrics.jsonl`` (examples/s over the
training epochs, validation excluded; over several epochs, all images over all epochs' training
seconds, so a compile's time counts), i.e. exactly what a user of ``vaekit train`` gets.
``--compile`` sets train.compile (left as the tree's default when "auto").
"""

from __future__ import annotations

import torch

import vaekit
from contestants.common import BATCH, HIDDEN, LATENT, LR, K, load, parse_args, report
from vaekit.data import Dataset, Split
from vaekit.data.transforms import Transform


def reference_dataset(x: torch.Tensor) -> Dataset:
    """The benchmark images ``[N, 1, 28, 28]`` (binary) as a vaekit dataset, all for training."""
    empty = Split(x[:0])
    return Dataset(
        name="fashion-mnist-binarized-static (benchmark copy)",
        shape=(1, 28, 28),
        train=Split(x),
        val=empty,
        test=empty,
        transform=Transform(),
        support="binary",
        default_likelihood="bernoulli",
    )


def reference_config(seed: int = 0, model: str = "reference") -> vaekit.Config:
    """The benchmark model (contestants/common.py) and optimiser, one epoch, on the CPU."""
    if model == "hvae":  # the HVAEConfig defaults are Burda et al.'s two-layer architecture
        config = vaekit.Config.from_dict({"model": {"kind": "hvae"}})
        config.objective.name = "iwae"
        config.objective.num_importance_samples = K
    else:
        config = vaekit.Config()
        config.model.network = "mlp"
        config.model.hidden_dims = list(HIDDEN)
        config.model.latent_dim = LATENT
        if model == "iwae5":
            config.model.latent_dim = 32
            config.objective.name = "iwae"
            config.objective.num_importance_samples = K
    config.model.likelihood = "bernoulli"
    config.optim.lr = LR
    config.train.batch_size = BATCH
    config.train.epochs = 1
    config.train.seed = seed
    config.train.device = "cpu"
    return config


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    x = torch.from_numpy(load(args.data)).reshape(-1, 1, 28, 28)
    config = reference_config(args.seed, args.model)
    config.train.epochs = args.epochs
    if args.compile != "auto":  # "auto" is the default; an older tree has no such value
        config.train.compile = args.compile == "true"
    lines: list[str] = []
    result = vaekit.train(config, dataset=reference_dataset(x), log=lines.append)
    seconds = sum(x.shape[0] / epoch["examples_per_s"] for epoch in result.history)
    decided = [line for line in lines if line.startswith(("compiled:", "eager:"))]
    name = f"vaekit train ({args.model}, compile {args.compile})"
    report(name, x.shape[0] * args.epochs, seconds, decided[0] if decided else None)


if __name__ == "__main__":
    main()
