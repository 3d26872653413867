"""The flags of the commands that read one trained run: ``evaluate``, ``sample``, the
pictures (``reconstruct``, ``interpolate``, ``traverse``, ``latent-map``), ``report``,
``explore`` and ``export``."""

from __future__ import annotations

import argparse
from pathlib import Path

from vaekit.cli.common import (
    RUN_DATA_DIR_HELP,
    SPLITS,
    axes,
    device_flag,
    trust_scale_flag,
    unknown_categories_flag,
)
from vaekit.cli.flags import nonnegative_int, positive_float, positive_int, seed_int
from vaekit.support.progress import PROGRESS_MODES


def add_evaluate_parser(commands) -> None:
    """`vaekit evaluate`: the numbers of one run on a split or new data."""
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
    device_flag(p)
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
    trust_scale_flag(p)
    unknown_categories_flag(p)


def add_sample_parser(commands) -> None:
    """`vaekit sample`: prior draws decoded into a grid or synthetic rows."""
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


def add_picture_parsers(commands) -> None:
    """`vaekit reconstruct`, `interpolate`, `traverse` and `latent-map`: one PNG each."""

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
        "image folder in, a folder of 8-bit PNGs out; or as the -o suffix says); a model of "
        "a mixed table needs --data (rows out, in the table's types)",
    )
    p.add_argument("-n", type=positive_int, default=16, help="number of examples (default 16)")
    p.add_argument(
        "--data",
        type=Path,
        help="new data to reconstruct (image folder, .npy/.npz, .csv/.parquet); -o is then "
        "a .csv, .parquet, .npy or a new folder for PNGs (default: none, the run's test split)",
    )
    trust_scale_flag(p)
    unknown_categories_flag(p)
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


def add_report_parser(commands) -> None:
    """`vaekit report`: RUN/report.html."""
    p = commands.add_parser(
        "report",
        help="write RUN/report.html: headline numbers, evaluation table, every picture",
        description="Write one self-contained HTML page (images embedded): the headline (nll "
        "± standard error, bits/dim, run time, device, versions), the evaluation table, every "
        "picture (for a mixed table: test rows beside their reconstructions and synthetic "
        "rows, in its types), and the config folded away. Reuses RUN/eval.json when it matches the "
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


def add_explore_parser(commands) -> None:
    """`vaekit explore`: RUN/explore.html."""
    p = commands.add_parser(
        "explore",
        help="write RUN/explore.html: an interactive latent explorer (offline, one file)",
        description="Write one self-contained HTML page that decodes in the browser (no network, "
        "no Python at view time): one slider per latent coordinate ordered by its KL in nats "
        "(by code variance for an AE, which has no KL), a map of the test set's posterior "
        "means (hover or click to decode, click an example to see its input beside its "
        "reconstruction; a mixed table's row in its types) and an interpolation between two "
        "picked examples. A hierarchical model decodes by group: one layer's sliders move, "
        "the other groups held at their prior means or (deep-hvae) at a chosen example's "
        "posterior means or a prior draw.",
    )
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument(
        "-o", "--output", type=Path, help="HTML file to write (default RUN/explore.html)"
    )
    p.add_argument(
        "--axes",
        type=axes,
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


def add_export_parser(commands) -> None:
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
