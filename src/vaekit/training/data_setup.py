"""The dataset as training sees it, and the model-config fields that come from it."""

from __future__ import annotations

from collections.abc import Callable

from vaekit.config import Config
from vaekit.data import Dataset, load_dataset
from vaekit.data_defaults import DataFacts, describe, resolve_auto
from vaekit.distributions.likelihoods import LIKELIHOOD_OPTIONS, is_discrete
from vaekit.models import MODELS
from vaekit.support.spelling import spell_value


def resolve_model_config(
    config: Config, dataset: Dataset, log: Callable[[str], None] | None = None
) -> Dataset:
    """Fill the config's data-dependent fields (its ``"auto"`` settings, ``data_defaults``,
    said in one line to ``log`` for a table; the model's shape and likelihood) and refuse
    dishonest likelihoods.

    Returns the dataset as the likelihood must see it: a discretised likelihood gets the
    data's levels without dequantisation noise (``Dataset.as_levels``), and its bin width
    comes from their number (``model.data_levels``)."""
    model = config.model
    kinds = [column.kind for column in dataset.schema or []]
    facts = DataFacts(
        table=dataset.support == "table",
        train_rows=len(dataset.train),
        gaussian_columns=sum(kind in ("real", "positive") for kind in kinds),
    )
    line = describe(resolve_auto(config, facts, MODELS[model.kind].objectives), facts)
    if line is not None and log is not None:
        log(line)
    model.data_shape = list(dataset.shape)
    model.fill_from_data(dataset.train.y)  # e.g. a conditional model's number of classes
    if model.likelihood == "auto":
        model.likelihood = dataset.default_likelihood
    if model.likelihood == "gaussian-lowrank" and dataset.support == "table":
        # A mixed table's low-rank Gaussian is the tabular likelihood's joint head over its
        # real and positive columns; the other columns keep their own likelihoods.
        model.likelihood = "tabular"
        model.rank = 1 if model.rank is None else model.rank
    if model.rank is not None and "rank" not in LIKELIHOOD_OPTIONS.get(model.likelihood, {}):
        raise ValueError(
            f"{spell_value('--rank', 'model.rank', model.rank)}: only gaussian-lowrank and the "
            f"tabular likelihood of a mixed table read a rank, not {model.likelihood}"
        )
    if model.likelihood == "bernoulli" and dataset.support != "binary":
        raise ValueError(
            f"{spell_value('--likelihood', 'model.likelihood', 'bernoulli')} needs binary "
            f"data, but {dataset.name!r} has support "
            f"{dataset.support!r}: use a binarised variant or a Gaussian likelihood"
        )
    if (model.likelihood == "tabular") != (dataset.support == "table"):
        raise ValueError(
            f"{spell_value('--likelihood', 'model.likelihood', model.likelihood)}: "
            + (
                f"{dataset.name!r} is a mixed-type table, which only the tabular likelihood "
                "models (its cells are of several types, some missing)"
                if dataset.support == "table"
                else f"the tabular likelihood models mixed-type tables; {dataset.name!r} is not one"
            )
        )
    if dataset.schema is not None:
        model.columns = dataset.schema
    if is_discrete(model.likelihood):  # binary data is already its two levels
        dataset = dataset.as_levels(f"--likelihood {model.likelihood}")
        if "data_levels" in LIKELIHOOD_OPTIONS.get(model.likelihood, {}).values():
            model.data_levels = dataset.num_levels
    return dataset


def training_data(
    config: Config, dataset: Dataset | None, log: Callable[[str], None] | None = None
) -> Dataset:
    """``dataset``, or the one ``config.data`` names, as the model must see it; fills the
    config from it (``resolve_model_config``, which says the table defaults to ``log``)."""
    if dataset is None:
        d = config.data
        dataset = load_dataset(
            d.name,
            d.data_dir,
            d.val_fraction,
            d.split_seed,
            image_size=d.image_size,
            label_column=d.label_column,
            columns=d.columns,
        )
    return resolve_model_config(config, dataset, log)


def batches_per_epoch(n: int, batch_size: int, world_size: int) -> int:
    """Optimiser steps in one pass over ``n`` training examples in global batches of
    ``batch_size``. A last partial batch smaller than the number of ranks is left out: it
    would leave a rank empty."""
    count = n // batch_size + (1 if n % batch_size >= world_size else 0)
    if count == 0:
        raise ValueError(f"train.batch_size {batch_size}: the training split has only {n} examples")
    return count
