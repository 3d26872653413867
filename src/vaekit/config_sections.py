"""The typed sections of a run's config: ``[data]``, ``[objective]``, ``[optim]``,
``[schedule]`` and ``[train]`` (the ``[model]`` section is the model's own config class,
``vaekit.models``). Every field is a :func:`vaekit.settings.setting`: its default, its help
and its flag; each section checks its own values and raises :class:`ConfigError` naming the
field and what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from vaekit.settings import ConfigError, setting
from vaekit.support.device import DEFAULT_DEVICE, DEVICE_HELP, DEVICE_NAMES, is_device_name
from vaekit.support.progress import ProgressMode

# The largest seed: torch takes 64-bit seeds, and the trainer adds rank and step offsets.
MAX_SEED = 2**63 - 1


@dataclass
class DataConfig:
    """Which data, and how it is split."""

    name: str = setting(
        "digits",
        flag="data",
        help="a dataset name (see `vaekit datasets`) or a path: a folder of PNG/JPEG images "
        "(class sub-folders = labels), a .npy/.npz array, a .csv/.parquet table",
    )
    data_dir: str | None = setting(
        None,
        help="directory holding a built-in dataset's files (searched before $VAEKIT_DATA_DIR, "
        "~/.cache/vaekit and /usr/share/datasets; else the files are downloaded)",
        shown_default="none: search those places",
    )
    val_fraction: float = setting(
        0.1, help="share of the training examples held out for validation, in [0, 1)"
    )
    split_seed: int = setting(0, help="seed of the train/validation split")
    image_size: list[int] | None = setting(
        None,
        help="resize (keeping the aspect) and centre-crop an image folder to H x W pixels",
        shown_default="none: the images must agree in size",
        metavar="HxW",
    )

    label_column: str | None = setting(
        None,
        help="a CSV/Parquet table's column of integer class labels (0, 1, ...): taken out of "
        "the features and given to the model as y (what a conditional VAE is conditioned on)",
        shown_default="none: every column is a feature",
        metavar="NAME",
    )
    columns: dict[str, str] = setting(
        default_factory=dict,
        flag="",
        help="a table's column types that replace the inferred ones, name -> real, positive, "
        "zero-inflated, count, poisson, ordinal, binary or categorical (the TOML table "
        "[data.columns]; "
        "on the command line --column-type NAME=TYPE)",
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise ConfigError(f"data.image_size must be [H, W] > 0, got {self.image_size}")


@dataclass
class ObjectiveConfig:
    """The training criterion (see ``vaekit.objectives``)."""

    name: Literal["auto", "elbo", "slide", "iwae", "reconstruction", "vq"] = setting(
        "auto",
        flag="objective",
        help="elbo (beta-weighted), slide (the lecture's L_VAE; unit Gaussian decoder), iwae, "
        "reconstruction (the AE's), vq (the VQ-VAE's reconstruction + commitment loss); elbo "
        "stands for a model's own default where it has no ELBO; auto: iwae for a mixed-type "
        "table (unless KL warm-up or free bits are given), elbo otherwise",
    )
    beta: float = setting(1.0, help="KL weight of the beta-ELBO; 1 is the true ELBO")
    num_mc_samples: int = setting(
        1, help="L: reparameterised draws per example for the ELBO's expectation"
    )
    num_importance_samples: int | Literal["auto"] = setting(
        "auto",
        help="K of the IWAE bound (objective iwae); auto: 10 for a mixed-type table, 5 otherwise",
    )
    kl_warmup_steps: int = setting(
        0,
        help="KL warm-up (objective elbo only): beta rises linearly from 0 to its value over "
        "this many optimiser steps; 0 = no warm-up",
    )
    free_bits: float = setting(
        0.0,
        metavar="LAMBDA",
        help="free bits (objective elbo only), nats per latent group (a coordinate of a "
        "factorised posterior; a layer of the hierarchical VAE): the batch-mean KL of each "
        "group counts as at least this in the loss (Kingma et al. 2016); 0 = off",
    )

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ConfigError(f"objective.beta must be >= 0, got {self.beta}")
        k = self.num_importance_samples
        if self.num_mc_samples < 1 or (k != "auto" and k < 1):
            raise ConfigError("objective.num_mc_samples and num_importance_samples must be >= 1")
        if self.kl_warmup_steps < 0:
            raise ConfigError(f"objective.kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")
        if self.free_bits < 0 or not math.isfinite(self.free_bits):
            raise ConfigError(f"objective.free_bits must be >= 0 nats, got {self.free_bits}")
        # Both act on the ELBO's separate KL term. The IWAE bound has none (its log-weights
        # log p(x|z) + log p(z) - log q(z|x) are one sum: scaling a part of them changes what
        # the bound estimates), and the slide loss is fixed by the slide.
        why = {
            "iwae": "the IWAE bound has no separate KL term; warm up with the elbo objective, "
            "then --resume the run with --objective iwae",
            "slide": "the slide loss is the lecture's fixed formula",
            "reconstruction": "the AE's criterion has no KL",
            "vq": "the VQ-VAE's loss has no KL",
        }
        for option in ("kl_warmup_steps", "free_bits"):
            if getattr(self, option) and self.name not in ("elbo", "auto"):
                raise ConfigError(
                    f"objective.{option} needs objective.name = 'elbo' (got {self.name!r}): "
                    f"{why[self.name]}"
                )


@dataclass
class OptimConfig:
    """Optimiser (Adam) settings."""

    lr: float = setting(1e-3, help="Adam learning rate")
    weight_decay: float | Literal["auto"] = setting(
        "auto",
        help="Adam's L2 weight decay; auto: 1e-4 for a mixed-type table (a few hundred rows "
        "train tens of thousands of weights), 0 otherwise",
    )
    grad_clip: float | None = setting(
        None,
        help="clip the gradient's global L2 norm to this value (the norm before clipping is "
        "logged as grad_norm either way)",
        shown_default="none: no clipping",
    )
    ema_decay: float | None = setting(
        None,
        help="Polyak averaging: validate, checkpoint and save an exponential moving average "
        "of the weights with this decay, e.g. 0.999",
        shown_default="none: off",
    )

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if self.weight_decay != "auto" and self.weight_decay < 0:
            raise ConfigError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"optim.grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"optim.ema_decay must be in (0, 1) or null, got {self.ema_decay}")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule (see ``vaekit.training.schedules``).

    constant: lr throughout. cosine: linear warm-up from 0 over ``warmup_steps``, then a
    half cosine from lr down to ``min_lr`` at the last step. plateau: multiply lr by ``factor``
    when the validation ELBO has not improved for ``patience`` epochs (never below ``min_lr``).
    """

    name: Literal["constant", "cosine", "plateau"] = setting(
        "constant",
        flag="schedule",
        help="learning-rate schedule: constant, cosine (linear warm-up, then a half cosine to "
        "--min-lr), plateau (reduce on a stalled validation ELBO)",
    )
    warmup_steps: int = setting(0, help="linear learning-rate warm-up steps (cosine schedule)")
    min_lr: float = setting(0.0, help="the lowest learning rate (cosine and plateau schedules)")
    factor: float = setting(
        0.5, flag="plateau-factor", help="plateau schedule: multiply the lr by this, in (0, 1)"
    )
    patience: int = setting(
        5,
        flag="plateau-patience",
        help="plateau schedule: epochs without a better validation ELBO before the lr drops",
    )

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ConfigError(f"schedule.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.min_lr < 0:
            raise ConfigError(f"schedule.min_lr must be >= 0, got {self.min_lr}")
        if not 0.0 < self.factor < 1.0:
            raise ConfigError(f"schedule.factor must be in (0, 1), got {self.factor}")
        if self.patience < 0:
            raise ConfigError(f"schedule.patience must be >= 0, got {self.patience}")


@dataclass
class TrainConfig:
    """The loop: budget, batching, seed, device, checkpoints, logging, numerics."""

    epochs: int | None = setting(
        None,
        help="passes over the training split (the budget)",
        shown_default="none: 10 epochs, raised until the run makes --min-steps optimiser steps",
    )
    min_steps: int = setting(
        2000,
        help="without --epochs or --max-steps, the default budget of 10 epochs is raised to "
        "make at least this many optimiser steps, so that a small data set is not left after "
        "a few dozen steps with samples of noise (0: no minimum). The budget chosen is printed "
        "before the first step",
    )
    max_steps: int | None = setting(
        None,
        help="step budget (optimiser steps); replaces --epochs as the budget when given",
        shown_default="none: --epochs is the budget",
    )
    max_minutes: float | None = setting(
        None,
        help="wall-clock budget of the whole command: training stops early enough for its "
        "closing validation (timed by the last one) and the end-of-training report (a tenth "
        "of the budget, at most a minute, is kept back for it; its evaluation is cut to fit "
        "and the Fréchet distance is left out if its classifier is not trained yet), or at "
        "the step budget if that comes first. "
        "The learning-rate schedule is laid out over the step budget, so size --max-steps to "
        "end near the time when the schedule should end with it (from the second epoch on, "
        "training warns once if its pace says the time will stop a cosine schedule early)",
        shown_default="none: no time limit",
    )
    snapshot_minutes: float | None = setting(
        None,
        help="every this many minutes of training, keep a copy of the model in "
        "RUN/snapshots/step-N/ (a model directory vaekit evaluate reads): learning curves "
        "against wall-clock time",
        shown_default="none: no snapshots",
    )
    batch_size: int = setting(
        128, help="examples per optimiser step (global: split across ranks under torchrun)"
    )
    seed: int = setting(
        0, help="seeds the weights, the data order, the data transforms and the noise"
    )
    device: str = setting(DEFAULT_DEVICE, help=DEVICE_HELP)
    eval_batch_size: int = setting(1000, help="examples per batch when validating")
    patience: int | None = setting(
        None,
        help="early stopping: stop after this many epochs without a better validation ELBO",
        shown_default="none: off",
    )
    log_every: int = setting(50, help='steps between "step" records in metrics.jsonl')
    checkpoint_every: int = setting(
        500, help="steps between mid-epoch checkpoints (one is also written after every epoch)"
    )
    checkpoint_minutes: float = setting(
        5.0,
        help="also checkpoint when this many minutes passed since the last checkpoint, so a "
        "long first epoch is not lost to a crash",
    )
    max_bad_steps: int = setting(
        10,
        help="NaN/inf guard: a non-finite loss or gradient skips the update; this many in a "
        "row stop training",
    )
    grad_skip_threshold: float | None = setting(
        None,
        help="skip the update of a step whose gradient norm (before clipping) is above this, "
        "as VDVAE does against spikes; counted as skipped_steps in the epoch records and the "
        "summary",
        shown_default="none: off",
    )
    deterministic: bool = setting(
        False, help="deterministic kernels (torch.use_deterministic_algorithms); slower on GPU"
    )
    precision: Literal["fp32", "bf16", "fp16"] = setting(
        "fp32",
        help="fp32, bf16 (autocast) or fp16 (autocast + GradScaler) for the network bodies: "
        "CUDA only; log-densities are always computed in fp32",
    )
    compile: bool | Literal["auto"] = setting(
        "auto",
        help="torch.compile the training step: auto (compile where a measurement in the run "
        "says it pays back: runs of 500 steps or more whose eager steps add up to over 200 s, "
        "400 s with a last partial batch; "
        "eager otherwise or if compiling fails), on or off",
    )
    tensorboard: bool = setting(
        True, help="write TensorBoard events to RUN/tensorboard when tensorboard is installed"
    )
    tensorboard_images_every: int = setting(
        5,
        help="epochs between the sample and reconstruction grids in TensorBoard (and after "
        "the last)",
    )
    progress: ProgressMode = setting(
        "auto",
        help="auto: a progress bar on a terminal or in Jupyter, log lines otherwise; bar; "
        "plain (log lines)",
    )
    keep: Literal["last", "best"] = setting(
        "last",
        help="the model training ends with (RUN/model.safetensors, train's result): last, the "
        "weights of the last epoch; best, those of the epoch with the best validation ELBO "
        "(as checkpoints/best; needs a validation split). The closing summary says which",
    )
    report: bool = setting(
        True,
        help="write RUN/report.html at the end of training (it evaluates first, with K = 100 "
        "importance samples on up to 1000 test examples; under --max-minutes, cut to fit)",
    )

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1 or null, got {self.epochs}")
        if self.min_steps < 0:
            raise ConfigError(f"train.min_steps must be >= 0, got {self.min_steps}")
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size must be >= 1, got {self.batch_size}")
        for name in ("max_steps", "patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"train.{name} must be >= 1 or null, got {value}")
        for name in ("eval_batch_size", "log_every", "checkpoint_every", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.tensorboard_images_every < 1:
            raise ConfigError(
                f"train.tensorboard_images_every must be >= 1, got {self.tensorboard_images_every}"
            )
        for name in ("max_minutes", "snapshot_minutes", "grad_skip_threshold"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"train.{name} must be > 0 or null, got {value}")
        if not self.checkpoint_minutes > 0:
            raise ConfigError(
                f"train.checkpoint_minutes must be > 0, got {self.checkpoint_minutes}"
            )
        if not is_device_name(self.device):
            raise ConfigError(f"train.device must be one of {DEVICE_NAMES}, got {self.device!r}")
        if not 0 <= self.seed <= MAX_SEED:  # torch seeds are 64-bit; ranks add to the seed
            raise ConfigError(f"train.seed must be an integer in [0, 2**63 - 1], got {self.seed}")
