"""vaekit's default training path (``vaekit.train``) on the reference model.

The throughput is the one vaekit itself records in ``metrics.jsonl`` (examples/s over the
training epoch, validation excluded), i.e. exactly what a user of ``vaekit train`` gets.
"""

from __future__ import annotations

import torch

import vaekit
from contestants.common import BATCH, HIDDEN, LATENT, LR, load, parse_args, report
from vaekit.data import Dataset, Split
from vaekit.data.transforms import Transform


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    x = torch.from_numpy(load(args.data)).reshape(-1, 1, 28, 28)
    empty = Split(x[:0])
    dataset = Dataset(
        name="fashion-mnist-binarized-static (benchmark copy)",
        shape=(1, 28, 28),
        train=Split(x),
        val=empty,
        test=empty,
        transform=Transform(),
        support="binary",
        default_likelihood="bernoulli",
    )
    config = vaekit.Config()
    config.model.network = "mlp"
    config.model.hidden_dims = list(HIDDEN)
    config.model.latent_dim = LATENT
    config.model.likelihood = "bernoulli"
    config.optim.lr = LR
    config.train.batch_size = BATCH
    config.train.epochs = 1
    config.train.seed = args.seed
    config.train.device = "cpu"
    result = vaekit.train(config, dataset=dataset, log=lambda line: None)
    rate = result.history[-1]["examples_per_s"]
    report("vaekit train", x.shape[0], x.shape[0] / rate)


if __name__ == "__main__":
    main()
