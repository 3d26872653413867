"""Typed, validated configuration: one dataclass per concern, one ``Config`` that holds them.

Configs round-trip through plain dicts (``to_dict`` / ``Config.from_dict``), TOML files
(``load_config``) and ``section.field=value`` overrides (``apply_overrides``). An unknown or
ill-typed field raises :class:`ConfigError` naming the field and what is allowed.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """A configuration field is unknown, missing or of the wrong type or value."""


@dataclass
class ModelConfig:
    """Architecture: everything needed to rebuild a model from its saved weights."""

    kind: Literal["vae", "ae"] = "vae"
    latent_dim: int = 16
    network: Literal["auto", "mlp", "conv"] = "auto"
    hidden_dims: list[int] = field(default_factory=lambda: [512, 256])
    activation: Literal["relu", "elu", "gelu", "tanh", "silu"] = "relu"
    posterior: Literal["diagonal", "full"] = "diagonal"
    # "auto" takes the dataset's default (its support decides: binary -> bernoulli).
    likelihood: Literal["auto", "gaussian", "gaussian-learned", "gaussian-shared", "bernoulli"] = (
        "auto"
    )
    prior: Literal["standard-normal"] = "standard-normal"
    # Filled in from the data when training starts: [C, H, W] for images, [D] for vectors.
    data_shape: list[int] | None = None

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be >= 1, got {self.latent_dim}")
        if any(h < 1 for h in self.hidden_dims):
            raise ConfigError(f"model.hidden_dims must be positive widths, got {self.hidden_dims}")


@dataclass
class DataConfig:
    """Which data, and how it is split."""

    # A registered dataset name (see `vaekit datasets`) or a path to user data.
    name: str = "digits"
    data_dir: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    # [H, W] in pixels: resize/crop an image folder to this size (None: images must agree).
    image_size: list[int] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise ConfigError(f"data.image_size must be [H, W] > 0, got {self.image_size}")


@dataclass
class ObjectiveConfig:
    """The training criterion (see ``vaekit.objectives``)."""

    name: Literal["elbo", "slide", "iwae", "reconstruction"] = "elbo"
    beta: float = 1.0  # KL weight of the beta-ELBO; 1 is the true ELBO
    num_mc_samples: int = 1  # L: reparameterised draws per example for the ELBO's expectation
    num_importance_samples: int = 5  # K of the IWAE bound

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ConfigError(f"objective.beta must be >= 0, got {self.beta}")
        if self.num_mc_samples < 1 or self.num_importance_samples < 1:
            raise ConfigError("objective.num_mc_samples and num_importance_samples must be >= 1")


@dataclass
class OptimConfig:
    """Optimiser (Adam) settings."""

    lr: float = 1e-3
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")


@dataclass
class TrainConfig:
    """The loop: budget, batching, seed, device."""

    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size must be >= 1, got {self.batch_size}")


@dataclass
class Config:
    """Everything a training run needs; saved in full as the run's ``config.json``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        return from_dict(cls, data)


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON/TOML-ready dict of a config dataclass (lists, not tuples)."""
    return dataclasses.asdict(obj)


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, checking every field's name and type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown config field {name!r}; allowed: {', '.join(sorted(fields))}")
    kwargs = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        kwargs[key] = _coerce(hints[key], value, name)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, name)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, name)
            except ConfigError:
                continue
        raise ConfigError(f"{name} has the wrong type: {value!r} is not {_describe(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}"
            )
        return value
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list of {_describe(item)}, got {value!r}")
        return [_coerce(item, v, f"{name}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ConfigError(f"{name} must be {_describe(tp)}, got {value!r}")


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def load_config(path: str | Path) -> Config:
    """Read a TOML file into a validated :class:`Config` (missing fields take defaults)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Config.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Return a copy of ``config`` with ``section.field=value`` strings applied.

    Values are read as TOML (``3e-4``, ``true``, ``[512, 256]``, ``"text"``); a bare word
    that is not valid TOML is taken as a string.
    """
    data = config.to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: expected section.field=value, e.g. optim.lr=3e-4")
        section, name = parts
        if section not in data:
            raise ConfigError(
                f"--set {item!r}: unknown section {section!r}; allowed: {', '.join(data)}"
            )
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        if name not in data[section]:
            allowed = ", ".join(data[section])
            raise ConfigError(f"--set {item!r}: unknown field {key!r}; allowed: {allowed}")
        data[section][name] = value
    return Config.from_dict(data)
