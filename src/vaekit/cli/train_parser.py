"""The flags of ``vaekit train``: the run's own, then one group per config section, generated
from the config fields (:mod:`vaekit.cli.flags`)."""

from __future__ import annotations

from pathlib import Path

from vaekit.cli.common import image_size
from vaekit.cli.flags import (
    add_config_flags,
    config_sections,
    positive_int,
    seed_int,
    union_section,
)


def train_sections() -> dict[str, type]:
    """The config sections whose fields become `vaekit train` flags. The model section is
    the union of every registered model's config fields, with --model (the registry's
    names) first; the model chosen then validates the fields given."""
    from vaekit.config import Config, setting
    from vaekit.models import MODELS, models_help

    sections = config_sections(Config)
    kind = setting("vae", flag="model", help=models_help())
    classes = [MODELS[name].config_class for name in MODELS]
    sections["model"] = union_section("ModelFlags", classes, [("kind", str, kind)])
    sections["model"].__doc__ = "The model: its kind and the fields of its own config class."
    return sections


TRAIN_EXAMPLES = """examples:
  vaekit train --config digits --out runs/digits    a preset shipped with vaekit
  vaekit train --data photos/ --image-size 28x28 --out runs/photos
  vaekit train --data people.csv --epochs 50 --out runs/people
  vaekit train --model hvae --set 'model.latent_dims=[8, 4]' --out runs/hvae
  vaekit train --resume runs/digits --epochs 20     continue a run with a larger budget
"""


def add_train_parser(commands, light: bool) -> None:
    """`vaekit train`: the run's flags first, then one group per config section, generated
    from the config fields. ``light``: the command's name and help only (for `vaekit --help`
    and `--version`, which then need neither the model registry nor torch)."""
    p = commands.add_parser(
        "train",
        help="train a VAE or AE and write a run directory",
        # A short usage line: the flags are listed below, in groups.
        usage="vaekit train [--config PRESET|FILE] (--out RUN | --resume RUN) [FLAG ...]",
        description=TRAIN_EXAMPLES
        + "\nTrain a model. Flags override the --config file, --set overrides both; "
        "the defaults shown are the built-in ones, which a --config preset or file replaces. "
        "Writes OUT/config.json, model.safetensors, metrics.jsonl, checkpoints/{last,best}/, "
        "tensorboard/, samples.png, reconstructions.png, report.html. Multi-GPU/multi-node: "
        "launch with torchrun (see docs/guide/training.md, Multi-GPU and multi-node).",
    )
    if light:
        return
    from vaekit.config import preset_names
    from vaekit.models import MODELS

    run = p.add_argument_group("the run", "what to start from and where to write")
    run.add_argument(
        "--config",
        metavar="PRESET|FILE",
        help=f"a preset shipped with vaekit ({', '.join(preset_names())}) or a TOML file "
        "(default: none: the built-in defaults shown below)",
    )
    run.add_argument(
        "--out", type=Path, help="run directory to create (default: none; required unless --resume)"
    )
    run.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue the run in RUN from RUN/checkpoints/last (its config, changed only by "
        "the flags and --set given here; the model and data sections cannot change; "
        "default: none, a new run)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run directory; only one vaekit created (it holds a "
        ".vaekit-run marker), never the current directory, a parent of it or the home folder",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any config field, e.g. --set optim.lr=3e-4 (repeatable; default: none)",
    )
    run.add_argument(
        "--column-type",
        action="append",
        default=[],
        metavar="NAME=TYPE",
        help="a CSV/Parquet table's column type, replacing the inferred one: real, positive, "
        "zero-inflated (a mass at 0 plus a log-normal above it), count, poisson, ordinal (a "
        "number column's sorted distinct values as ordered levels; never inferred), binary or "
        "categorical (repeatable; the TOML table [data.columns]; default: none, every type "
        "inferred)",
    )
    # One flag per config field, generated from the fields' own help (vaekit/cli/flags.py).
    flags = add_config_flags(
        p,
        train_sections(),
        choices={"model.kind": sorted(MODELS)},
        types_={
            "data.image_size": image_size,
            "train.seed": seed_int,
            "model.likelihood_components": positive_int,
        },
    )
    p.set_defaults(config_flags=flags)
