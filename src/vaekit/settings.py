"""The words every config is written in: self-documenting fields (``setting``), the one
error (``ConfigError``), strict dict <-> dataclass conversion, and ``ModelConfig``, the base of
every registered model's config.

It sits below ``models/`` (each model's config extends ``ModelConfig``) and below
``config.py`` (the run's ``Config``, which holds the model's config and so imports the model
registry): neither imports the other's layer back.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

# Integers are held in 64 bits (torch and numpy): larger ones overflow where they are used.
MAX_INT = 2**63 - 1


class ConfigError(ValueError):
    """A configuration field is unknown, missing or of the wrong type or value."""


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    flag: str | None = None,
    default_factory: Any = dataclasses.MISSING,
    shown_default: str | None = None,
    metavar: str | None = None,
) -> Any:
    """A config field that documents itself: ``help`` says what it does (``vaekit train
    --help`` shows it with the default). ``flag`` names its ``vaekit train`` flag where that
    differs from the field name (``""``: no flag; ``--set`` and TOML still reach it);
    ``shown_default`` replaces the default in the help where the bare value would mislead;
    ``metavar`` names the flag's value in the help (e.g. ``HxW``)."""
    metadata = {"help": help}
    if flag is not None:
        metadata["flag"] = flag
    if shown_default is not None:
        metadata["shown_default"] = shown_default
    if metavar is not None:
        metadata["metavar"] = metavar
    return field(default=default, default_factory=default_factory, metadata=metadata)


@dataclass
class TableColumn:
    """One column of a mixed-type table, as the tabular likelihood models it.

    ``kind``: real (a Gaussian on (v - loc) / scale), positive (log-normal: a Gaussian on
    (log v - loc) / scale), zero-inflated (v >= 0: a mass at 0 and, for v > 0, loc and scale
    of log v as for positive), count (negative binomial), poisson (a count column modelled as
    Poisson), ordinal (numbers with an order: ``levels``, the sorted distinct training
    values, under a cumulative-link likelihood; ``loc`` and ``scale`` those of the level
    index), binary or categorical (``categories``: the cell texts, in the order of the
    decoder's logits; a binary column's two values are its categories too). ``loc`` and
    ``scale`` are the mean and standard deviation of the modelled value over every observed
    cell of the training file (the schema is read from all its rows before the split, so
    that every split's categories are known). ``low`` and ``high``: a number column's
    smallest and largest observed value in its own units (None for a category column, and
    in a schema saved before they were recorded); imputation holds a cell's predicted mean
    to them."""

    name: str
    kind: Literal[
        "real", "positive", "zero-inflated", "count", "poisson", "ordinal", "binary", "categorical"
    ]
    categories: list[str] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)
    loc: float = 0.0
    scale: float = 1.0
    low: float | None = None
    high: float | None = None


@dataclass
class ModelConfig:
    """The part every model's config shares. Each registered model has its own subclass, in
    its own file under ``vaekit/models/`` (``VAEConfig``, ``AEConfig``, ...): the ``[model]``
    table of a TOML file and the ``"model"`` block of config.json hold the fields of the
    class registered under ``kind``, and are validated by it (errors name the field)."""

    # The registry name of the model; each subclass fixes it (not a constructor argument).
    kind: str = field(default="", init=False)
    likelihood: Literal[
        "auto",
        "gaussian",
        "gaussian-learned",
        "gaussian-shared",
        "gaussian-heteroscedastic",
        "gaussian-lowrank",
        "bernoulli",
        "discretized-logistic",
        "discretized-logistic-mixture",
        "tabular",
    ] = setting(
        "auto",
        help="p(x|z): gaussian (unit variance, the lecture's), gaussian-learned (a sigma per "
        "dimension), gaussian-shared (one sigma), gaussian-heteroscedastic (the decoder "
        "outputs a sigma per dimension and example), gaussian-lowrank (a full covariance "
        "W W^T + diag per example, W of rank --rank: residual correlations between "
        "dimensions; on a mixed table, the real and positive columns jointly), bernoulli "
        "(binary data only), "
        "discretized-logistic and discretized-logistic-mixture (probabilities of the data's "
        "discrete levels: exact bits/dim, no dequantisation), tabular (one likelihood per "
        "column of a mixed-type table, over its observed cells); auto: the dataset's default "
        "(its support decides: binary data gets bernoulli, a mixed table tabular)",
    )
    likelihood_components: int = setting(
        5, metavar="K", help="logistics per dimension of discretized-logistic-mixture"
    )
    rank: int | Literal["auto"] | None = setting(
        "auto",
        metavar="R|auto|none",
        help="the rank of gaussian-lowrank's covariance factor W (1 .. D-1); on a mixed "
        "table (the tabular likelihood), setting it gives the real and positive columns one "
        "joint low-rank Gaussian instead of independent ones (none: independent ones); "
        "auto: on a table of two or more such columns and at least 300 training rows, "
        "min(16, their number - 1); otherwise none (1 for gaussian-lowrank)",
    )
    missing: Literal["at-random", "self-masking"] = setting(
        "at-random",
        help="how a mixed table's cells came to be missing: at-random (whether a cell is "
        "missing does not depend on its own value) or self-masking (a real or positive "
        "cell is more likely missing when its own value is high, or low: the model learns "
        "P(missing | value) per column and imputes accordingly)",
    )
    data_shape: list[int] | None = setting(
        None,
        flag="",
        help="filled in from the data when training starts: [C, H, W] for images, [D] for vectors",
    )
    data_levels: int | None = setting(
        None,
        flag="",
        help="filled in from the data for the discretised likelihoods: the number of discrete "
        "levels per dimension (256 for 8-bit images, 17 for digits), which sets their bin width",
    )

    columns: list[TableColumn] | None = setting(
        None,
        flag="",
        help="filled in from a mixed-type table for the tabular likelihood: each column's "
        "name, type, categories and standardisation",
    )

    def __post_init__(self) -> None:
        if type(self) is ModelConfig:
            raise ConfigError(
                "ModelConfig is the shared base: build a model's own config (e.g. VAEConfig)"
            )
        if self.likelihood_components < 1:
            raise ConfigError(
                f"model.likelihood_components must be >= 1, got {self.likelihood_components}"
            )
        if self.data_levels is not None and self.data_levels < 2:
            raise ConfigError(f"model.data_levels must be >= 2 or null, got {self.data_levels}")

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Bring a ``"model"`` block written by an older vaekit to this class's fields (the
        default: nothing to change). ``data`` has no ``kind`` key."""
        return data

    def fill_from_data(self, labels: Any) -> None:
        """Fill fields that come from the training data, in place, given the training
        split's labels (a tensor ``[N]`` or None). The default: nothing (``data_shape`` and
        ``likelihood`` are filled by the trainer for every model)."""


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON/TOML-ready dict of a config dataclass (lists, not tuples)."""
    return dataclasses.asdict(obj)


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, checking every field's name and type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
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
        specific = None  # the error of the member the value's type matches: its own words
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, name)
            except ConfigError as exc:
                if specific is None and _same_kind(arg, value):
                    specific = exc
        if specific is not None:
            raise specific
        raise ConfigError(f"{name} has the wrong type: {value!r} is not {_describe(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}"
            )
        return value
    if origin is dict:
        key_type, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a table of {_describe(item)}, got {value!r}")
        return {
            _coerce(key_type, k, name): _coerce(item, v, f"{name}.{k}") for k, v in value.items()
        }
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list of {_describe(item)}, got {value!r}")
        return [_coerce(item, v, f"{name}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):  # no field means anything by nan or inf
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    if tp is int and type(value) is int and value > MAX_INT:
        raise ConfigError(f"{name} must be at most 2**63-1, got {value}")
    if tp is int and type(value) is int and value < -MAX_INT - 1:
        raise ConfigError(f"{name} must be at least -2**63, got {value}")
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ConfigError(f"{name} must be {_describe(tp)}, got {value!r}")


def _same_kind(tp: Any, value: Any) -> bool:
    """Whether ``value`` is of ``tp``'s kind (a number for a number, a list for a list), so
    that ``tp``'s refusal is about the value, not its type."""
    if isinstance(value, bool):
        return tp is bool
    if tp in (int, float):
        return isinstance(value, int) if tp is int else isinstance(value, int | float)
    return typing.get_origin(tp) is list and isinstance(value, list | tuple)


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
