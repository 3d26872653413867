"""Flags generated from config dataclasses, and the parser conventions every command shares.

Each config field documents itself (``vaekit.config.setting``: its help text, and its flag
name where that differs from the field name); :func:`add_config_flags` turns every field of
the dataclasses it is given into a ``vaekit train`` flag, so a new field is a new flag with
no second list to keep in step. The flags default to "not given" (None): a given flag
becomes a ``section.field=value`` override on top of the ``--config`` file, and the help
shows the field's built-in default.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vaekit.settings import MAX_INT


@dataclass(frozen=True)
class ConfigFlag:
    """One generated flag: ``--latent-dim`` sets ``model.latent_dim``."""

    section: str
    field: str
    flag: str  # "--latent-dim"
    dest: str  # "latent_dim": the attribute on the parsed namespace

    @property
    def path(self) -> str:
        return f"{self.section}.{self.field}"


def config_sections(config_class: type) -> dict[str, type]:
    """The dataclass of every section of ``config_class`` (e.g. ``Config``): name -> type."""
    hints = typing.get_type_hints(config_class)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(config_class)
        if dataclasses.is_dataclass(hints[f.name])
    }


def union_section(name: str, classes: Iterable[type], leading: Iterable[tuple] = ()) -> type:
    """One dataclass, for flags only, holding every constructor field of ``classes`` (where
    two classes share a field name, the first one's field: its type, default and help).

    The model section has one config class per registered model: its flags are the union of
    their fields, and the config of the model chosen refuses a field it does not have.
    ``leading`` are ``(name, type, field)`` entries placed first (e.g. the model's kind)."""
    entries: dict[str, tuple] = {entry[0]: entry for entry in leading}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init or f.name in entries:
                continue
            copy = dataclasses.field(
                default=f.default, default_factory=f.default_factory, metadata=f.metadata
            )
            entries[f.name] = (f.name, hints[f.name], copy)
    return dataclasses.make_dataclass(name, list(entries.values()))


def add_config_flags(
    parser: argparse.ArgumentParser,
    sections: Mapping[str, type],
    *,
    choices: Mapping[str, Iterable[str]] | None = None,
    types_: Mapping[str, Callable[[str], Any]] | None = None,
) -> list[ConfigFlag]:
    """Add a flag for every field of every section dataclass (one argument group per section).

    ``choices`` and ``types_`` (keyed by ``section.field``) replace a field's allowed values
    (e.g. the model registry's names) or its text parser (e.g. ``HxW`` sizes). A field whose
    metadata sets ``flag=""`` gets none. Two fields that would share a flag are an error.
    """
    choices, types_ = dict(choices or {}), dict(types_ or {})
    made: dict[str, ConfigFlag] = {}
    for section, cls in sections.items():
        doc = (cls.__doc__ or "").strip().splitlines()
        about = doc[0].replace("``", "") if doc else None
        group = parser.add_argument_group(f"[{section}] section", about)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            name = f.metadata.get("flag", f.name.replace("_", "-"))
            if not name:
                continue
            path = f"{section}.{f.name}"
            flag = ConfigFlag(section, f.name, f"--{name}", name.replace("-", "_"))
            if flag.flag in made:
                raise ValueError(f"{path} and {made[flag.flag].path} would both be {flag.flag}")
            made[flag.flag] = flag
            allowed = list(choices[path]) if path in choices else _literal_choices(hints[f.name])
            kwargs = _argument(hints[f.name], path, types_.get(path), allowed)
            if path in choices:  # a registry's names (e.g. the models): argparse checks them
                kwargs |= {"choices": allowed, "metavar": _metavar(allowed)}
            if "metavar" in f.metadata:
                kwargs["metavar"] = f.metadata["metavar"]
            default = _field_default(f)
            shown = f.metadata.get("shown_default") or _show(default, hints[f.name])
            listed = f"one of {', '.join(allowed)}; " if allowed else ""
            help_text = f.metadata.get("help", "")
            kwargs["help"] = f"{help_text} ({listed}default: {shown})".replace("%", "%%")
            group.add_argument(flag.flag, dest=flag.dest, default=None, **kwargs)
    return list(made.values())


def config_overrides(args: argparse.Namespace, flags: Iterable[ConfigFlag]) -> dict[str, str]:
    """``section.field=value`` overrides (TOML values) for the flags given on the command
    line, each mapped to its flag (so an error can name what the user typed)."""
    out = {}
    for flag in flags:
        value = getattr(args, flag.dest)
        if value is not None:
            raw = "none" if value is UNSET else json.dumps(value)
            out[f"{flag.path}={raw}"] = flag.flag
    return out


def _optional_inner(tp: Any) -> Any:
    """``X`` for ``X | None``; ``tp`` otherwise."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


def _literal_choices(tp: Any) -> list[str] | None:
    tp = _optional_inner(tp)
    return [str(a) for a in typing.get_args(tp)] if typing.get_origin(tp) is Literal else None


def _argument(
    tp: Any, path: str, parse: Callable[[str], Any] | None, allowed: list[str] | None
) -> dict[str, Any]:
    """argparse keywords for a field of type ``tp``. Values are checked by the config itself
    (one error naming the field, as for TOML and --set), except registry choices."""
    optional = type(None) in typing.get_args(tp)
    tp = _optional_inner(tp)
    if tp is bool or bool in typing.get_args(tp):  # true/false or "auto": unset means auto
        return {"action": argparse.BooleanOptionalAction}
    if parse is not None:
        return {"type": parse}
    auto = _auto_number(tp)
    if auto is not None:  # a number, or "auto": the data decides when training starts
        metavar = f"{'N' if auto is int else 'X'}|auto" + ("|none" if optional else "")
        return {"type": or_auto(number(auto), none=optional), "metavar": metavar}
    if typing.get_origin(tp) is Literal:
        return {"metavar": _metavar(allowed)}
    if typing.get_origin(tp) is list and typing.get_args(tp) == (int,):
        return {"type": int_list, "metavar": "N,N,..."}
    if tp in (int, float):
        return {"type": number(tp), "metavar": "N" if tp is int else "X"}
    if tp is str:
        return {}  # metavar: the flag's name in capitals
    raise TypeError(f"{path}: no command-line flag for a field of type {tp!r}; give it flag=''")


def _auto_number(tp: Any) -> type | None:
    """``int`` or ``float`` for a field typed ``int | Literal["auto"]`` (``float | ...``,
    either also ``| None``); None for any other type."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    numbers = [a for a in args if a in (int, float)]
    autos = [a for a in args if typing.get_origin(a) is Literal and typing.get_args(a) == ("auto",)]
    return numbers[0] if len(args) == 2 and len(numbers) == 1 and len(autos) == 1 else None


def _metavar(allowed: list[str] | None) -> str:
    return "{" + ",".join(allowed or []) + "}" if allowed and len(allowed) <= 4 else "NAME"


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _show(value: Any, tp: Any) -> str:
    """A default as one would type it on the command line."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


# --- the value types of every flag ------------------------------------------------------
#
# Every flag that takes a number parses it with one of these, so that range, finiteness and
# size are checked where the flag is declared, in the same words for every command:
# ``argument --seed: must be at most 2**63-1, got 99999999999999999999999``. argparse adds the
# flag's name; the value never reaches the library unchecked. tests/test_cli_flags.py walks
# every command's flags and fails on a number flag declared with a bare ``int`` or ``float``.


def _mark(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    parse.__name__ = name  # argparse names the type in "invalid <name> value" messages
    parse.validated = True  # type: ignore[attr-defined]
    return parse


def integer(minimum: int | None = None, maximum: int = MAX_INT) -> Callable[[str], int]:
    """An argparse type: an integer in ``[minimum, maximum]`` (at most 2**63-1 by default)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        if value > maximum:
            bound = "2**63-1" if maximum == MAX_INT else str(maximum)
            raise argparse.ArgumentTypeError(f"must be at most {bound}, got {text}")
        return value

    return _mark(parse, "int")


def real(
    minimum: float | None = None, *, above: float | None = None, maximum: float | None = None
) -> Callable[[str], float]:
    """An argparse type: a finite number (nan and inf are refused), at least ``minimum``,
    greater than ``above``, at most ``maximum`` where given."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, got {text}")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"must be greater than {above:g}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, got {text}")
        return value

    return _mark(parse, "float")


positive_int = integer(1)
nonnegative_int = integer(0)
seed_int = integer(0)  # torch seeds are 64-bit: [0, 2**63-1]
finite_float = real()
positive_float = real(above=0.0)


def number(tp: type) -> Callable[[str], Any]:
    """The flag type of a config field of type ``int`` or ``float``: any finite value that
    fits; the field's own range is checked by the config (one message for flags, TOML and
    --set alike)."""
    return integer(minimum=-MAX_INT - 1) if tp is int else finite_float


class _Unset:
    """What a ``none`` flag value parses to: the field set to null (a flag's None means
    "not given", so null needs a value of its own)."""

    def __repr__(self) -> str:
        return "none"


UNSET = _Unset()


def or_auto(parse: Callable[[str], Any], none: bool = False) -> Callable[[str], Any]:
    """An argparse type: the word ``auto``, or a value ``parse`` accepts; with ``none``, also
    the word ``none`` (:data:`UNSET`: the optional field set to null)."""
    words = ", auto or none" if none else " or auto"

    def parse_or_auto(text: str) -> Any:
        word = text.strip().lower()
        if word == "auto":
            return "auto"
        if none and word == "none":
            return UNSET
        try:
            return parse(text)
        except argparse.ArgumentTypeError as exc:  # "expected a number or auto, got 'x'"
            raise argparse.ArgumentTypeError(
                str(exc).replace(", got", f"{words}, got", 1)
            ) from None

    return _mark(parse_or_auto, getattr(parse, "__name__", "value"))


def int_list(text: str) -> list[int]:
    """``512,256`` -> ``[512, 256]`` (positive integers, each at most 2**63-1)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive widths like 512,256, got {text!r}")
    if any(v > MAX_INT for v in values):
        raise argparse.ArgumentTypeError(f"each width must be at most 2**63-1, got {text!r}")
    return values


_mark(int_list, "int_list")


def validated_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Mark a flag type of its own (e.g. ``HxW`` sizes) as one that checks its values."""
    return _mark(parse, getattr(parse, "__name__", "value"))


# --- conventions of every command ----------------------------------------------------------


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default: ``(default: X)`` is added where the help
    text does not state one (a switch's default is off)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """Paragraphs are wrapped; lines that start with two spaces (examples) are kept."""
        blocks, paragraph = [], []
        for line in text.splitlines():
            if line.startswith("  ") or not line.strip():
                if paragraph:
                    blocks.append(super()._fill_text(" ".join(paragraph), width, indent))
                    paragraph = []
                blocks.append(indent + line if line.strip() else "")
            else:
                paragraph.append(line)
        if paragraph:
            blocks.append(super()._fill_text(" ".join(paragraph), width, indent))
        return "\n".join(blocks)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.default is argparse.SUPPRESS:
            return text
        if action.required:
            return f"{text} (required)"
        if isinstance(action, argparse._StoreTrueAction):
            return f"{text} (default: off)"
        if action.default is not None:
            return f"{text} (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose sub-commands use :class:`HelpFormatter`, and which answers a
    mistyped flag with that sub-command's usage and the closest flag it knows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        # No abbreviations: `--epoch 3` would silently mean --epochs today and something
        # else once a flag with the same prefix is added; a typo gets a suggestion instead.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self._command_parser(parsed)
            command.error(unrecognised(extras, command))
        alias = getattr(parsed, "data_alias", None)
        if alias is not None:  # `encode RUN DATA` and `encode RUN --data DATA` are one
            given = getattr(parsed, alias)
            if given is not None and parsed.data is not None and given != parsed.data:
                self._command_parser(parsed).error("give the data once: DATA or --data DATA")
            parsed.data = parsed.data if parsed.data is not None else given
            if parsed.data is None:
                self._command_parser(parsed).error("the data is required: --data DATA")
        return parsed

    def _command_parser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The sub-command's parser (its usage is the one that helps), else this one."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                name = getattr(parsed, action.dest, None)
                if name in action.choices:
                    return action.choices[name]
        return self


def unrecognised(extras: list[str], parser: argparse.ArgumentParser) -> str:
    """``unrecognised argument --epocs; did you mean --epochs?`` (difflib's closest match)."""
    known = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    first = extras[0]
    message = f"unrecognised argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}"
    if first.startswith("-"):
        word = first.split("=", 1)[0]
        close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {close[0]}?"
    return message
