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
    union_section,
)
from vaekit.config import Config, preset_names
from vaekit.models import MODELS
from vaekit.progress import PROGRESS_MODES

_hidden_dims = int_list


def _train_sections() -> dict[str, type]:
    """The config sections whose fields become `vaekit train` flags. The model section is
    the union of every registered model's config fields, with --model (the registry's
    names) first; the model chosen then validates the fields given."""
    from vaekit.config import setting
    from vaekit.models import models_help

    sections = config_sections(Config)
    kind = setting("vae", flag="model", help=models_help())
    classes = [MODELS[name].config_class for name in MODELS]
    sections["model"] = union_section("ModelFlags", classes, [("kind", str, kind)])
    sections["model"].__doc__ = "The model: its kind and the fields of its own config class."
    return sections


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text: str) -> int:
    from vaekit.config import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63 - 1], got {text}")
    return value


def _image_size(text: str) -> list[int]:
    from vaekit.data.files import parse_image_size

    try:
        return parse_image_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


SPLITS = ["train", "val", "test"]
DATA_DIR_HELP = (
    "directory holding the dataset's files (default: none: $VAEKIT_DATA_DIR, ~/.cache/vaekit "
    "and /usr/share/datasets are searched, else the files are downloaded)"
)
RUN_DATA_DIR_HELP = (
    "directory holding the dataset's files (default: none: the run's own data.data_dir, "
    "then the standard places)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="vaekit",
        description="Variational autoencoders: train, evaluate and sample. "
        "All likelihood numbers are in nats per example unless they say bits per dim.",
    )
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser(
        "train",
        help="train a VAE or AE and write a run directory",
        description="Train a model. Flags override the --config file, --set overrides both; "
        "the defaults shown are the built-in ones, which a --config preset or file replaces. "
        "Writes OUT/config.json, model.safetensors, metrics.jsonl, checkpoints/{last,best}/, "
        "tensorboard/, samples.png, reconstructions.png, report.html. Multi-GPU/multi-node: "
        "launch with torchrun (see docs/guide/training.md, Multi-GPU and multi-node).",
    )
    p.add_argument(
        "--config",
        metavar="PRESET|FILE",
        help=f"a preset shipped with vaekit ({', '.join(preset_names())}) or a TOML file "
        "(default: none: the built-in defaults shown below)",
    )
    p.add_argument(
        "--out", type=Path, help="run directory to create (default: none; required unless --resume)"
    )
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue the run in RUN from RUN/checkpoints/last (its config, changed only by "
        "the flags and --set given here; the model and data sections cannot change; "
        "default: none, a new run)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run directory; only one vaekit created (it holds a "
        ".vaekit-run marker), never the current directory, a parent of it or the home folder",
    )
    # One flag per config field, generated from the fields' own help (vaekit/cli/flags.py).
    flags = add_config_flags(
        p,
        _train_sections(),
        choices={"model.kind": sorted(MODELS)},
        types_={
            "data.image_size": _image_size,
            "train.seed": _seed,
            "model.likelihood_components": _positive_int,
        },
    )
    p.set_defaults(config_flags=flags)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any config field, e.g. --set optim.lr=3e-4 (repeatable; default: none)",
    )

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
        "--num-samples",
        type=_positive_int,
        default=5000,
        help="K importance samples per example (default 5000 for the final number; use e.g. "
        "100 for a quick check)",
    )
    p.add_argument(
        "--chunk-size",
        type=_positive_int,
        help="samples per decoder call (default: chosen from --memory-mb)",
    )
    p.add_argument(
        "--memory-mb",
        type=float,
        default=32,
        help="memory budget of one decoder call in MiB, sets the chunk size (default 32, "
        "cache-friendly on CPU; raise it on a GPU)",
    )
    p.add_argument("--batch-size", type=_positive_int, default=100, help="examples per batch")
    p.add_argument(
        "--max-examples", type=_positive_int, help="evaluate only the first N (default: all)"
    )
    p.add_argument("--data-dir", help=RUN_DATA_DIR_HELP)
    p.add_argument("--seed", type=_seed, default=0, help="seed of the draws (default 0)")
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

    p = commands.add_parser("sample", help="decode draws from the prior into a PNG grid")
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("-n", type=_positive_int, default=64, help="number of samples (default 64)")
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the prior draws")
    p.add_argument(
        "--label",
        type=int,
        help="class to draw for a conditional model (--model cvae) (default: none, one row per "
        "class)",
    )

    def picture_command(name: str, help_text: str) -> argparse.ArgumentParser:
        q = commands.add_parser(name, help=help_text, description=help_text)
        q.add_argument("run", type=Path, help="run or model directory")
        q.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
        q.add_argument("--split", default="test", choices=SPLITS, help="examples from this split")
        q.add_argument("--seed", type=_seed, default=0, help="seed of the data transform draw")
        q.add_argument("--data-dir", help=RUN_DATA_DIR_HELP)
        return q

    p = picture_command(
        "reconstruct",
        "PNG of examples beside their reconstructions E[x|z=mu(x)]; with --data, the "
        "reconstructions of new data in its own units (CSV in, CSV out; .npy in, .npy out; an "
        "image folder in, a folder of 8-bit PNGs out; or as the -o suffix says)",
    )
    p.add_argument("-n", type=_positive_int, default=16, help="number of examples (default 16)")
    p.add_argument(
        "--data",
        type=Path,
        help="new data to reconstruct (image folder, .npy/.npz, .csv/.parquet); -o is then "
        "a .csv, .parquet, .npy or a new folder for PNGs (default: none, the run's test split)",
    )
    _trust_scale_flag(p)
    p = picture_command("interpolate", "PNG of latent interpolations between pairs of examples")
    p.add_argument("--pairs", type=_positive_int, default=8, help="pairs, one per row (default 8)")
    p.add_argument("--steps", type=_positive_int, default=10, help="images per row (default 10)")
    p = picture_command(
        "traverse", "PNG of latent traversals: one coordinate at a time, rows ordered by KL"
    )
    p.add_argument("--index", type=int, default=0, help="example whose mu(x) is the anchor")
    p.add_argument("--max-dims", type=_positive_int, default=10, help="rows (default 10)")
    p.add_argument("--span", type=float, default=3.0, help="traverse [-span, span] (default 3)")
    p.add_argument("--steps", type=_positive_int, default=11, help="images per row (default 11)")
    p = picture_command(
        "latent-map",
        "PNG of posterior means coloured by label (PCA beyond 2-D); a 2-D latent space also "
        "gets OUTPUT-manifold.png, the decoded manifold",
    )
    p.add_argument("--max-examples", type=_positive_int, default=5000, help="points (default 5000)")

    p = commands.add_parser(
        "encode",
        help="encode new data: posterior means E_q[z|x] [N, m] to a .npy or .csv file",
        description="Encode new data on the training data's scale (the run's saved "
        "preprocessing is applied; data on another scale is refused) into posterior means "
        "[N, m]. Reads what train reads: an image folder, .npy/.npz (any shape whose rows "
        "reshape to the data shape), .csv/.parquet (columns matched by name).",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("input", type=Path, help="image folder, .npy/.npz array or .csv/.parquet table")
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
    p.add_argument("--seed", type=_seed, default=0, help="seed of dequantisation noise and draws")

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
        type=int,
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
    p.add_argument("-o", "--output", type=Path, required=True, help="CSV file to write")
    p.add_argument(
        "--num-samples", type=_positive_int, default=100, help="K per example (default 100)"
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
        type=lambda text: [c for c in text.split(",") if c],
        help="image sub-folders that are out-of-distribution, comma-separated (default: none)",
    )
    p.add_argument(
        "--max-examples", type=_positive_int, help="score only the first N rows (default: all)"
    )
    p.add_argument("--batch-size", type=_positive_int, default=100, help="examples per batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
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
        type=_positive_int,
        default=500,
        help="K if an evaluation is needed (default 500: a quick check)",
    )
    p.add_argument(
        "--max-examples", type=_positive_int, default=1000, help="examples evaluated if needed"
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
        type=_positive_int,
        default=1000,
        help="test examples on the map, embedded in the page (default 1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data transform draw")
    p.add_argument("--data-dir", help=RUN_DATA_DIR_HELP)

    _add_contrast_parsers(commands)
    _add_export_parser(commands)
    return parser


def _axes(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected two coordinates I,J such as 0,1; got {text!r}")
    return int(parts[0]), int(parts[1])


def _trust_scale_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-scale",
        action="store_true",
        help="skip the check that refuses data whose typical value lies far from the "
        "training data's (or 8-bit data given as 0/1): for data that really is this far off",
    )


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
    p.add_argument("--latent-dim", type=_positive_int, default=3, help="m (default 3)")
    p.add_argument(
        "--em-iterations", type=_positive_int, default=500, help="EM iterations (default 500)"
    )
    p.add_argument(
        "--steps", type=_positive_int, default=3000, help="linear-VAE Adam steps (default 3000)"
    )
    p.add_argument("--lr", type=float, default=0.1, help="linear-VAE Adam learning rate (0.1)")
    p.add_argument(
        "--max-examples", type=_positive_int, default=2000, help="examples used (default 2000)"
    )
    p.add_argument("--seed", type=_seed, default=0, help="data, initialisation and rotation seed")
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
        type=_positive_int,
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
    p.add_argument("--epochs", type=_positive_int, default=40, help="epochs each (default 40)")
    p.add_argument("--latent-dim", type=_positive_int, default=8, help="m (default 8)")
    p.add_argument("--hidden-dims", type=_hidden_dims, help="MLP widths (default 256,128)")
    p.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate (default 5e-3)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="default 32")
    p.add_argument("--seed", type=_seed, default=0, help="training and evaluation seed")
    p.add_argument(
        "--num-samples",
        type=_positive_int,
        default=500,
        help="K importance samples per test example for the nll (default 500)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
