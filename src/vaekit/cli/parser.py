"""The ``vaekit`` argument parser: every command, its flags and their help.

Flags that come from config fields are generated (:mod:`vaekit.cli.flags`); the rest are
declared here, one ``add_parser`` block per command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vaekit._version import __version__
from vaekit.cli.flags import (
    Parser,
    add_config_flags,
    config_sections,
    int_list,
    nonnegative_int,
    positive_float,
    positive_int,
    real,
    seed_int,
    union_section,
    validated_type,
)
from vaekit.support.progress import PROGRESS_MODES

_hidden_dims = int_list


def _train_sections() -> dict[str, type]:
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


@validated_type
def _image_size(text: str) -> list[int]:
    from vaekit.data.files import parse_image_size

    try:
        return parse_image_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


TRAIN_EXAMPLES = """examples:
  vaekit train --config digits --out runs/digits    a preset shipped with vaekit
  vaekit train --data photos/ --image-size 28x28 --out runs/photos
  vaekit train --data people.csv --epochs 50 --out runs/people
  vaekit train --model hvae --set 'model.latent_dims=[8, 4]' --out runs/hvae
  vaekit train --resume runs/digits --epochs 20     continue a run with a larger budget
"""


def _add_train_parser(commands, light: bool) -> None:
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
        "count, poisson, binary or categorical (repeatable; the TOML table [data.columns]; "
        "default: none, every type inferred)",
    )
    # One flag per config field, generated from the fields' own help (vaekit/cli/flags.py).
    flags = add_config_flags(
        p,
        _train_sections(),
        choices={"model.kind": sorted(MODELS)},
        types_={
            "data.image_size": _image_size,
            "train.seed": seed_int,
            "model.likelihood_components": positive_int,
        },
    )
    p.set_defaults(config_flags=flags)


def build_parser(light: bool = False) -> argparse.ArgumentParser:
    """Every command and its flags. ``light``: without `vaekit train`'s generated flags,
    enough for `vaekit --help` and `vaekit --version` (no model registry, no torch)."""
    parser = Parser(
        prog="vaekit",
        description="Variational autoencoders: train, evaluate and sample. "
        "All likelihood numbers are in nats per example unless they say bits per dim.",
    )
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_train_parser(commands, light)

    p = commands.add_parser(
        "evaluate",
        help="importance-sampled nll, ELBO terms, latent diagnostics and FCD on a split",
        description="Evaluate a trained VAE. nll = -log p(x) in nats per example by importance "
        "sampling (Burda et al. 2015) with K samples; bits_per_dim where the data is discrete; "
        "KL per latent coordinate, active units, aggregate-posterior statistics and the "
        "Fréchet classifier distance (FCD, not FID). Prints the result, then saves "
        "RUN/eval.json (strict JSON: a non-finite number is null, with its reason); if that "
        "file cannot be written it says so and still exits 0.",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("--split", default="test", choices=SPLITS, help="the split to evaluate")
    p.add_argument(
        "--final",
        action="store_true",
        help="the number to publish: K = 5000 importance samples on every example (minutes "
        "to hours; the time is estimated and printed first) (default: off, a quick check: "
        "K = 100 on at most 1000 examples, seconds to a minute)",
    )
    p.add_argument(
        "--num-samples",
        type=positive_int,
        help="K importance samples per example (default 100, a quick check; --final: 5000)",
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        help="samples per decoder call (default: chosen from --memory-mb)",
    )
    p.add_argument(
        "--memory-mb",
        type=positive_float,
        default=32,
        help="memory budget of one decoder call in MiB, sets the chunk size (default 32, "
        "cache-friendly on CPU; raise it on a GPU)",
    )
    p.add_argument("--batch-size", type=positive_int, default=100, help="examples per batch")
    p.add_argument(
        "--max-examples",
        type=positive_int,
        help="evaluate only the first N (default 1000, a quick check; --final or --data: all)",
    )
    p.add_argument("--data-dir", help=RUN_DATA_DIR_HELP)
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--no-fcd", action="store_true", help="skip the Fréchet classifier distance")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--progress",
        default="auto",
        choices=PROGRESS_MODES,
        help="the importance sampling's progress on stderr: auto (a bar with ETA on a "
        "terminal, lines otherwise), bar, plain (a line at every tenth of the examples) "
        "(default: auto)",
    )
    p.add_argument(
        "--data",
        type=Path,
        help="evaluate new data instead of the run's split: an image folder, .npy/.npz, "
        ".csv/.parquet on the training data's scale (all rows; RUN/eval.json is not touched) "
        "(default: none, the run's own split)",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        help="with --data: write the result as JSON here (default: none, print only)",
    )
    _trust_scale_flag(p)

    p = commands.add_parser(
        "datasets",
        help="list the registered datasets and where their files are",
        description="Registered datasets: shape (C x H x W), size in examples, support of the "
        "model inputs, the default likelihood, and where files that pass their published "
        "checksums were found (nothing is downloaded; a copy that fails is shown as not "
        "verified and is refused by train). `vaekit train --data` also takes a path to "
        "user data: an image folder, .npy, .npz, .csv or .parquet.",
    )
    p.add_argument("--data-dir", help="also look for the files here first (default: none)")

    p = commands.add_parser(
        "sample",
        help="decode draws from the prior into a PNG grid (images), or synthetic rows (.csv, "
        "a model of a mixed-type table)",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("-n", type=positive_int, default=64, help="number of samples (default 64)")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="PNG file to write; for a model of a mixed-type table a .csv of rows in its "
        "columns, types and category strings, each cell drawn from p(v|z)",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the prior draws")
    p.add_argument(
        "--label",
        type=nonnegative_int,
        help="class to draw for a conditional model (--model cvae) (default: none, one row per "
        "class)",
    )

    def picture_command(name: str, help_text: str) -> argparse.ArgumentParser:
        q = commands.add_parser(name, help=help_text, description=help_text)
        q.add_argument("run", type=Path, help="run or model directory")
        q.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
        q.add_argument("--split", default="test", choices=SPLITS, help="examples from this split")
        q.add_argument("--seed", type=seed_int, default=0, help="seed of the data transform draw")
        q.add_argument("--data-dir", help=RUN_DATA_DIR_HELP)
        return q

    p = picture_command(
        "reconstruct",
        "PNG of examples beside their reconstructions E[x|z=mu(x)]; with --data, the "
        "reconstructions of new data in its own units (CSV in, CSV out; .npy in, .npy out; an "
        "image folder in, a folder of 8-bit PNGs out; or as the -o suffix says)",
    )
    p.add_argument("-n", type=positive_int, default=16, help="number of examples (default 16)")
    p.add_argument(
        "--data",
        type=Path,
        help="new data to reconstruct (image folder, .npy/.npz, .csv/.parquet); -o is then "
        "a .csv, .parquet, .npy or a new folder for PNGs (default: none, the run's test split)",
    )
    _trust_scale_flag(p)
    p = picture_command("interpolate", "PNG of latent interpolations between pairs of examples")
    p.add_argument("--pairs", type=positive_int, default=8, help="pairs, one per row (default 8)")
    p.add_argument("--steps", type=positive_int, default=10, help="images per row (default 10)")
    p = picture_command(
        "traverse", "PNG of latent traversals: one coordinate at a time, rows ordered by KL"
    )
    p.add_argument(
        "--index", type=nonnegative_int, default=0, help="example whose mu(x) is the anchor"
    )
    p.add_argument("--max-dims", type=positive_int, default=10, help="rows (default 10)")
    p.add_argument(
        "--span", type=positive_float, default=3.0, help="traverse [-span, span] (default 3)"
    )
    p.add_argument("--steps", type=positive_int, default=11, help="images per row (default 11)")
    p = picture_command(
        "latent-map",
        "PNG of posterior means coloured by label (PCA beyond 2-D); a 2-D latent space also "
        "gets OUTPUT-manifold.png, the decoded manifold",
    )
    p.add_argument("--max-examples", type=positive_int, default=5000, help="points (default 5000)")

    p = commands.add_parser(
        "encode",
        help="encode new data: posterior means E_q[z|x] [N, m] to a .npy or .csv file",
        description="Encode new data on the training data's scale (the run's saved "
        "preprocessing is applied; data on another scale is refused) into posterior means "
        "[N, m]. Reads what train reads: an image folder, .npy/.npz (any shape whose rows "
        "reshape to the data shape), .csv/.parquet (columns matched by name).",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("input", type=Path, nargs="?", metavar="DATA", help="the same as --data")
    p.add_argument(
        "--data",
        type=Path,
        help="the data to encode: an image folder, .npy/.npz array or .csv/.parquet table "
        "(default: none; give it here or as DATA)",
    )
    p.set_defaults(data_alias="input")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help=".npy (or .csv: z1..zm) for the means"
    )
    p.add_argument(
        "--log-var",
        type=Path,
        help=".npy/.csv file for log Sigma_jj(x) [N, m] (default: none, not written)",
    )
    p.add_argument(
        "--sample",
        type=Path,
        help=".npy/.csv file for one draw z ~ q(z|x) [N, m] (default: none, not written)",
    )
    _trust_scale_flag(p)
    p.add_argument(
        "--preprocessed",
        action="store_true",
        help="the input is already model input (skip the saved preprocessing)",
    )
    p.add_argument(
        "--seed", type=seed_int, default=0, help="seed of dequantisation noise and draws"
    )

    _add_impute_parser(commands)

    p = commands.add_parser(
        "decode",
        help="decode codes [N, m] into decoder means E[x|z] in the data's units",
        description="Decode codes [N, m] into E[x|z] in the data's own units: a table "
        "un-standardised with its column names (.csv/.parquet), arrays on the input's scale "
        "(.npy; e.g. grey levels 0..255), or 8-bit PNGs (a new folder name as -o).",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("input", type=Path, help="codes [N, m]: .npy, or a .csv/.parquet of m columns")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help=".csv, .parquet, .npy or a new folder"
    )
    p.add_argument(
        "--label",
        type=nonnegative_int,
        help="the class to decode for a conditional model (--model cvae), which needs one: "
        "E[x|z,y] for every code (default: none; a model without classes takes none)",
    )

    p = commands.add_parser(
        "score",
        help="per-example anomaly scores of new data (-log p(x), -ELBO, reconstruction error)",
        description="Write one CSV row per example of new data: importance-sampled -log p(x) "
        "of the data as given (nats) with its Monte-Carlo standard error, -ELBO, the squared "
        "reconstruction error in the data's units, and the chosen remedy's score; higher = "
        "more out-of-distribution. With labels (an 'ood' column or .npz array of 0/1, or "
        "image sub-folders in/ and out/) it reports AUROC and AUPRC of every score. A "
        "conditional model (--model cvae) scores -log p(x|y) where the data bring class labels, "
        "else the class-marginal -log p(x) = -log (1/C) sum_y p(x|y) (C times the draws).",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument(
        "--data", type=Path, required=True, help="image folder, .npy/.npz, .csv/.parquet"
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        help="CSV file to write, one row per example (default: none: print the summary only)",
    )
    p.add_argument(
        "--num-samples", type=positive_int, default=100, help="K per example (default 100)"
    )
    p.add_argument(
        "--remedy",
        default="none",
        choices=["none", "complexity", "typicality"],
        help="also a score that corrects the likelihood's known failure: complexity (Serrà et "
        "al. 2020: -log2 p(x) minus the PNG-compressed size in bits; images) or typicality "
        "(|nll - mean nll of in-distribution data|, Nalisnick et al. 2019)",
    )
    p.add_argument(
        "--reference",
        type=Path,
        help="typicality: in-distribution reference data (default: the run's validation split)",
    )
    p.add_argument("--ood-column", default="ood", help="label column / .npz array (default ood)")
    p.add_argument(
        "--ood-classes",
        type=_names,
        help="image sub-folders that are out-of-distribution, comma-separated (default: none)",
    )
    p.add_argument(
        "--max-examples", type=positive_int, help="score only the first N rows (default: all)"
    )
    p.add_argument("--batch-size", type=positive_int, default=100, help="examples per batch")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    _trust_scale_flag(p)

    p = commands.add_parser(
        "report",
        help="write RUN/report.html: headline numbers, evaluation table, every picture",
        description="Write one self-contained HTML page (images embedded): the headline (nll "
        "± standard error, bits/dim, run time, device, versions), the evaluation table, every "
        "picture, and the config folded away. Reuses RUN/eval.json when it matches the "
        "weights, else evaluates first with --num-samples. The evaluation is printed first; if "
        "the page cannot be written, the error names the file (exit 2).",
    )
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument(
        "--num-samples",
        type=positive_int,
        default=100,
        help="K if an evaluation is needed (default 100: a quick check, as vaekit evaluate's)",
    )
    p.add_argument(
        "--max-examples",
        type=positive_int,
        default=1000,
        help="examples evaluated if needed (default 1000)",
    )
    p.add_argument("--data-dir", help=RUN_DATA_DIR_HELP)

    p = commands.add_parser(
        "explore",
        help="write RUN/explore.html: an interactive latent explorer (offline, one file)",
        description="Write one self-contained HTML page that decodes in the browser (no network, "
        "no Python at view time): one slider per latent coordinate ordered by its KL in nats "
        "(by code variance for an AE, which has no KL), a map of the test set's posterior "
        "means (hover or click to decode, click an example to see its input beside its "
        "reconstruction) and an interpolation between two picked examples.",
    )
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument(
        "-o", "--output", type=Path, help="HTML file to write (default RUN/explore.html)"
    )
    p.add_argument(
        "--axes",
        type=_axes,
        help="map two latent coordinates I,J instead of the first two principal axes "
        "(default: PCA)",
    )
    p.add_argument(
        "--max-points",
        type=positive_int,
        default=1000,
        help="test examples on the map, embedded in the page (default 1000)",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the data transform draw")
    p.add_argument("--data-dir", help=RUN_DATA_DIR_HELP)

    _add_contrast_parsers(commands)
    _add_export_parser(commands)
    _add_pack_parser(commands)
    for command in commands.choices.values():  # `vaekit sample ... --debug` works too
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
        )
    return parser


@validated_type
def _axes(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected two coordinates I,J such as 0,1; got {text!r}")
    first, second = (nonnegative_int(p.strip()) for p in parts)
    return first, second


@validated_type
def _names(text: str) -> list[str]:
    """``a,b`` -> ``["a", "b"]`` (empty names dropped)."""
    return [name for name in text.split(",") if name]


def _trust_scale_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-scale",
        action="store_true",
        help="skip the check that refuses data whose typical value lies far from the "
        "training data's (or 8-bit data given as 0/1): for data that really is this far off",
    )


def _add_impute_parser(commands) -> None:
    """``vaekit impute``: the missing cells of a mixed-type table, filled by the run's model."""
    p = commands.add_parser(
        "impute",
        help="fill the missing cells of a mixed-type table (importance-weighted, MIWAE)",
        description="Fill the missing cells of a table with a run trained on a mixed-type "
        "table: K draws z ~ q(z|observed cells), importance-weighted (Mattei & Frellsen 2019); "
        "a real, positive or count cell gets its posterior-predictive mean (a count rounded), "
        "a binary or categorical cell its most probable category. Observed cells are copied "
        "as read; column names, order and category strings are kept.",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument(
        "--data", type=Path, required=True, help="the table (.csv/.parquet) with missing cells"
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="the filled table (.csv)")
    p.add_argument(
        "--num-samples",
        type=positive_int,
        default=100,
        help="K importance samples per row (default 100)",
    )
    p.add_argument(
        "--draws",
        type=positive_int,
        help="write N multiple imputations instead, OUTPUT-1.csv ... OUTPUT-N.csv, each cell "
        "drawn from the importance-resampled posterior predictive (default: none, the means)",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the draws (default 0)")


def _add_export_parser(commands) -> None:
    """`vaekit export`: the encoder and decoder as ONNX graphs."""
    p = commands.add_parser(
        "export",
        help="write the encoder and decoder as ONNX graphs (dynamic batch size)",
        description="Export a run's model: OUT/encoder.onnx (x -> the code, or q(z|x)'s mean "
        "and parameters), OUT/decoder.onnx (z -> E[x|z] and the decoder's raw output) and "
        "OUT/export.json (names, shapes, preprocessing); a conditional model's graphs also "
        "take the labels y. Each graph is checked with onnxruntime against PyTorch (relative "
        "error <= 1e-5) before it is kept; a graph no fixed graph can reproduce (the IAF "
        "posterior's Monte-Carlo mean) is refused with one line and the other is still "
        "exported. Needs the onnx extra: pip install 'vaekit[onnx]'.",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format (onnx)")
    p.add_argument("-o", "--out", type=Path, help="directory to create (default RUN/onnx)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def _add_pack_parser(commands) -> None:
    """`vaekit pack`: decode a source once into streamed .npy shards."""
    p = commands.add_parser(
        "pack",
        help="decode data once into .npy shards that training streams (--data DIR)",
        description="Load SOURCE as `vaekit train --data SOURCE` would (a built-in set, an image "
        "folder, an array, a table), make its train/validation/test split once, and write each "
        "split as .npy shards with a pack.json (split, transform, per-shard SHA-256). Train and "
        "evaluate then read the shards memory-mapped: memory stays bounded whatever the data's "
        "size. An interrupted pack is resumed by running the same command again. "
        "`vaekit pack --verify DIR` checks every shard's checksum.",
    )
    p.add_argument(
        "source", help="what to pack: a dataset name or a path (as train's --data) (required)"
    )
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        help="the pack folder to create, required unless --verify (default: none)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="SOURCE is a pack: check its shards' checksums (default: off)",
    )
    p.add_argument(
        "--shard-mb", type=positive_float, default=64.0, help="MiB per shard (default 64)"
    )
    p.add_argument(
        "--format",
        choices=["npy", "webdataset"],
        default="npy",
        help="npy: SPLIT-00000.npy shards of rows; webdataset: SPLIT/shard-000000.tar with "
        "KEY.npy + KEY.cls per example, which WebDataset tools read (default npy)",
    )
    p.add_argument(
        "--data-dir",
        help="where a built-in set's files are looked for first (default: the standard places)",
    )
    p.add_argument(
        "--val-fraction",
        type=real(0.0, maximum=0.99),
        default=0.1,
        help="validation share (default 0.1)",
    )
    p.add_argument("--split-seed", type=seed_int, default=0, help="seed of the split (default 0)")
    p.add_argument(
        "--image-size",
        type=_image_size,
        help="H,W to resize an image folder to (default: as stored)",
    )
    p.add_argument(
        "--label-column", help="a table's column of integer class labels (default: none)"
    )


def _add_contrast_parsers(commands) -> None:
    """`vaekit em` and `vaekit compare`: the lecture's two contrasts."""
    p = commands.add_parser(
        "em",
        help="probabilistic PCA: closed-form MLE, exact EM and linear VAEs side by side",
        description="Fit probabilistic PCA by its closed-form MLE, by exact EM and by linear "
        "VAEs (diagonal and full-covariance q) on the same data; report exact log p(x), the "
        "ELBO and their gap KL(q || p(z|x)) in nats per example.",
    )
    p.add_argument(
        "--data",
        default="synthetic",
        help="'synthetic' (default: known W, b, sigma) or a registered dataset (flattened)",
    )
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--latent-dim", type=positive_int, default=3, help="m (default 3)")
    p.add_argument(
        "--em-iterations", type=positive_int, default=500, help="EM iterations (default 500)"
    )
    p.add_argument(
        "--steps", type=positive_int, default=3000, help="linear-VAE Adam steps (default 3000)"
    )
    p.add_argument(
        "--lr", type=positive_float, default=0.1, help="linear-VAE Adam learning rate (0.1)"
    )
    p.add_argument(
        "--max-examples", type=positive_int, default=2000, help="examples used (default 2000)"
    )
    p.add_argument(
        "--seed", type=seed_int, default=0, help="data, initialisation and rotation seed"
    )
    p.add_argument(
        "--out",
        type=Path,
        help="write OUT/report.html, OUT/em.json and figures (default: none, print only)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = commands.add_parser(
        "compare",
        help="RUN_A RUN_B ...: paired differences with standard errors; or AE vs VAE (--data)",
        description="With run directories (vaekit compare RUN_A RUN_B [RUN_C ...]): evaluate "
        "every run on the same test examples with the same K and seed and print, for each run "
        "against RUN_A, the mean per-example difference of -log p(x) (-log p(x|y) for "
        "conditional models), the ELBO, bits/dim and the KL ± its paired standard error, and "
        "of active units ± a bootstrap standard error; the nll and ELBO are of the data as "
        "given, as vaekit evaluate reports them. Runs on different data or splits, and runs "
        "that condition on the label differently, are refused. Writes OUT/report.html and "
        "OUT/compare.json (OUT defaults to compare-A-vs-B beside RUN_A). Without run "
        "directories: the lecture's AE vs VAE. Train an AE and a VAE identically (or load "
        "two runs with --runs) and write OUT/report.html and OUT/compare.json: reconstruction "
        "error, prior samples and their sample-quality score, the code distribution against "
        "N(0, I), interpolations, and the VAE's held-out nll (the AE has no likelihood).",
    )
    p.add_argument(
        "compare_runs",
        nargs="*",
        type=Path,
        metavar="RUN",
        help="two or more run directories trained on the same data and split (RUN_A first)",
    )
    p.add_argument(
        "--max-examples",
        type=positive_int,
        help="RUN mode: only the first N test examples (default: all)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="report directory to create (default: compare-A-vs-B beside RUN_A in RUN mode)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--data", default="digits", help="dataset to train both on (default digits)")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument(
        "--runs",
        nargs=2,
        type=Path,
        metavar=("AE_RUN", "VAE_RUN"),
        help="compare two existing run directories instead of training (default: none, train both)",
    )
    p.add_argument("--epochs", type=positive_int, default=40, help="epochs each (default 40)")
    p.add_argument("--latent-dim", type=positive_int, default=8, help="m (default 8)")
    p.add_argument("--hidden-dims", type=_hidden_dims, help="MLP widths (default 256,128)")
    p.add_argument(
        "--lr", type=positive_float, default=5e-3, help="Adam learning rate (default 5e-3)"
    )
    p.add_argument("--batch-size", type=positive_int, default=32, help="default 32")
    p.add_argument("--seed", type=seed_int, default=0, help="training and evaluation seed")
    p.add_argument(
        "--num-samples",
        type=positive_int,
        default=500,
        help="K importance samples per test example for the nll (default 500)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
