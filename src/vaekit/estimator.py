"""A scikit-learn-style face for vaekit: ``VAEEstimator().fit(X).transform(X)``.

The estimator wraps the same training engine, models and data handling as the command line
(``vaekit train --data table.npy``): an array ``X [N, D]`` (or images ``[N, C, H, W]``) is
described as the CLI describes a file (binary values get a Bernoulli likelihood, 8-bit
integers are dequantised, other reals are standardised per column with the training rows'
statistics), a validation split is held out, and the model trains quietly in memory. Nothing
is written unless ``run_dir`` is given.

Everything it returns is in the data's own units: codes are posterior means of z, decodes
and samples are values in the units of ``X``, and :meth:`VAEEstimator.score_samples` is the
importance-sampled log p(x) in nats per example of the data as given (the standardisation's
change of variables included), so that a higher score means a more typical row.

A pandas DataFrame with words, booleans or missing cells (or any DataFrame with
``column_types``) is a mixed-type table, read as ``vaekit train --data table.csv`` reads one
(the same inferred schema, overrides, errors and table defaults): one likelihood per column,
missing cells marginalised, and outputs in the DataFrame's own columns, dtypes and category
values (:meth:`VAEEstimator.impute` fills only the missing cells, as ``vaekit impute``). A
DataFrame of finite numbers alone takes the numeric path, as a clean CSV file does.

It follows scikit-learn's conventions (``get_params``/``set_params`` from the constructor's
arguments, fitted attributes ending in ``_``, ``fit`` returns ``self``) and passes the
estimator checks that apply to an unsupervised transformer.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from vaekit.checkpoint import load as load_model
from vaekit.checkpoint import save_model
from vaekit.config import Config, DataConfig, ObjectiveConfig, OptimConfig, TrainConfig
from vaekit.data import transform_from_dict
from vaekit.data.frames import FrameTypes, encode_frame, frame_schema
from vaekit.data.stored import array_dataset
from vaekit.models import MODELS
from vaekit.models.registry import model_config_from_dict
from vaekit.settings import to_dict


class VAEEstimator(TransformerMixin, BaseEstimator):
    """A variational autoencoder as a scikit-learn estimator.

    Parameters
    ----------
    latent_dim:
        m, the dimension of the code z (``transform`` returns ``[N, latent_dim]``).
    hidden_dims:
        widths of the MLP bodies (the decoder mirrors them).
    likelihood:
        p(x|z); ``"auto"`` picks it from the data as the CLI does.
    rank:
        R of one joint low-rank Gaussian over a mixed-type table's real and positive columns
        (``--rank``), or of ``likelihood="gaussian-lowrank"``; None: independent heads;
        ``"auto"``: the table default (``vaekit.data_defaults``), else none.
    model:
        a registered model name (``vaekit.MODELS``) with one latent vector, e.g. ``"vae"``.
    max_steps:
        optimiser steps; None: the trainer's default budget (10 epochs, raised to at least
        ``train.min_steps`` = 2000 steps), as ``vaekit train`` gives it.
    batch_size, lr:
        the optimiser's batch (rows) and Adam learning rate.
    val_fraction:
        share of the rows held out to validate while training (0: none).
    objective:
        the training criterion, a name of ``vaekit train --objective`` (``"elbo"``,
        ``"iwae"``, ...); ``"auto"``: the IWAE bound for a mixed-type table, the ELBO
        otherwise.
    train_samples:
        K of the IWAE bound while training.
    weight_decay:
        Adam's L2 weight decay; None: the table default (1e-4), 0 otherwise.
    num_samples:
        K, importance samples per example for :meth:`score_samples`.
    random_state:
        seed of the split, the initialisation and the training noise.
    run_dir:
        if given, the run directory training writes (as ``vaekit train --out``).
    verbose:
        print the training log.
    column_types:
        a DataFrame's column types that replace the inferred ones, name -> real, positive,
        zero-inflated, count, poisson, ordinal, binary or categorical (as ``--column-type
        NAME=TYPE``; ordinal is never inferred).
    unknown_categories:
        what a category the training table never had becomes in a DataFrame given after
        ``fit`` (``transform``, ``score_samples``, ``impute``): ``"error"`` (a DataError
        naming the cell) or ``"missing"`` (a missing cell, marginalised; a warning says how
        many), as ``--unknown-categories``.
    missing:
        how a table's cells came to be missing, as ``--missing``: ``"at-random"`` or
        ``"self-masking"`` (a real or positive cell more likely missing when its own value
        is high, or low; ``vaekit.distributions.missingness``).

    Fitted attributes for a mixed-type table: ``column_types_`` (name -> type, the schema
    the model was trained with; None for the numeric path), ``frame_types_`` (each column's
    dtype and category values).
    """

    def __init__(
        self,
        latent_dim: int = 8,
        hidden_dims: tuple[int, ...] = (256, 128),
        likelihood: str = "auto",
        rank: int | str | None = "auto",
        model: str = "vae",
        max_steps: int | None = None,
        batch_size: int = 128,
        lr: float = 1e-3,
        val_fraction: float = 0.1,
        objective: str = "auto",
        train_samples: int = 10,
        weight_decay: float | None = None,
        num_samples: int = 100,
        random_state: int = 0,
        run_dir: str | Path | None = None,
        verbose: bool = False,
        column_types: dict[str, str] | None = None,
        unknown_categories: str = "error",
        missing: str = "at-random",
    ) -> None:
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.likelihood = likelihood
        self.rank = rank
        self.model = model
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr
        self.val_fraction = val_fraction
        self.objective = objective
        self.train_samples = train_samples
        self.weight_decay = weight_decay
        self.num_samples = num_samples
        self.random_state = random_state
        self.run_dir = run_dir
        self.verbose = verbose
        self.column_types = column_types
        self.unknown_categories = unknown_categories
        self.missing = missing

    # --- fitting ---------------------------------------------------------------------------

    def _config(self, n_train: int) -> Config:
        """The run's config; ``"auto"`` settings are left for the trainer to resolve from
        the data (``vaekit.data_defaults``), as for ``vaekit train``."""
        if self.model not in MODELS:
            raise ValueError(f"model {self.model!r} is not one of {', '.join(MODELS)}")
        if isinstance(self.rank, str) and self.rank != "auto":
            raise ValueError(f"rank must be an integer, None or 'auto', got {self.rank!r}")
        model = MODELS[self.model].config_class()
        for name, value in (
            ("latent_dim", int(self.latent_dim)),
            ("hidden_dims", [int(h) for h in self.hidden_dims]),
            ("likelihood", self.likelihood),
            ("rank", self.rank if self.rank in ("auto", None) else int(self.rank)),
            ("missing", self.missing),
        ):
            if not hasattr(model, name):
                raise ValueError(f"model {self.model!r} has no setting {name!r}")
            setattr(model, name, value)
        model = model_config_from_dict(to_dict(model), "model")  # validated as a whole
        train = TrainConfig(
            epochs=None if self.max_steps is None else 10**9,  # None: the default budget
            max_steps=None if self.max_steps is None else int(self.max_steps),
            batch_size=min(int(self.batch_size), n_train),
            seed=int(self.random_state),
            device="cpu",
            progress="plain",
            report=False,
            tensorboard=False,
        )
        if int(self.train_samples) < 1:
            raise ValueError(f"train_samples must be >= 1, got {self.train_samples}")
        decay = "auto" if self.weight_decay is None else float(self.weight_decay)
        data = DataConfig(
            "X", val_fraction=float(self.val_fraction), split_seed=int(self.random_state)
        )
        objective = ObjectiveConfig(self.objective, num_importance_samples=int(self.train_samples))
        optim = OptimConfig(lr=float(self.lr), weight_decay=decay)
        return Config(model=model, data=data, objective=objective, optim=optim, train=train)

    def fit(self, X: Any, y: Any = None) -> VAEEstimator:
        """Train on ``X [N, D]`` (or ``[N, C, H, W]``, or a DataFrame: the module doc);
        ``y`` is ignored. Returns ``self``.

        Fitted attributes: ``model_`` (the trained :class:`vaekit.Model`), ``history_``
        (per-epoch records, nats per example), ``n_features_in_``, ``data_info_`` (the
        preprocessing, as a run's config.json stores it), ``column_types_``."""
        from vaekit.data.tables import encode
        from vaekit.training.api import train

        self.column_types_ = self.frame_types_ = None
        typed = frame_schema(X, self.column_types)
        if typed is not None:
            table, schema = typed
            self.frame_types_ = FrameTypes.of(X, schema)
            self.column_types_ = {c.name: c.kind for c in schema}
            self.n_features_in_ = len(table.names)
            if all(isinstance(c, str) for c in X.columns):
                self.feature_names_in_ = np.asarray(X.columns, dtype=object)
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            dataset = array_dataset(
                encode(table, schema), self.val_fraction, self.random_state, schema
            )
        else:
            if self.column_types:
                raise ValueError("column_types applies to a DataFrame, not an array")
            X = self._check(X, reset=True)
            dataset = array_dataset(X, self.val_fraction, self.random_state)
        config = self._config(len(dataset.train))
        log = print if self.verbose else (lambda *args, **kwargs: None)
        result = train(config, out=self.run_dir, dataset=dataset, log=log)
        self.model_ = result.model.eval()
        self.history_ = result.history
        self.data_info_ = dataset.info()
        self.n_steps_ = int(result.history[-1]["step"]) if result.history else 0
        return self

    # --- using a fitted estimator ----------------------------------------------------------

    def _check(self, X: Any, reset: bool = False) -> np.ndarray:
        """X as a finite float array ``[N, *shape]`` (images ``[N, C, H, W]`` keep their axes)."""
        if isinstance(X, np.ndarray) and X.ndim > 2:  # images: validate as rows, keep the shape
            flat = validate_data(self, X.reshape(X.shape[0], -1), reset=reset, dtype=None)
            return np.asarray(flat).reshape(X.shape)
        out = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32, np.uint8])
        return np.ascontiguousarray(out)

    def _table_inputs(self, X: Any) -> torch.Tensor:
        """A DataFrame's rows under the fitted schema ``[N, F + C]`` (``encode_frame``)."""
        x = encode_frame(X, self._schema(), self.unknown_categories)
        return torch.from_numpy(x).to(torch.get_default_dtype())

    def _inputs(self, X: Any) -> torch.Tensor:
        """``X`` in the model's input space ``[N, *data_shape]`` (the training transform,
        with a fixed seed where it is stochastic)."""
        check_is_fitted(self, "model_")
        if self.frame_types_ is not None:
            return self._table_inputs(X)
        X = self._check(X)
        shape = tuple(self.model_.data_shape)
        x = torch.from_numpy(np.array(X)).reshape(-1, *shape)
        transform = transform_from_dict(self.data_info_["transform"])
        generator = torch.Generator().manual_seed(int(self.random_state))
        return transform(x, generator).to(torch.get_default_dtype())

    def _to_data(self, x: torch.Tensor) -> Any:
        """Model outputs in X's units: an array, or a DataFrame of its columns (float64)
        where X was a DataFrame of numbers."""
        transform = transform_from_dict(self.data_info_["transform"])
        values = transform.to_data(x) if hasattr(transform, "to_data") else x
        values = values.reshape(values.shape[0], -1).double().numpy()
        if hasattr(self, "feature_names_in_"):
            import pandas as pd

            return pd.DataFrame(values, columns=list(self.feature_names_in_))
        return values

    def _schema(self) -> list:
        from vaekit.distributions.tabular import as_columns

        return as_columns(self.model_.config.columns)

    @torch.no_grad()
    def transform(self, X: Any) -> np.ndarray:
        """Codes: the posterior means E[z|x], ``[N, latent_dim]``."""
        x = self._inputs(X)
        return self.model_.latent_moments(x).mean.double().numpy()

    @torch.no_grad()
    def inverse_transform(self, Z: Any) -> Any:
        """Decodes ``Z [N, latent_dim]`` to the mean of p(x|z), ``[N, D]`` in X's units; for
        a mixed-type table a DataFrame of its columns and dtypes (each column's mean, a count
        rounded, the most probable category)."""
        check_is_fitted(self, "model_")
        z = torch.as_tensor(np.asarray(Z, dtype=np.float64), dtype=torch.get_default_dtype())
        if z.ndim != 2 or z.shape[1] != self.model_.latent_dim:
            raise ValueError(
                f"Z must be [N, {self.model_.latent_dim}] codes, got shape {list(z.shape)}"
            )
        if self.frame_types_ is not None:
            from vaekit.impute import decoded_values

            return self.frame_types_.frame(self._schema(), decoded_values(self.model_, z))
        return self._to_data(self.model_.decode_mean(z))

    @torch.no_grad()
    def score_samples(self, X: Any) -> np.ndarray:
        """log p(x) per row, ``[N]``, in nats per example of the data as given: the
        importance-sampled estimate with K = ``num_samples`` (a lower bound in expectation),
        plus the standardisation's change of variables. Higher is more typical.

        Every row is scored with the same seeded draws (common random numbers), so a row's
        score does not depend on the other rows scored with it, nor on their order."""
        x = self._inputs(X)
        scale = transform_from_dict(self.data_info_["transform"]).log_data_scale(
            tuple(self.model_.data_shape)
        )
        scores = np.empty(x.shape[0])
        for i in range(x.shape[0]):
            torch.manual_seed(int(self.random_state))
            scores[i] = float(self.model_.log_likelihood(x[i : i + 1], int(self.num_samples)))
        return scores - scale

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log p(x), nats per example of the data as given (see :meth:`score_samples`)."""
        return float(np.mean(self.score_samples(X)))

    @torch.no_grad()
    def sample(self, n_samples: int = 1, random_state: int | None = None) -> Any:
        """``[n_samples, D]`` draws of the mean of p(x|z), z ~ p(z), in X's units; for a
        mixed-type table a DataFrame of synthetic rows, every cell drawn from p(v|z), in the
        training columns' dtypes and categories (``vaekit sample``'s engine)."""
        check_is_fitted(self, "model_")
        seed = self.random_state if random_state is None else random_state
        torch.manual_seed(int(seed))
        if self.frame_types_ is not None:
            from vaekit.impute import sample_values

            return self.frame_types_.frame(
                self._schema(), sample_values(self.model_, int(n_samples))
            )
        return self._to_data(self.model_.sample(int(n_samples)))

    def impute(self, X: Any, draws: int | None = None, random_state: int | None = None) -> Any:
        """A copy of the DataFrame ``X`` with its missing modelled cells filled (MIWAE, K =
        ``num_samples`` importance draws; ``vaekit impute``'s engine): a real, positive,
        zero-inflated or count cell by its posterior-predictive mean (each draw's mean held to
        the column's training range; an ordinal by the level nearest it), a category by its
        most probable value.
        Observed cells, other columns and the index are ``X``'s own, untouched. ``draws`` N:
        a list of N multiple imputations (sampling-importance-resampling draws) instead."""
        from vaekit.impute import impute

        check_is_fitted(self, "model_")
        if self.frame_types_ is None:
            raise ValueError(
                "impute needs a model of a mixed-type table: fit on a DataFrame with missing "
                "cells or words, or give column_types"
            )
        if draws is not None and draws < 1:
            raise ValueError(f"draws must be >= 1, got {draws}")
        x = self._table_inputs(X)
        seed = self.random_state if random_state is None else random_state
        torch.manual_seed(int(seed))
        result = impute(self.model_, x, int(self.num_samples), draws or 0)
        schema = self._schema()
        mask = x[:, -len(schema) :].numpy()
        if draws is None:
            return self.frame_types_.fill(X, schema, mask, result.means)
        return [self.frame_types_.fill(X, schema, mask, values) for values in result.draws]

    # --- files -----------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the fitted model as a model directory (safetensors + JSON); the estimator's
        parameters travel in its metadata."""
        check_is_fitted(self, "model_")
        params = {k: _jsonable(v) for k, v in self.get_params().items()}
        metadata: dict[str, Any] = {"estimator": params}
        if self.frame_types_ is not None:
            metadata["frame"] = self.frame_types_.to_dict()
        if hasattr(self, "feature_names_in_"):
            metadata["feature_names"] = [str(c) for c in self.feature_names_in_]
        return save_model(self.model_, path, data=self.data_info_, metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> VAEEstimator:
        """A fitted estimator from a directory :meth:`save` (or ``vaekit train``) wrote."""
        from vaekit.checkpoint import read_descriptor

        descriptor = read_descriptor(path)
        metadata = descriptor.get("metadata") or {}
        params = metadata.get("estimator") or {}
        known = cls().get_params()
        est = cls(**{k: v for k, v in params.items() if k in known})
        est.model_ = load_model(path).eval()
        est.data_info_ = descriptor.get("data") or {}
        if "transform" not in est.data_info_:
            raise ValueError(f"{path}: the model directory holds no data transform")
        est.frame_types_ = est.column_types_ = None
        est.n_features_in_ = math.prod(est.model_.data_shape)
        if metadata.get("feature_names"):
            est.feature_names_in_ = np.asarray(metadata["feature_names"], dtype=object)
        if est.model_.config.columns:  # a mixed-type table
            frame = metadata.get("frame")
            schema = est._schema()
            est.frame_types_ = (
                FrameTypes.from_dict(frame) if frame else FrameTypes.of_schema(schema)
            )
            est.column_types_ = {c.name: c.kind for c in schema}
            est.n_features_in_ = len(schema)
        return est

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, giving a parameter added since the pickle was written (e.g.
        ``unknown_categories``) its default, and a fitted estimator from before mixed-type
        tables their absent attributes (None: the numeric path)."""
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(type(self).__init__).parameters.items()
            if name != "self"
        }
        if "model_" in state:
            defaults |= {"frame_types_": None, "column_types_": None}
        super().__setstate__(defaults | state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value
