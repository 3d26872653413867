"""Typed, validated configuration: one dataclass per concern (:mod:`vaekit.config_sections`),
one ``Config`` that holds them.

Configs round-trip through plain dicts (``to_dict`` / ``Config.from_dict``), TOML files
(``load_config``) and ``section.field=value`` overrides (``apply_overrides``). An unknown or
ill-typed field raises :class:`ConfigError` naming the field and what is allowed.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from vaekit.config_sections import (
    MAX_SEED,
    DataConfig,
    ObjectiveConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)
from vaekit.models.registry import default_model_config, model_config_from_dict, retarget_model_dict
from vaekit.settings import ConfigError, ModelConfig, from_dict, setting, to_dict
from vaekit.support.spelling import spell

# Re-exported: the names a user of ``vaekit.config`` has always found here.
__all__ = [
    "MAX_SEED",
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "dump_toml",
    "find_config",
    "from_dict",
    "load_config",
    "model_config_from_dict",
    "preset_names",
    "retarget_model_dict",
    "setting",
    "to_dict",
]


@dataclass
class Config:
    """Everything a training run needs; saved in full as the run's ``config.json``."""

    model: ModelConfig = field(default_factory=default_model_config)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build and validate a config from a dict (a TOML document or config.json): the
        ``model`` table is validated by the config class its ``kind`` names."""
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a table, got {type(data).__name__}")
        config = from_dict(cls, {k: v for k, v in data.items() if k != "model"})
        if "model" in data:
            config.model = model_config_from_dict(data["model"], "model")
        return config


def preset_names() -> list[str]:
    """The presets shipped inside the package (``vaekit/configs/NAME.toml``), sorted."""
    folder = resources.files("vaekit") / "configs"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def find_config(name_or_path: str | Path) -> Path:
    """The TOML file for ``name_or_path``: an existing file, else the preset of that name
    shipped with vaekit (``digits`` or ``digits.toml``), from whatever folder it is asked."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.name[: -len(".toml")] if path.suffix == ".toml" else path.name
    if path.parent == Path(".") and name in preset_names():
        return Path(str(resources.files("vaekit") / "configs" / f"{name}.toml"))
    presets = preset_names()
    close = difflib.get_close_matches(name, presets, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"{name_or_path}: config file not found, and not a preset ({', '.join(presets)}){hint}"
    )


def load_config(path: str | Path) -> Config:
    """Read a TOML file, or a preset by name (``load_config("digits")``; see
    :func:`find_config`), into a validated :class:`Config` (missing fields take defaults)."""
    path = find_config(path)
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


def _set() -> str:
    return spell("--set", "override")


def apply_overrides(
    config: Config, overrides: list[str], given_as: Mapping[str, str] | None = None
) -> Config:
    """Return a copy of ``config`` with ``section.field=value`` strings applied.

    Values are read as TOML (``3e-4``, ``true``, ``[512, 256]``, ``"text"``); ``null`` or
    ``none`` unsets an optional field; any other bare word that is not valid TOML is taken as
    a string. ``given_as`` maps an override to the flag the user typed for it (``--init``),
    which an error about it (a field the model lacks, a value validation refuses) then names.
    """
    given_as = given_as or {}
    data = config.to_dict()
    # A change of model kind first: the other model fields given then apply to the new
    # model's config (fields the new model does not have are dropped from the old one).
    overrides = sorted(overrides, key=lambda item: item.partition("=")[0].strip() != "model.kind")
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(
                f"{_set()} {item!r}: expected section.field=value, e.g. optim.lr=3e-4"
            )
        section, name = parts
        if section not in data:
            raise ConfigError(
                f"{_set()} {item!r}: unknown section {section!r}; allowed: {', '.join(data)}"
            )
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            # TOML has no null: "null"/"none" unset an optional field (e.g. train.max_steps).
            value = None if raw.strip().lower() in ("null", "none") else raw.strip()
        if name not in data[section]:
            allowed = ", ".join(data[section])
            which = f" of model {data['model'].get('kind')!r}" if section == "model" else ""
            if item in given_as:  # a flag the chosen model has no field for
                raise ConfigError(
                    f"{given_as[item]}: model {data['model'].get('kind')!r} has no field "
                    f"{name!r}; its fields: {allowed}"
                )
            raise ConfigError(
                f"{_set()} {item!r}: unknown field {key!r}{which}; allowed: {allowed}"
            )
        if (section, name) == ("model", "kind") and value != data["model"].get("kind"):
            data["model"] = retarget_model_dict(data["model"], value)
        else:
            data[section][name] = value
    try:
        return Config.from_dict(data)
    except ConfigError as exc:
        # A value refused by validation ("model.latent_dim must be >= 1") is named by the
        # flag the user typed, so the message points at their own command line.
        message = str(exc)
        for item, flag in given_as.items():
            if message.startswith(item.partition("=")[0].strip() + " "):
                raise ConfigError(f"{flag}: {message}") from None
        raise


def dump_toml(config: Config) -> str:
    """``config`` as a TOML document that :func:`load_config` reads back to an equal config
    (null fields are left out: they take their default, which is null)."""
    lines: list[str] = []
    for section, values in config.to_dict().items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value)
