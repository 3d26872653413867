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
        "Writes OUT/config.json, model.safetensors, metrics.jsonl, samples.png, "
        "reconstructions.png.",
    )
    p.add_argument("--config", type=Path, help="TOML config file (see configs/)")
    p.add_argument("--out", type=Path, required=True, help="run directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--data", help="dataset name (see `vaekit datasets`); default digits")
    p.add_argument("--data-dir", help="directory holding the dataset's files")
    p.add_argument("--epochs", type=_positive_int)
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--model", help="vae (default) or ae (the plain autoencoder of the lecture)")
    p.add_argument("--latent-dim", type=_positive_int, help="m, the code dimension")
    p.add_argument(
        "--likelihood",
        help="p(x|z): gaussian (unit variance, the lecture's), gaussian-learned (per-dimension "
        "sigma), gaussian-shared (one sigma), bernoulli (binary data only); default: the "
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
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any config field, e.g. --set optim.lr=3e-4 (repeatable)",
    )

    p = commands.add_parser(
        "evaluate",
        help="importance-sampled nll, ELBO and its terms on a split",
        description="Evaluate a trained VAE. nll = -log p(x) in nats per example by importance "
        "sampling (Burda et al. 2015) with K samples; bits_per_dim where the data is discrete.",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--num-samples", type=_positive_int, default=1000, help="K (default 1000)")
    p.add_argument("--chunk-size", type=_positive_int, help="samples per decoder call (memory)")
    p.add_argument("--batch-size", type=_positive_int, default=100, help="examples per batch")
    p.add_argument("--max-examples", type=_positive_int, help="evaluate only the first N")
    p.add_argument("--data-dir", help="directory holding the dataset's files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = commands.add_parser("sample", help="decode draws from the prior N(0, I) into a PNG grid")
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("-n", type=_positive_int, default=64, help="number of samples (default 64)")
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    p.add_argument("--seed", type=int, default=0)
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
    p.add_argument("--seed", type=int, default=0, help="data, initialisation and rotation seed")
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
    p.add_argument("--seed", type=int, default=0, help="training and evaluation seed")
    p.add_argument(
        "--num-samples", type=_positive_int, default=500, help="K for the VAE's nll (500)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_train(args: argparse.Namespace) -> None:
    from vaekit.train import train

    config = load_config(args.config) if args.config else Config()
    overrides = []
    for flag, (section, name) in TRAIN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{section}.{name}={json.dumps(value)}")
    config = apply_overrides(config, overrides + args.set)
    result = train(config, out=args.out, overwrite=args.overwrite)
    print(f"run directory: {result.run_dir}")
    for name in (
        "config.json",
        "model.safetensors",
        "metrics.jsonl",
        "samples.png",
        "reconstructions.png",
    ):
        if (result.run_dir / name).exists():
            print(f"  {result.run_dir / name}")


def _load_run(run: Path, data_dir: str | None = None):
    from vaekit.checkpoint import load_run

    return load_run(run, data_dir)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from vaekit.checkpoint import atomic_write_json
    from vaekit.evaluate import evaluate

    model, dataset = _load_run(args.run, args.data_dir)
    result = evaluate(
        model,
        dataset,
        split=args.split,
        num_samples=args.num_samples,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        seed=args.seed,
        max_examples=args.max_examples,
    )
    atomic_write_json(args.run / "eval.json", result)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{dataset.name} {result['split']} split, {result['num_examples']} examples, "
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
    print(f"  saved to {args.run / 'eval.json'}")


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
    "em": cmd_em,
    "compare": cmd_compare,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (ConfigError, ValueError, OSError) as exc:
        if os.environ.get("VAEKIT_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"vaekit: error: {message}", file=sys.stderr)
        return 2
    return 0
