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

It follows scikit-learn's conventions (``get_params``/``set_params`` from the constructor's
arguments, fitted attributes ending in ``_``, ``fit`` returns ``self``) and passes the
estimator checks that apply to an unsupervised transformer.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from vaekit.checkpoint import load as load_model
from vaekit.checkpoint import save_model
from vaekit.config import Config, DataConfig, TrainConfig
from vaekit.data import Dataset, Split, transform_from_dict
from vaekit.data.splits import split_indices
from vaekit.data.stored import describe_values
from vaekit.models import MODELS
from vaekit.models.registry import model_config_from_dict


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
    model:
        a registered model name (``vaekit.MODELS``) with one latent vector, e.g. ``"vae"``.
    max_steps:
        optimiser steps; None: the trainer's default budget (10 epochs, raised to at least
        ``train.min_steps`` = 2000 steps), as ``vaekit train`` gives it.
    batch_size, lr:
        the optimiser's batch (rows) and Adam learning rate.
    val_fraction:
        share of the rows held out to validate while training (0: none).
    num_samples:
        K, importance samples per example for :meth:`score_samples`.
    random_state:
        seed of the split, the initialisation and the training noise.
    run_dir:
        if given, the run directory training writes (as ``vaekit train --out``).
    verbose:
        print the training log.
    """

    def __init__(
        self,
        latent_dim: int = 8,
        hidden_dims: tuple[int, ...] = (256, 128),
        likelihood: str = "auto",
        model: str = "vae",
        max_steps: int | None = None,
        batch_size: int = 128,
        lr: float = 1e-3,
        val_fraction: float = 0.1,
        num_samples: int = 100,
        random_state: int = 0,
        run_dir: str | Path | None = None,
        verbose: bool = False,
    ) -> None:
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.likelihood = likelihood
        self.model = model
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr
        self.val_fraction = val_fraction
        self.num_samples = num_samples
        self.random_state = random_state
        self.run_dir = run_dir
        self.verbose = verbose

    # --- fitting ---------------------------------------------------------------------------

    def _dataset(self, X: np.ndarray) -> Dataset:
        """``X`` as vaekit's training sees a user's array: train and validation splits, the
        transform and likelihood that fit its values (``data.stored.describe_values``)."""
        n = X.shape[0]
        shape = tuple(int(d) for d in X.shape[1:])
        train_rows, val_rows = split_indices(n, self.val_fraction, int(self.random_state))
        if len(train_rows) == 0:
            raise ValueError(f"X has {n} rows: too few to train on after holding out validation")
        stored = torch.from_numpy(np.array(X))  # a private, writable copy
        transform, support, likelihood, levels = describe_values(X, train_rows.numpy(), shape)
        val = Split(stored[val_rows])
        return Dataset(
            name="X",
            shape=shape,
            train=Split(stored[train_rows]),
            val=val,
            test=val,
            transform=transform,
            support=support,
            default_likelihood=likelihood,
            num_levels=levels,
            description=f"an array of {n} rows",
        )

    def _config(self, n_train: int) -> Config:
        if self.model not in MODELS:
            raise ValueError(f"model {self.model!r} is not one of {', '.join(MODELS)}")
        model = MODELS[self.model].config_class()
        for name, value in (
            ("latent_dim", int(self.latent_dim)),
            ("hidden_dims", [int(h) for h in self.hidden_dims]),
            ("likelihood", self.likelihood),
        ):
            if not hasattr(model, name):
                raise ValueError(f"model {self.model!r} has no setting {name!r}")
            setattr(model, name, value)
        model = model_config_from_dict(_model_dict(model), "model")  # validated as a whole
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
        config = Config(model=model, data=DataConfig(name="X"), train=train)
        config.optim.lr = float(self.lr)
        config.data.val_fraction = float(self.val_fraction)
        config.data.split_seed = int(self.random_state)
        return config

    def fit(self, X: Any, y: Any = None) -> VAEEstimator:
        """Train on ``X [N, D]`` (or ``[N, C, H, W]``); ``y`` is ignored. Returns ``self``.

        Fitted attributes: ``model_`` (the trained :class:`vaekit.Model`), ``history_``
        (per-epoch records, nats per example), ``n_features_in_``, ``data_info_`` (the
        preprocessing, as a run's config.json stores it)."""
        from vaekit.training.api import train

        X = self._check(X, reset=True)
        dataset = self._dataset(X)
        config = self._config(len(dataset.train))
        log = print if self.verbose else _quiet
        result = train(
            config,
            out=self.run_dir,
            dataset=dataset,
            log=log,
        )
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

    def _inputs(self, X: Any) -> torch.Tensor:
        """``X`` in the model's input space ``[N, *data_shape]`` (the training transform,
        with a fixed seed where it is stochastic)."""
        check_is_fitted(self, "model_")
        X = self._check(X)
        shape = tuple(self.model_.data_shape)
        x = torch.from_numpy(np.array(X)).reshape(-1, *shape)
        transform = transform_from_dict(self.data_info_["transform"])
        generator = torch.Generator().manual_seed(int(self.random_state))
        return transform(x, generator).to(torch.get_default_dtype())

    def _to_data(self, x: torch.Tensor) -> np.ndarray:
        transform = transform_from_dict(self.data_info_["transform"])
        values = transform.to_data(x) if hasattr(transform, "to_data") else x
        return values.reshape(values.shape[0], -1).double().numpy()

    @torch.no_grad()
    def transform(self, X: Any) -> np.ndarray:
        """Codes: the posterior means E[z|x], ``[N, latent_dim]``."""
        x = self._inputs(X)
        return self.model_.latent_moments(x).mean.double().numpy()

    @torch.no_grad()
    def inverse_transform(self, Z: Any) -> np.ndarray:
        """Decodes ``Z [N, latent_dim]`` to the mean of p(x|z), ``[N, D]`` in X's units."""
        check_is_fitted(self, "model_")
        z = torch.as_tensor(np.asarray(Z, dtype=np.float64), dtype=torch.get_default_dtype())
        if z.ndim != 2 or z.shape[1] != self.model_.latent_dim:
            raise ValueError(
                f"Z must be [N, {self.model_.latent_dim}] codes, got shape {list(z.shape)}"
            )
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
    def sample(self, n_samples: int = 1, random_state: int | None = None) -> np.ndarray:
        """``[n_samples, D]`` draws of the mean of p(x|z), z ~ p(z), in X's units."""
        check_is_fitted(self, "model_")
        seed = self.random_state if random_state is None else random_state
        torch.manual_seed(int(seed))
        return self._to_data(self.model_.sample(int(n_samples)))

    # --- files -----------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the fitted model as a model directory (safetensors + JSON); the estimator's
        parameters travel in its metadata."""
        check_is_fitted(self, "model_")
        params = {k: _jsonable(v) for k, v in self.get_params().items()}
        return save_model(self.model_, path, data=self.data_info_, metadata={"estimator": params})

    @classmethod
    def load(cls, path: str | Path) -> VAEEstimator:
        """A fitted estimator from a directory :meth:`save` (or ``vaekit train``) wrote."""
        from vaekit.checkpoint import read_descriptor

        descriptor = read_descriptor(path)
        params = (descriptor.get("metadata") or {}).get("estimator") or {}
        known = cls().get_params()
        est = cls(**{k: v for k, v in params.items() if k in known})
        est.model_ = load_model(path).eval()
        est.data_info_ = descriptor.get("data") or {}
        if "transform" not in est.data_info_:
            raise ValueError(f"{path}: the model directory holds no data transform")
        est.n_features_in_ = math.prod(est.model_.data_shape)
        return est

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


def _quiet(*args: Any, **kwargs: Any) -> None:
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _model_dict(config: Any) -> dict[str, Any]:
    from vaekit.settings import to_dict

    return to_dict(config)
