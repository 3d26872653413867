"""The flags of ``vaekit compare`` (run against run) and ``vaekit lesson`` (the lecture's
experiments: ``ae-vs-vae`` and ``em``).

``vaekit em`` and ``vaekit compare`` without run directories are the lessons' old names:
they still parse (``compare`` holds the AE-vs-VAE training flags, hidden), and
:mod:`vaekit.cli.main` reads them as the new names with a note on stderr.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vaekit.cli.common import DATA_DIR_HELP, RUN_DATA_DIR_HELP
from vaekit.cli.flags import int_list, positive_float, positive_int, seed_int

COMPARE_DESCRIPTION = (
    "Evaluate every run on the same test examples with the same K and seed and print, for "
    "each run against RUN_A, the mean per-example difference of the nll (-log p(x|y) for "
    "conditional models), the ELBO, bits/dim and the KL ± its paired standard error, and of "
    "active units ± a bootstrap standard error; the nll and ELBO are of the data as given, "
    "as vaekit evaluate reports them. Runs on different data or splits, and runs that "
    "condition on the label differently, are refused. Writes OUT/report.html and "
    "OUT/compare.json (OUT defaults to compare-A-vs-B beside RUN_A). The lecture's AE "
    "against VAE is `vaekit lesson ae-vs-vae`."
)
AE_VS_VAE_DESCRIPTION = (
    "The lecture's AE against VAE: train an AE and a VAE identically (or load two runs with "
    "--runs) and write OUT/report.html and OUT/compare.json: reconstruction error, prior "
    "samples and their sample-quality score, the code distribution against N(0, I), "
    "interpolations, and the VAE's held-out nll (the AE has no likelihood)."
)
EM_DESCRIPTION = (
    "Fit probabilistic PCA by its closed-form MLE, by exact EM and by linear VAEs (diagonal "
    "and full-covariance q) on the same data; report exact log p(x), the ELBO and their gap "
    "KL(q || p(z|x)) in nats per example."
)


def add_compare_parser(commands) -> None:
    """`vaekit compare RUN_A RUN_B [RUN_C ...]`: paired differences on shared test examples."""
    p = commands.add_parser(
        "compare",
        help="RUN_A RUN_B ...: is B better than A? paired differences with standard errors",
        description=COMPARE_DESCRIPTION,
    )
    p.add_argument(
        "compare_runs",
        nargs="*",
        type=Path,
        metavar="RUN",
        help="two or more run directories trained on the same data and split (RUN_A first)",
    )
    p.add_argument(
        "--max-examples", type=positive_int, help="only the first N test examples (default: all)"
    )
    p.add_argument(
        "--out",
        type=Path,
        help="report directory to create (default: compare-A-vs-B beside RUN_A)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--data-dir", help=RUN_DATA_DIR_HELP)
    _evaluation_flags(p, "seed of the importance-sampling draws")
    # The old spelling of the AE-vs-VAE lesson: its training flags, hidden from --help.
    p.set_defaults(lesson_flags=_ae_vs_vae_training_flags(p, hidden=True))


def add_lesson_parser(commands) -> None:
    """`vaekit lesson ae-vs-vae` and `vaekit lesson em`: the lecture's two contrasts."""
    p = commands.add_parser(
        "lesson",
        help="the lecture's experiments: ae-vs-vae (AE against VAE), em (VAE against EM)",
        description="The lecture's two contrasts, each written as a page: ae-vs-vae trains an "
        "AE and a VAE identically and shows what only the VAE can do; em fits probabilistic "
        "PCA by EM and by linear VAEs and measures the ELBO's gap.",
    )
    lessons = p.add_subparsers(dest="lesson", required=True, metavar="LESSON")
    q = lessons.add_parser(
        "ae-vs-vae",
        help="train an AE and a VAE identically; samples, codes, nll side by side",
        description=AE_VS_VAE_DESCRIPTION,
    )
    q.add_argument("--out", type=Path, required=True, help="report directory to create")
    q.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    q.add_argument("--data-dir", help=DATA_DIR_HELP)
    _ae_vs_vae_training_flags(q, hidden=False)
    _evaluation_flags(q, "training and evaluation seed")
    add_em_flags(
        lessons.add_parser(
            "em",
            help="probabilistic PCA: closed-form MLE, exact EM and linear VAEs side by side",
            description=EM_DESCRIPTION,
        )
    )


def add_old_em_parser(commands) -> None:
    """`vaekit em`: the old name of `vaekit lesson em`, still parsed; not listed in --help."""
    add_em_flags(commands.add_parser("em", description=EM_DESCRIPTION))


def _evaluation_flags(p: argparse.ArgumentParser, seed_help: str) -> None:
    """What the run comparison and the AE-vs-VAE lesson both take."""
    p.add_argument("--seed", type=seed_int, default=0, help=seed_help)
    p.add_argument(
        "--num-samples",
        type=positive_int,
        default=500,
        help="K importance samples per test example for the nll (default 500)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _ae_vs_vae_training_flags(p: argparse.ArgumentParser, hidden: bool) -> tuple[str, ...]:
    """The flags only the AE-vs-VAE lesson takes, and their names as parsed. ``hidden``:
    not in --help and absent from the parsed arguments unless given."""

    def add(*flag: str, help: str, default: object = None, **options: object) -> str:
        if hidden:
            help, default = argparse.SUPPRESS, argparse.SUPPRESS
        return p.add_argument(*flag, help=help, default=default, **options).dest

    return (
        add("--data", default="digits", help="dataset to train both on (default digits)"),
        add(
            "--runs",
            nargs=2,
            type=Path,
            metavar=("AE_RUN", "VAE_RUN"),
            help="compare two existing run directories instead of training (default: none, "
            "train both)",
        ),
        add("--epochs", type=positive_int, default=40, help="epochs each (default 40)"),
        add("--latent-dim", type=positive_int, default=8, help="m (default 8)"),
        add("--hidden-dims", type=int_list, help="MLP widths (default 256,128)"),
        add("--lr", type=positive_float, default=5e-3, help="Adam learning rate (default 5e-3)"),
        add("--batch-size", type=positive_int, default=32, help="default 32"),
    )


def add_em_flags(p: argparse.ArgumentParser) -> None:
    """The flags of the VAE-against-EM lesson."""
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
