"""Validation metrics: per-example means in nats over the validation split, across ranks."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

import torch

from vaekit.config import Config
from vaekit.data import Dataset
from vaekit.data.datasets import FixedSplit
from vaekit.models import Model
from vaekit.training import distributed


@torch.no_grad()
def validation_metrics(
    model: Model, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]]
) -> dict[str, float]:
    """Means of the model's per-example metrics in nats (the ELBO and its terms for a model
    with a likelihood, log p(x|f(x)) for an AE) over the examples of ``batches``: pairs of
    model-ready inputs ``[b, *shape]`` and their labels ``[b]`` (or None)."""
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    for xb, yb in batches:
        count += xb.shape[0]
        values = model.per_example_metrics(xb, y=yb)
        for key, v in values.items():
            sums[key] = sums.get(key, 0.0) + float(v.sum())
    return {key: total / max(1, count) for key, total in sums.items()}


class Validation:
    """The validation split (streamed if it is on disk) with its labels, and how to score a
    model on it during training."""

    def __init__(
        self, dataset: Dataset, config: Config, ctx: distributed.DistContext, device: torch.device
    ) -> None:
        self.config, self.ctx, self.device = config, ctx, device
        self.split = FixedSplit(dataset, "val", seed=config.data.split_seed)
        self.labels = dataset.split("val").y  # labels travel with their batches (or None)
        if config.train.patience is not None and len(self.split) == 0:
            raise ValueError("train.patience needs a validation split (data.val_fraction > 0)")
        if config.train.keep == "best" and len(self.split) == 0:
            raise ValueError("train.keep = 'best' needs a validation split (data.val_fraction > 0)")

    def __len__(self) -> int:
        return len(self.split)

    @torch.no_grad()
    def __call__(
        self, model: Model, averaged: Callable[[], AbstractContextManager]
    ) -> dict[str, float]:
        """Validation metrics (nats per example) over this rank's shard, summed over ranks,
        of ``model`` inside ``averaged()`` (the Polyak average, if kept); leaves it in train
        mode. A fixed seed for the reparameterisation noise makes them a function of the
        weights alone (comparable across epochs) and leaves the training RNG untouched."""
        if len(self.split) == 0:
            return {}
        lo, hi = self.ctx.shard(len(self.split))
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        size = self.config.train.eval_batch_size
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.config.train.seed + self.ctx.rank)
            batches = self.split.batches(size, lo, hi)
            labels = (  # the rows' labels, in the same batches
                (self.labels[b : min(b + size, hi)] for b in range(lo, hi, size))
                if self.labels is not None
                else itertools.repeat(None)
            )
            pairs = (
                (x.to(self.device), None if y is None else y.to(self.device))
                for x, y in zip(batches, labels, strict=False)
            )
            with averaged():
                means = validation_metrics(model, pairs)
        model.train()
        names = sorted(means)
        sums = torch.tensor([means[k] * (hi - lo) for k in names] + [float(hi - lo)])
        sums = distributed.all_reduce_sum(sums.double().to(self.device), self.ctx).cpu().tolist()
        return {k: s / sums[-1] for k, s in zip(names, sums[:-1], strict=True)}
