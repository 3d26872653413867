"""What several commands' flags share: the splits, help texts, and flag types and flags of
more than one command."""

from __future__ import annotations

import argparse

from vaekit.cli.flags import nonnegative_int, validated_type
from vaekit.support.device import DEFAULT_DEVICE, DEVICE_HELP

SPLITS = ["train", "val", "test"]
DEBUG_HELP = "on an unexpected error, show Python's traceback instead of one line (default: off)"
DATA_DIR_HELP = (
    "directory holding the dataset's files (default: none: $VAEKIT_DATA_DIR, ~/.cache/vaekit "
    "and /usr/share/datasets are searched, else the files are downloaded)"
)
RUN_DATA_DIR_HELP = (
    "directory holding the dataset's files (default: none: the run's own data.data_dir, "
    "then the standard places)"
)


@validated_type
def image_size(text: str) -> list[int]:
    """``28x28`` or ``28`` -> ``[H, W]`` in pixels (``--image-size``)."""
    from vaekit.data.files import parse_image_size

    try:
        return parse_image_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@validated_type
def axes(text: str) -> tuple[int, int]:
    """``I,J`` -> two latent coordinates (``explore --axes``)."""
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected two coordinates I,J such as 0,1; got {text!r}")
    first, second = (nonnegative_int(p.strip()) for p in parts)
    return first, second


@validated_type
def names(text: str) -> list[str]:
    """``a,b`` -> ``["a", "b"]`` (empty names dropped)."""
    return [name for name in text.split(",") if name]


def unknown_categories_flag(p: argparse.ArgumentParser) -> None:
    """``--unknown-categories``, of every command that reads a new mixed-type table."""
    p.add_argument(
        "--unknown-categories",
        choices=["error", "missing"],
        default="error",
        help="a table's category that training never saw: error (default: refuse the file, "
        "naming the cell) or missing (read the cell as missing, marginalised like a blank "
        "one; a note on stderr says how many cells)",
    )


def trust_scale_flag(p: argparse.ArgumentParser) -> None:
    """``--trust-scale``, of every command that reads new data for a trained model."""
    p.add_argument(
        "--trust-scale",
        action="store_true",
        help="skip the check that refuses data whose typical value lies far from the "
        "training data's (or 8-bit data given as 0/1): for data that really is this far off",
    )


def device_flag(p: argparse.ArgumentParser) -> None:
    """``--device`` of every command that runs a model, worded and defaulted as ``vaekit
    train``'s (generated from ``train.device``), so one name means one device everywhere."""
    p.add_argument(
        "--device", default=DEFAULT_DEVICE, help=f"{DEVICE_HELP} (default: {DEFAULT_DEVICE})"
    )
