"""The model registry: name -> model class, and through it the model's own config class.

A model registers itself with :func:`register_model` in its own file; ``vaekit train --model``
choices, its ``--help``, the TOML/config.json ``[model]`` table and the checkpoint loader all
read this one table. Nothing else lists model names.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from vaekit.settings import ConfigError, ModelConfig, from_dict, to_dict

if TYPE_CHECKING:
    from vaekit.models.base import Model

# name -> model class; ``MODELS[name].config_class`` is its config dataclass.
MODELS: dict[str, type[Model]] = {}


def register_model(cls: type[Model]) -> type[Model]:
    """Class decorator: put ``cls`` in :data:`MODELS` under ``cls.name``.

    Checks the pairing once, at import: the config class must be a :class:`ModelConfig`
    dataclass whose fixed ``kind`` is the model's name.
    """
    config_class = cls.config_class
    if not (dataclasses.is_dataclass(config_class) and issubclass(config_class, ModelConfig)):
        raise TypeError(f"{cls.__name__}.config_class must be a ModelConfig dataclass")
    kind = next(f.default for f in dataclasses.fields(config_class) if f.name == "kind")
    if kind != cls.name:
        raise TypeError(f"{config_class.__name__}.kind is {kind!r}, the model is {cls.name!r}")
    if cls.name in MODELS:
        raise TypeError(f"model {cls.name!r} is registered twice")
    MODELS[cls.name] = cls
    return cls


def build_model(config: ModelConfig, **bodies: Any) -> Model:
    """The model registered under ``config.kind``, built from its config.

    ``bodies`` are user network bodies (e.g. ``encoder=``, ``decoder=`` for the VAE and AE),
    passed to the model's constructor as given.
    """
    if config.kind not in MODELS:
        raise ConfigError(
            f"model.kind must be one of {', '.join(map(repr, MODELS))}; got {config.kind!r}"
        )
    return MODELS[config.kind](config, **bodies)


def model_names() -> list[str]:
    """Registered model names, in registration order (the default, vae, first)."""
    return list(MODELS)


def models_help() -> str:
    """One line per model for ``--help``: ``name: description``."""
    return "; ".join(f"{name}: {cls.description}" for name, cls in MODELS.items())


def model_config_from_dict(data: Any, where: str = "model") -> ModelConfig:
    """The config of the model registered under ``data["kind"]`` (default "vae"), built and
    validated by that model's own config class."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table, got {type(data).__name__}")
    kind = data.get("kind", "vae")
    if kind not in MODELS:
        raise ConfigError(
            f"{where}.kind must be one of {', '.join(map(repr, MODELS))}; got {kind!r}"
        )
    cls = MODELS[kind].config_class
    fields = {k: v for k, v in data.items() if k != "kind"}
    return from_dict(cls, cls.migrate(fields), where)


def retarget_model_dict(data: dict[str, Any], kind: str) -> dict[str, Any]:
    """A ``"model"`` dict switched to ``kind``: the new model's defaults, except the fields
    set away from the old model's defaults that the new model has too (same name and type),
    which keep their values. An unknown kind is left for validation to report."""
    if kind not in MODELS:
        return data | {"kind": kind}
    new = MODELS[kind].config_class
    old = MODELS[data["kind"]].config_class if data.get("kind") in MODELS else None
    old_fields = {f.name: f for f in dataclasses.fields(old)} if old is not None else {}
    result = to_dict(new())
    for f in dataclasses.fields(new):
        if not f.init or f.name not in data:
            continue
        before = old_fields.get(f.name)
        if before is None or before.type != f.type:
            continue  # another meaning under the same name
        default = (
            before.default_factory()
            if before.default_factory is not dataclasses.MISSING
            else before.default
        )
        if data[f.name] != default:
            result[f.name] = data[f.name]
    return result


def default_model_config() -> ModelConfig:
    """The default model's config (the one-layer VAE's), with its defaults."""
    return MODELS["vae"].config_class()
