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

from vaekit.config import Config, ConfigError, apply_overrides, load_config

# CLI flag -> (config section, field). One table instead of a chain of ifs.
TRAIN_FLAGS = {
    "data": ("data", "name"),
    "data_dir": ("data", "data_dir"),
    "image_size": ("data", "image_size"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "seed": ("train", "seed"),
    "device": ("train", "device"),
    "lr": ("optim", "lr"),
    "latent_dim": ("model", "latent_dim"),
    "likelihood": ("model", "likelihood"),
    "posterior": ("model", "posterior"),
    "model": ("model", "kind"),
    "network": ("model", "network"),
    "hidden_dims": ("model", "hidden_dims"),
    "activation": ("model", "activation"),
    "objective": ("objective", "name"),
    "beta": ("objective", "beta"),
    "num_mc_samples": ("objective", "num_mc_samples"),
    # The training engine's flags (issue 4).
    "max_steps": ("train", "max_steps"),
    "patience": ("train", "patience"),
    "schedule": ("schedule", "name"),
    "warmup_steps": ("schedule", "warmup_steps"),
    "kl_warmup_steps": ("objective", "kl_warmup_steps"),
    "grad_clip": ("optim", "grad_clip"),
    "precision": ("train", "precision"),
    "log_every": ("train", "log_every"),
    "checkpoint_every": ("train", "checkpoint_every"),
    "progress": ("train", "progress"),
}
# Boolean switches: set the field to true when given.
TRAIN_SWITCHES = {
    "compile": ("train", "compile"),
    "deterministic": ("train", "deterministic"),
}


def _hidden_dims(text: str) -> list[int]:
    try:
        dims = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive widths like 512,256, got {text!r}")
    return dims


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaekit",
        description="Variational autoencoders: train, evaluate and sample. "
        "All likelihood numbers are in nats per example unless they say bits per dim.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser(
        "train",
        help="train a VAE or AE and write a run directory",
        description="Train a model. Flags override the --config file, --set overrides both. "
        "Writes OUT/config.json, model.safetensors, metrics.jsonl, checkpoints/{last,best}/, "
        "tensorboard/, samples.png, reconstructions.png. Multi-GPU/multi-node: launch with "
        "torchrun (see README, Training).",
    )
    p.add_argument("--config", type=Path, help="TOML config file (see configs/)")
    p.add_argument("--out", type=Path, help="run directory to create (required unless --resume)")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue the run in RUN from RUN/checkpoints/last (its config, changed only by "
        "the flags and --set given here; the model and data sections cannot change)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run directory; only one vaekit created (it holds a "
        ".vaekit-run marker), never the current directory, a parent of it or the home folder",
    )
    p.add_argument(
        "--data",
        help="a dataset name (see `vaekit datasets`; default digits) or a path: a folder of "
        "PNG/JPEG images (class sub-folders = labels), a .npy/.npz array, a .csv/.parquet table",
    )
    p.add_argument(
        "--data-dir",
        help="directory holding a built-in dataset's files (searched before $VAEKIT_DATA_DIR, "
        "~/.cache/vaekit and /usr/share/datasets; else the files are downloaded)",
    )
    p.add_argument(
        "--image-size",
        type=_image_size,
        metavar="HxW",
        help="resize (keeping the aspect) and centre-crop an image folder to H x W pixels",
    )
    p.add_argument("--epochs", type=_positive_int)
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--seed", type=_seed)
    p.add_argument("--device", help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--model", help="vae (default) or ae (the plain autoencoder of the lecture)")
    p.add_argument("--latent-dim", type=_positive_int, help="m, the code dimension")
    p.add_argument(
        "--likelihood",
        help="p(x|z): gaussian (unit variance, the lecture's), gaussian-learned (per-dimension "
        "sigma), gaussian-shared (one sigma), gaussian-heteroscedastic (the decoder outputs "
        "a sigma per dimension and example), bernoulli (binary data only); default: the "
        "dataset's",
    )
    p.add_argument("--posterior", help="q(z|x): diagonal (default) or full (Cholesky covariance)")
    p.add_argument("--network", help="auto (default: conv for 28x28/32x32 images), mlp, conv")
    p.add_argument("--hidden-dims", type=_hidden_dims, help="MLP widths, e.g. 512,256 (mirrored)")
    p.add_argument("--activation", help="relu (default), elu, gelu, tanh, silu")
    p.add_argument(
        "--objective",
        help="elbo (default, beta-weighted), slide (the lecture's L_VAE; unit Gaussian decoder), "
        "iwae, reconstruction (AE)",
    )
    p.add_argument("--beta", type=float, help="KL weight of the beta-ELBO (1 = true ELBO)")
    p.add_argument("--num-mc-samples", type=_positive_int, help="L draws per example for the ELBO")
    p.add_argument(
        "--max-steps",
        type=_positive_int,
        help="step budget (optimiser steps); replaces --epochs as the budget when given",
    )
    p.add_argument(
        "--patience",
        type=_positive_int,
        help="early stopping: stop after this many epochs without a better validation ELBO",
    )
    p.add_argument(
        "--schedule",
        help="learning-rate schedule: constant (default), cosine (linear warm-up, then cosine "
        "to schedule.min_lr), plateau (reduce on a stalled validation ELBO)",
    )
    p.add_argument(
        "--warmup-steps", type=int, help="linear learning-rate warm-up steps (cosine schedule)"
    )
    p.add_argument(
        "--kl-warmup-steps",
        type=int,
        help="KL warm-up: beta rises linearly from 0 to --beta over this many steps (elbo)",
    )
    p.add_argument(
        "--grad-clip", type=float, help="clip the gradient's global L2 norm to this value"
    )
    p.add_argument(
        "--precision",
        help="fp32 (default), bf16 (autocast) or fp16 (autocast + GradScaler): CUDA only; "
        "log-densities are always computed in fp32",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model (opt-in)")
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic kernels (torch.use_deterministic_algorithms); slower on GPU",
    )
    p.add_argument("--log-every", type=_positive_int, help="steps between metrics records")
    p.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        help="steps between mid-epoch checkpoints (one is also written after every epoch, and "
        "when train.checkpoint_minutes have passed since the last one: default 5)",
    )
    p.add_argument(
        "--progress",
        help="auto (default: a progress bar on a terminal, log lines otherwise), bar, plain",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any config field, e.g. --set optim.lr=3e-4 (repeatable)",
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
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
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
    p.add_argument("--max-examples", type=_positive_int, help="evaluate only the first N")
    p.add_argument("--data-dir", help="directory holding the dataset's files")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the draws (default 0)")
    p.add_argument("--no-fcd", action="store_true", help="skip the Fréchet classifier distance")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = commands.add_parser(
        "datasets",
        help="list the registered datasets and where their files are",
        description="Registered datasets: shape (C x H x W), size in examples, support of the "
        "model inputs, the default likelihood, and where the files were found (nothing is "
        "downloaded). `vaekit train --data` also takes a path to user data: an image "
        "folder, .npy, .npz, .csv or .parquet.",
    )
    p.add_argument("--data-dir", help="also look for the files here first")

    p = commands.add_parser("sample", help="decode draws from the prior N(0, I) into a PNG grid")
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("-n", type=_positive_int, default=64, help="number of samples (default 64)")
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    p.add_argument("--seed", type=_seed, default=0)

    def picture_command(name: str, help_text: str) -> argparse.ArgumentParser:
        q = commands.add_parser(name, help=help_text, description=help_text)
        q.add_argument("run", type=Path, help="run or model directory")
        q.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
        q.add_argument("--split", default="test", choices=["train", "val", "test"])
        q.add_argument("--seed", type=_seed, default=0, help="seed of the data transform draw")
        q.add_argument("--data-dir", help="directory holding the dataset's files")
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
    p.add_argument("--log-var", type=Path, help=".npy file for log Sigma_jj(x) [N, m]")
    p.add_argument("--sample", type=Path, help=".npy file for one draw z ~ q(z|x) [N, m]")
    p.add_argument(
        "--preprocessed",
        action="store_true",
        help="the input is already model input (skip the saved preprocessing)",
    )
    p.add_argument("--seed", type=_seed, default=0, help="seed of dequantisation noise and draws")

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
        "when it matches the weights, else evaluates first with --num-samples. The evaluation "
        "is printed first; if the page cannot be written, the error names the file (exit 2).",
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
    p.add_argument("--data-dir", help="directory holding the dataset's files")

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
    p.add_argument("--data-dir", help="directory holding the dataset's files")
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
    p.add_argument("--out", type=Path, help="write OUT/report.html, OUT/em.json and figures")
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
    p.add_argument("--data-dir", help="directory holding the dataset's files")
    p.add_argument(
        "--runs",
        nargs=2,
        type=Path,
        metavar=("AE_RUN", "VAE_RUN"),
        help="compare two existing run directories instead of training",
    )
    p.add_argument("--epochs", type=_positive_int, default=40, help="epochs each (default 40)")
    p.add_argument("--latent-dim", type=_positive_int, default=8, help="m (default 8)")
    p.add_argument("--hidden-dims", type=_hidden_dims, help="MLP widths (default 256,128)")
    p.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate (default 5e-3)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="default 32")
    p.add_argument("--seed", type=_seed, default=0, help="training and evaluation seed")
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
    overrides = []
    for flag, (section, name) in TRAIN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{section}.{name}={json.dumps(value)}")
    overrides += [f"{s}.{n}=true" for flag, (s, n) in TRAIN_SWITCHES.items() if getattr(args, flag)]
    config = apply_overrides(config, overrides + args.set)
    result = train(config, out=args.out, overwrite=args.overwrite, resume=args.resume)
    if result.run_dir is None:  # a torchrun rank other than 0 writes nothing
        return
    print(f"run directory: {result.run_dir}")
    for name in (
        "config.json",
        "model.safetensors",
        "metrics.jsonl",
        "samples.png",
        "reconstructions.png",
        "report.html",
    ):
        if (result.run_dir / name).exists():
            print(f"  {result.run_dir / name}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from vaekit.evaluate import evaluate_run

    result = evaluate_run(
        args.run,
        args.data_dir,
        save=False,  # printed first, saved after: a read-only run still shows its numbers
        split=args.split,
        num_samples=args.num_samples,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        memory_budget_mb=args.memory_mb,
        seed=args.seed,
        max_examples=args.max_examples,
        fcd=not args.no_fcd,
    )
    if args.json:
        print(json.dumps(result, allow_nan=False))  # strict JSON: non-finite numbers are null
    else:
        _print_evaluation(result)
    _save_evaluation(args.run, result, quiet=args.json)


def _save_evaluation(run: Path, result: dict, quiet: bool) -> None:
    """Write RUN/eval.json after the result was printed; if that fails the numbers above are
    still complete, so say where it could not be written and exit 0 (the evaluation itself
    succeeded; eval.json is a record, and `vaekit report` evaluates again without it)."""
    from vaekit.evaluate import save_evaluation
    from vaekit.rundir import RunDirError

    try:
        path = save_evaluation(run, result)
    except (OSError, RunDirError) as exc:
        note = f"vaekit: warning: eval.json not written ({exc}); the result above is complete"
        print(note, file=sys.stderr)
        return
    if not quiet:  # --json: stdout holds the one JSON object
        print(f"  saved to {path}")


def _value(value, digits: int = 3) -> str:
    """A number for the console; a non-finite one (null in JSON) reads n/a."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def _print_evaluation(result: dict) -> None:
    print(
        f"{result['dataset']} {result['split']} split, {result['num_examples']} examples, "
        f"K = {result['num_samples']} importance samples"
    )
    print(
        f"  nll       {_value(result['nll'])} ± {_value(result['nll_stderr'])} nats per example "
        "(-log p(x), importance-sampled; ± one standard error)"
    )
    if "bits_per_dim" in result:
        bpd = _value(result["bits_per_dim"], 4)
        print(f"  bits/dim  {bpd} bits per dimension (discrete data)")
    print(f"  ELBO      {_value(result['elbo'])} nats per example")
    print(f"  log p(x|z) {_value(result['log_px_z'])} nats per example (reconstruction term)")
    print(f"  KL        {_value(result['kl'])} nats per example (KL(q(z|x) || p(z)))")
    m = len(result["kl_per_dim"])
    print(f"  active    {result['active_units']} of {m} latent units (Var_x E_q[z_j] > 0.01)")
    agg = result["aggregate_posterior"]
    print(
        f"  q(z)      KL(N(mean, cov) || N(0, I)) {_value(agg['kl_gaussian_fit_to_prior'])} "
        f"nats, |mean| {_value(agg['mean_norm'])}, "
        f"||cov - I||_F {_value(agg['cov_frobenius_to_identity'])}"
    )
    if "frechet_classifier_distance" in result:
        print(
            f"  FCD       {_value(result['frechet_classifier_distance'])} (Fréchet classifier "
            "distance in vaekit's classifier features; not FID)"
        )
    for key, why in result.get("null_reasons", {}).items():
        print(f"  note: {key} is n/a: {why}")


def cmd_sample(args: argparse.Namespace) -> None:
    from vaekit.checkpoint import load
    from vaekit.report.plots import is_image, save_samples

    model = load(args.run)
    if not is_image(model.data_shape):
        raise ValueError(f"{args.run}: data shape {list(model.data_shape)} is not an image")
    if args.output.suffix.lower() != ".png":
        raise ValueError(f"-o {args.output}: the output must be a .png file")
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

    try:  # the evaluation is printed first (log=print), then the files are written
        path = write_report(args.run, args.num_samples, args.max_examples, args.data_dir, log=print)
    except OSError as exc:
        raise OSError(exc.errno, f"report not written: {exc.strerror}", exc.filename) from None
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


def main(argv: list[str] | None = None) -> int:
    from vaekit.rundir import command_line

    args = build_parser().parse_args(argv)
    try:
        with command_line():  # messages name flags (--overwrite), not Python arguments
            COMMANDS[args.command](args)
    except KeyboardInterrupt as exc:  # Ctrl-C: training checkpointed and says how to resume
        if os.environ.get("VAEKIT_DEBUG"):
            raise
        print(str(exc) or "vaekit: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, ValueError, OSError) as exc:
        if os.environ.get("VAEKIT_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"vaekit: error: {message}", file=sys.stderr)
        return 2
    return 0
