"""What two runs must share to be paired example by example, and the one-line refusal when
they do not."""

from __future__ import annotations

from typing import Any


class ComparisonError(ValueError):
    """The runs cannot be compared example by example (different data, split, no likelihood,
    different conditioning)."""


SPLIT_FIELDS = ("name", "val_fraction", "split_seed", "image_size")


# Transforms that present the same stored integer levels: a density sees them dequantised,
# a discrete likelihood sees the levels themselves (``Dataset.as_levels``).
LEVEL_TRANSFORMS = ("dequantize", "levels")


def data_signature(descriptor: dict[str, Any]) -> dict[str, Any]:
    """What must agree for two runs to share test examples: the recorded dataset, its split
    (validation fraction, split seed), image size and preprocessing. ``data_dir`` may differ,
    and so may the way stored levels are presented (dequantised for a density, the levels for
    a discrete likelihood): in the data's own space both are -log P(levels)."""
    config = (descriptor.get("config") or {}).get("data") or {}
    info = descriptor.get("data") or {}
    signature = {f"data.{k}": config.get(k) for k in SPLIT_FIELDS if k in config}
    signature["data.name"] = info.get("name", config.get("name"))
    for key in ("shape", "support", "num_levels", "transform"):
        signature[f"preprocessing.{key}"] = info.get(key)
    transform = info.get("transform")
    if isinstance(transform, dict) and transform.get("kind") in LEVEL_TRANSFORMS:
        signature["preprocessing.transform"] = {"stored levels": transform.get("levels")}
    return signature


def check_conditioning(names: list[str], models: list[Any]) -> None:
    """Raise a one-line :class:`ComparisonError` if the runs' models do not all condition on
    the label alike: -log p(x|y) and -log p(x) are different quantities."""
    first = models[0].takes_labels
    for name, model in zip(names[1:], models[1:], strict=True):
        if model.takes_labels != first:
            which = {True: "-log p(x|y), conditioned on the label", False: "-log p(x)"}
            raise ComparisonError(
                f"{name}: model {model.name!r} reports {which[model.takes_labels]}, "
                f"{names[0]}'s model {models[0].name!r} reports {which[first]}: different "
                "quantities, so they are not paired"
            )


def check_comparable(names: list[str], descriptors: list[dict[str, Any]]) -> None:
    """Raise a one-line :class:`ComparisonError` naming the first field where a run's data
    or split differs from the first run's."""
    first = data_signature(descriptors[0])
    for name, descriptor in zip(names[1:], descriptors[1:], strict=True):
        other = data_signature(descriptor)
        for key in sorted(set(first) | set(other)):
            if first.get(key) != other.get(key):
                shown = [_short(first.get(key)), _short(other.get(key))]
                raise ComparisonError(
                    f"{name}: trained on different data or a different split than {names[0]} "
                    f"({key} {shown[1]} vs {shown[0]}): a paired comparison needs the same "
                    "test examples"
                )


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
