"""``vaekit compare`` (run against run) and ``vaekit lesson`` (the lecture's experiments):
read the parsed flags, call the library, print."""

from __future__ import annotations

import argparse
import json


def cmd_compare(args: argparse.Namespace) -> None:
    from vaekit.comparison.runs import compare_runs

    given = [name for name in args.lesson_flags if name in vars(args)]
    if given:  # the lesson's training flags parse here only for its old spelling
        flag = "--" + given[0].replace("_", "-")
        raise ValueError(
            f"compare RUN ...: {flag} belongs to the AE-vs-VAE lesson (vaekit lesson "
            "ae-vs-vae); trained runs are compared as they are"
        )
    runs = args.compare_runs
    out = args.out
    if out is None and runs:
        out = runs[0].parent / ("compare-" + "-vs-".join(r.name for r in runs))
    result = compare_runs(
        runs,
        num_samples=args.num_samples,
        seed=args.seed,
        max_examples=args.max_examples,
        data_dir=args.data_dir,
        out=out,
        overwrite=args.overwrite,
        log=None if args.json else print,
    )
    print(json.dumps(result.to_dict()) if args.json else "\n".join(result.lines()))


def cmd_lesson(args: argparse.Namespace) -> None:
    LESSONS[args.lesson](args)


def lesson_ae_vs_vae(args: argparse.Namespace) -> None:
    from vaekit.lessons.ae_vs_vae import compare, compare_headline

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


def lesson_em(args: argparse.Namespace) -> None:
    from vaekit.lessons import em_experiment
    from vaekit.lessons.em_page import em_headline

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


LESSONS = {"ae-vs-vae": lesson_ae_vs_vae, "em": lesson_em}
