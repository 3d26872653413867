"""Command line: parse arguments and call one library function per command.

Every error the user can cause (bad flag value, missing file, corrupt model, dishonest
likelihood) ends in one line ``vaekit: error: ...`` on stderr and exit status 2.
Set ``VAEKIT_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from vaekit import __version__
from vaekit.cli_flags import (
    Parser,
    add_config_flags,
    config_overrides,
    config_sections,
    int_list,
)
from vaekit.config import Config, ConfigError, apply_overrides, load_config, preset_names
from vaekit.models import MODELS
from vaekit.progress import PROGRESS_MODES
from vaekit.spelling import command_line

_hidden_dims = int_list


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
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
        "launch with torchrun (see README, Training).",
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
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    # One flag per config field, generated from the fields' own help (vaekit/cli_flags.py).
    flags = add_config_flags(
        p,
        config_sections(Config),
        choices={"model.kind": sorted(MODELS)},
        types_={"data.image_size": _image_size},
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
        "Fréchet classifier distance (FCD, not FID). Saves RUN/eval.json.",
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
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
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

    p = commands.add_parser(
        "datasets",
        help="list the registered datasets and where their files are",
        description="Registered datasets: shape (C x H x W), size in examples, support of the "
        "model inputs, the default likelihood, and where the files were found (nothing is "
        "downloaded). `vaekit train --data` also takes a path to user data: an image "
        "folder, .npy, .npz, .csv or .parquet.",
    )
    p.add_argument("--data-dir", help="also look for the files here first (default: none)")

    p = commands.add_parser("sample", help="decode draws from the prior N(0, I) into a PNG grid")
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("-n", type=_positive_int, default=64, help="number of samples (default 64)")
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the prior draws")

    def picture_command(name: str, help_text: str) -> argparse.ArgumentParser:
        q = commands.add_parser(name, help=help_text, description=help_text)
        q.add_argument("run", type=Path, help="run or model directory")
        q.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
        q.add_argument("--split", default="test", choices=SPLITS, help="examples from this split")
        q.add_argument("--seed", type=int, default=0, help="seed of the data transform draw")
        q.add_argument("--data-dir", help=RUN_DATA_DIR_HELP)
        return q

    p = picture_command("reconstruct", "PNG of examples beside their reconstructions E[x|z=mu(x)]")
    p.add_argument("-n", type=_positive_int, default=16, help="number of examples (default 16)")
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
        help="encode a .npy array: posterior means E_q[z|x] [N, m] to a .npy file",
        description="Encode rows of a .npy array [N, *data_shape] given in the dataset's stored "
        "form (the model's saved preprocessing is applied) into posterior means [N, m].",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("input", type=Path, help=".npy data array [N, *data_shape] or [N, D]")
    p.add_argument("-o", "--output", type=Path, required=True, help=".npy file for the means")
    p.add_argument(
        "--log-var",
        type=Path,
        help=".npy file for log Sigma_jj(x) [N, m] (default: none, not written)",
    )
    p.add_argument(
        "--sample",
        type=Path,
        help=".npy file for one draw z ~ q(z|x) [N, m] (default: none, not written)",
    )
    p.add_argument(
        "--preprocessed",
        action="store_true",
        help="the input is already model input (skip the saved preprocessing)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of dequantisation noise and draws")

    p = commands.add_parser(
        "decode",
        help="decode a .npy array of codes [N, m] into decoder means E[x|z] (.npy)",
        description="Decode codes [N, m] into E[x|z] [N, *data_shape] (model space).",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("input", type=Path, help=".npy array of codes [N, m]")
    p.add_argument("-o", "--output", type=Path, required=True, help=".npy file to write")

    p = commands.add_parser(
        "report",
        help="write RUN/report.html: config, evaluation table and every picture",
        description="Write one self-contained HTML page (images embedded). Reuses RUN/eval.json "
        "when it matches the weights, else evaluates first with --num-samples.",
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

    _add_contrast_parsers(commands)
    return parser


def _add_contrast_parsers(commands) -> None:
    """`vaekit em` and `vaekit compare`: the lecture's two contrasts (issue 6)."""
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
    p.add_argument("--seed", type=int, default=0, help="data, initialisation and rotation seed")
    p.add_argument(
        "--out",
        type=Path,
        help="write OUT/report.html, OUT/em.json and figures (default: none, print only)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = commands.add_parser(
        "compare",
        help="AE vs VAE: same networks, data, budget and seed; one comparison report",
        description="Train an AE and a VAE identically (or load two runs) and write "
        "OUT/report.html and OUT/compare.json: reconstruction error, prior samples and their "
        "sample-quality score, the code distribution against N(0, I), interpolations, and "
        "the VAE's held-out nll (the AE has no likelihood).",
    )
    p.add_argument("--out", type=Path, required=True, help="report directory to create")
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
    p.add_argument("--seed", type=int, default=0, help="training and evaluation seed")
    p.add_argument(
        "--num-samples", type=_positive_int, default=500, help="K for the VAE's nll (500)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_train(args: argparse.Namespace) -> None:
    from vaekit.train import run_config, train

    if args.resume is None and args.out is None:
        raise ValueError("train: give --out RUN for a new run, or --resume RUN to continue one")
    if args.resume is not None and args.config is not None:
        raise ValueError("--resume uses the run's own config: give --set/flags, not --config")
    if args.resume is not None:
        config = run_config(args.resume)
    else:
        config = load_config(args.config) if args.config else Config()
    config = apply_overrides(config, config_overrides(args, args.config_flags) + args.set)
    # train() prints the progress and, at the end, a summary with every file it wrote.
    train(config, out=args.out, overwrite=args.overwrite, resume=args.resume)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from vaekit.evaluate import evaluate_run

    result = evaluate_run(
        args.run,
        args.data_dir,
        split=args.split,
        num_samples=args.num_samples,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        memory_budget_mb=args.memory_mb,
        seed=args.seed,
        max_examples=args.max_examples,
        fcd=not args.no_fcd,
        progress=args.progress,
        log=lambda line: print(line, file=sys.stderr),
    )
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['dataset']} {result['split']} split, {result['num_examples']} examples, "
        f"K = {result['num_samples']} importance samples"
    )
    print(
        f"  nll       {result['nll']:.3f} ± {result['nll_stderr']:.3f} nats per example "
        "(-log p(x), importance-sampled; ± one standard error)"
    )
    if "bits_per_dim" in result:
        print(f"  bits/dim  {result['bits_per_dim']:.4f} bits per dimension (discrete data)")
    print(f"  ELBO      {result['elbo']:.3f} nats per example")
    print(f"  log p(x|z) {result['log_px_z']:.3f} nats per example (reconstruction term)")
    print(f"  KL        {result['kl']:.3f} nats per example (KL(q(z|x) || p(z)))")
    m = len(result["kl_per_dim"])
    print(f"  active    {result['active_units']} of {m} latent units (Var_x E_q[z_j] > 0.01)")
    agg = result["aggregate_posterior"]
    print(
        f"  q(z)      KL(N(mean, cov) || N(0, I)) {agg['kl_gaussian_fit_to_prior']:.3f} nats, "
        f"|mean| {agg['mean_norm']:.3f}, ||cov - I||_F {agg['cov_frobenius_to_identity']:.3f}"
    )
    if "frechet_classifier_distance" in result:
        print(
            f"  FCD       {result['frechet_classifier_distance']:.3f} (Fréchet classifier "
            "distance in vaekit's classifier features; not FID)"
        )
    print(f"  saved to {args.run / 'eval.json'}")


def cmd_sample(args: argparse.Namespace) -> None:
    from vaekit.checkpoint import load
    from vaekit.report.plots import is_image, save_samples

    model = load(args.run)
    if not is_image(model.data_shape):
        raise ValueError(f"{args.run}: data shape {list(model.data_shape)} is not an image")
    if args.output.suffix.lower() != ".png":
        raise ValueError(f"-o {args.output}: the output must be a .png file")
    args.output.parent.mkdir(parents=True, exist_ok=True)  # as reconstruct & co. do
    save_samples(model, args.output, n=args.n, seed=args.seed)
    print(f"wrote {args.output}")


def cmd_datasets(args: argparse.Namespace) -> None:
    from vaekit.data import dataset_table

    print(dataset_table(args.data_dir))


def cmd_reconstruct(args: argparse.Namespace) -> None:
    from vaekit.report.figures import reconstruct_run

    path = reconstruct_run(args.run, args.output, args.n, args.split, args.seed, args.data_dir)
    print(f"wrote {path}")


def cmd_interpolate(args: argparse.Namespace) -> None:
    from vaekit.report.figures import interpolate_run

    path = interpolate_run(
        args.run, args.output, args.pairs, args.steps, args.split, args.seed, args.data_dir
    )
    print(f"wrote {path}")


def cmd_traverse(args: argparse.Namespace) -> None:
    from vaekit.report.figures import traverse_run

    path = traverse_run(
        args.run,
        args.output,
        args.index,
        args.max_dims,
        args.span,
        args.steps,
        args.split,
        args.seed,
        args.data_dir,
    )
    print(f"wrote {path}")


def cmd_latent_map(args: argparse.Namespace) -> None:
    from vaekit.report.figures import latent_map_run

    path = latent_map_run(
        args.run, args.output, args.split, args.max_examples, args.seed, args.data_dir
    )
    print(f"wrote {path}")


def cmd_encode(args: argparse.Namespace) -> None:
    from vaekit.codes import encode_array

    for path in encode_array(
        args.run, args.input, args.output, args.log_var, args.sample, args.preprocessed, args.seed
    ):
        print(f"wrote {path}")


def cmd_decode(args: argparse.Namespace) -> None:
    from vaekit.codes import decode_array

    print(f"wrote {decode_array(args.run, args.input, args.output)}")


def cmd_report(args: argparse.Namespace) -> None:
    from vaekit.report.html import write_report

    path = write_report(args.run, args.num_samples, args.max_examples, args.data_dir, log=print)
    print(f"wrote {path}")


def cmd_em(args: argparse.Namespace) -> None:
    from vaekit.em import em_experiment
    from vaekit.report.contrasts import em_headline

    report = em_experiment(
        data=args.data,
        latent_dim=args.latent_dim,
        em_iterations=args.em_iterations,
        vae_steps=args.steps,
        lr=args.lr,
        seed=args.seed,
        data_dir=args.data_dir,
        max_examples=args.max_examples,
        out=args.out,
        log=(lambda _: None) if args.json else print,
    )
    print(json.dumps(report) if args.json else "\n".join(em_headline(report)))


def cmd_compare(args: argparse.Namespace) -> None:
    from vaekit.compare import compare, compare_headline

    result = compare(
        args.out,
        data=args.data,
        epochs=args.epochs,
        latent_dim=args.latent_dim,
        hidden_dims=args.hidden_dims,
        seed=args.seed,
        runs=args.runs,
        num_samples=args.num_samples,
        lr=args.lr,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        overwrite=args.overwrite,
        log=(lambda _: None) if args.json else print,
    )
    print(json.dumps(result) if args.json else "\n".join(compare_headline(result)))


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "sample": cmd_sample,
    "datasets": cmd_datasets,
    "reconstruct": cmd_reconstruct,
    "interpolate": cmd_interpolate,
    "traverse": cmd_traverse,
    "latent-map": cmd_latent_map,
    "encode": cmd_encode,
    "decode": cmd_decode,
    "report": cmd_report,
    "em": cmd_em,
    "compare": cmd_compare,
}


# Exit status after the reader of our output went away (`vaekit evaluate RUN | head -1`):
# 128 + SIGPIPE, what a shell reports for any program a closed pipe stops. A plain pipeline
# ignores it, as it does for `cat`; under `set -o pipefail` it says, truthfully, that not all
# output was read (0 would claim it was).
EXIT_BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> int:
    with command_line():  # library messages name flags, not Python keywords
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
    except BrokenPipeError:
        # Quietly: point stdout at /dev/null so the interpreter's final flush cannot fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    except (ConfigError, ValueError, OSError) as exc:
        if os.environ.get("VAEKIT_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"vaekit: error: {message}", file=sys.stderr)
        return 2
    return 0
