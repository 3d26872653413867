"""One function per ``vaekit`` command: read the parsed flags, call the library, print.

Each ``cmd_NAME(args)`` is what ``vaekit NAME`` runs; the library does the work, so the
same numbers come from Python and from the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from vaekit.cli.flags import config_overrides
from vaekit.cli.lesson_commands import cmd_compare, cmd_lesson
from vaekit.config import Config, apply_overrides, load_config


def cmd_train(args: argparse.Namespace) -> None:
    from vaekit.training import run_config, train

    if args.resume is None and args.out is None:
        raise ValueError("train: give --out RUN for a new run, or --resume RUN to continue one")
    if args.resume is not None and args.config is not None:
        raise ValueError("--resume uses the run's own config: give --set/flags, not --config")
    overwrite = args.overwrite
    restart = elastic_restart(args.out) if args.resume is None else None
    if restart is not None and os.environ.get("RANK", "0") == "0":
        what = "resuming from its last checkpoint" if restart == "resume" else "starting again"
        print(f"torchrun restarted this job: {args.out}: {what}", file=sys.stderr)
    if restart == "resume":  # torchrun restarted this worker: continue the run it was writing
        args.resume, args.out, args.config = args.out, None, None
    elif restart == "start-again":  # it died before its first checkpoint: our own folder
        overwrite = True
    if args.resume is not None:
        config = run_config(args.resume)
    else:
        config = load_config(args.config) if args.config else Config()
    flagged = config_overrides(args, args.config_flags)
    config = apply_overrides(config, [*flagged, *args.set], given_as=flagged)
    if args.column_type:
        config = apply_overrides(config, [column_types_override(config, args.column_type)])
    # train() prints the progress and, at the end, a summary with every file it wrote.
    train(config, out=args.out, overwrite=overwrite, resume=args.resume)


def elastic_restart(out: Path | None) -> str | None:
    """What a worker of a torchrun elastic job does with ``--out RUN`` that exists.

    After a node or worker dies, the elastic agents start every worker again with the same
    command. When RUN was made by this same job (its marker records the job's
    ``TORCHELASTIC_RUN_ID``, torchrun's ``--rdzv-id``), the run continues from
    ``RUN/checkpoints/last`` ("resume"), or starts again in that folder when it died before
    its first checkpoint ("start-again"). Every rank reads the same marker, so all agree.
    Otherwise None: ``--out`` keeps its usual rules (an existing folder needs --overwrite or
    --resume)."""
    from vaekit import rundir

    job = os.environ.get("TORCHELASTIC_RUN_ID")
    if not job or out is None or rundir.elastic_job(out) != job:
        return None
    if (Path(out) / "checkpoints" / "last" / "trainer.json").is_file():
        return "resume"
    return "start-again"


def column_types_override(config: Config, given: list[str]) -> str:
    """``--column-type NAME=TYPE`` flags on top of the config's ``[data.columns]``, as one
    ``data.columns={...}`` override."""
    columns = dict(config.data.columns)
    for item in given:
        name, sep, kind = item.rpartition("=")
        if not sep or not name:
            raise ValueError(f"--column-type {item!r}: expected NAME=TYPE, e.g. zip=categorical")
        columns[name] = kind
    table = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in columns.items())
    return f"data.columns={{{table}}}"


def cmd_evaluate(args: argparse.Namespace) -> None:
    from vaekit.evaluate import evaluate_run, evaluation_setting

    num_samples, max_examples = evaluation_setting(
        args.final, args.num_samples, args.max_examples, new_data=args.data is not None
    )
    result = evaluate_run(
        args.run,
        args.data,
        args.output,
        data_dir=args.data_dir,
        save=False,  # printed first, saved after: a read-only run still shows its numbers
        split=args.split,
        num_samples=num_samples,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        memory_budget_mb=args.memory_mb,
        seed=args.seed,
        max_examples=max_examples,
        fcd=not args.no_fcd,
        trust_scale=args.trust_scale,
        unknown_categories=args.unknown_categories,
        progress=args.progress,
        device=args.device,
        log=lambda line: print(line, file=sys.stderr),
    )
    if args.json:
        print(json.dumps(result, allow_nan=False))  # strict JSON: non-finite numbers are null
    else:
        _print_evaluation(result, new_data=args.data is not None)
        if not args.final and "num_samples" in result:
            print(
                f"  a quick check (K = {result['num_samples']} on {result['num_examples']} "
                "examples); --final gives the number to publish: K = 5000 on every example"
            )
    if args.data is None:  # new data never overwrites the run's own eval.json
        _save_evaluation(args.run, result, quiet=args.json)
    elif args.output is not None and not args.json:
        print(f"  saved to {args.output}")


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
    from vaekit.report.html import refresh_report

    report = refresh_report(run, log=lambda line: print(line, file=sys.stderr))
    if report is not None and not quiet:
        print(f"  updated {report} to these numbers")


def _print_evaluation(result: dict, new_data: bool) -> None:
    """The evaluation as text: the setting, then one line per metric of the one table in
    vaekit.metrics (label, value, unit, brief definition)."""
    from vaekit.evaluation.references import reference_lines
    from vaekit.metrics import shown_metrics

    where = "new data, all rows" if new_data else f"{result['split']} split"
    if "likelihood" in result:  # a model without p(x): say so, print what it has
        print(f"{result['dataset']} ({where}), {result['num_examples']} examples")
        print(f"  likelihood: {result['likelihood']}")
    else:
        print(
            f"{result['dataset']} ({where}), {result['num_examples']} examples, "
            f"K = {result['num_samples']} importance samples"
        )
        print(f"  space: {result['space']}")
    if "model_space" in result:
        print(f"  model space: {result['model_space']}")
    if "conditioned_on" in result:
        print(f"  given: {result['conditioned_on']}")
    if "bits_per_dim_basis" in result:
        print(f"  bits/dim basis: {result['bits_per_dim_basis']}")
    for entry, value in shown_metrics(result):
        print(f"  {entry.label:<34} {value:>17}  {entry.unit} ({entry.brief})")
    for line in reference_lines(result):
        print(line)
    for key, why in result.get("null_reasons", {}).items():
        print(f"  note: {key} is n/a: {why}")


def cmd_sample(args: argparse.Namespace) -> None:
    from vaekit.checkpoint import load
    from vaekit.codes import check_label
    from vaekit.outputs import check_outputs
    from vaekit.report.plots import is_image, save_samples

    check_outputs({"output": args.output}, inputs=[args.run])
    model = load(args.run)
    if model.config.columns:  # a mixed-type table: synthetic rows
        from vaekit.impute import sample_run

        print(f"wrote {sample_run(args.run, args.n, args.output, args.seed)}")
        return
    if not is_image(model.data_shape):
        raise ValueError(f"{args.run}: data shape {list(model.data_shape)} is not an image")
    if args.output.suffix.lower() != ".png":
        raise ValueError(f"-o {args.output}: the output must be a .png file")
    check_label(model, args.label)
    args.output.parent.mkdir(parents=True, exist_ok=True)  # as reconstruct & co. do
    save_samples(model, args.output, n=args.n, seed=args.seed, label=args.label)
    print(f"wrote {args.output}")


def cmd_impute(args: argparse.Namespace) -> None:
    from vaekit.impute import impute_run

    paths = impute_run(
        args.run,
        args.data,
        args.output,
        args.num_samples,
        args.draws,
        seed=args.seed,
        unknown_categories=args.unknown_categories,
    )
    for path in paths:
        print(f"wrote {path}")


def cmd_datasets(args: argparse.Namespace) -> None:
    from vaekit.data import dataset_table

    print(dataset_table(args.data_dir))


def cmd_reconstruct(args: argparse.Namespace) -> None:
    from vaekit.report.figures import reconstruct_run

    if args.data is not None:
        from vaekit.codes import reconstruct_data

        path = reconstruct_data(
            args.run,
            args.data,
            args.output,
            seed=args.seed,
            trust_scale=args.trust_scale,
            unknown_categories=args.unknown_categories,
        )
        print(f"wrote {path}")
        return
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
        args.run,
        args.data,
        args.output,
        log_var=args.log_var,
        sample=args.sample,
        preprocessed=args.preprocessed,
        seed=args.seed,
        trust_scale=args.trust_scale,
        unknown_categories=args.unknown_categories,
    ):
        print(f"wrote {path}")


def cmd_decode(args: argparse.Namespace) -> None:
    from vaekit.codes import decode_array

    print(f"wrote {decode_array(args.run, args.input, args.output, label=args.label)}")


def cmd_score(args: argparse.Namespace) -> None:
    from vaekit.score import score_run

    summary = score_run(
        args.run,
        args.data,
        args.output,
        num_samples=args.num_samples,
        batch_size=args.batch_size,
        seed=args.seed,
        remedy=args.remedy,
        reference=args.reference,
        ood_column=args.ood_column,
        ood_classes=args.ood_classes,
        trust_scale=args.trust_scale,
        unknown_categories=args.unknown_categories,
        max_examples=args.max_examples,
    )
    if args.json:
        print(json.dumps(summary))
        return
    from vaekit.score import score_headline

    print("\n".join(score_headline(summary)))


def cmd_report(args: argparse.Namespace) -> None:
    from vaekit.report.html import write_report

    try:  # the evaluation is printed first (log=print), then the files are written
        path = write_report(args.run, args.num_samples, args.max_examples, args.data_dir, log=print)
    except OSError as exc:
        if exc.strerror is None:  # a message of vaekit's own (a FIFO in the run): as it is
            raise
        raise OSError(exc.errno, f"report not written: {exc.strerror}", exc.filename) from None
    print(f"wrote {path}")


def cmd_explore(args: argparse.Namespace) -> None:
    from vaekit.explore import write_explorer

    path = write_explorer(
        args.run, args.output, args.axes, args.max_points, args.data_dir, seed=args.seed
    )
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB); open it in a browser")


def cmd_export(args: argparse.Namespace) -> None:
    from vaekit.export import export_run

    manifest = export_run(args.run, args.out, args.format, args.overwrite)
    for graph in manifest["graphs"].values():
        worst = max(graph["relative_error_vs_torch"].values())
        outputs = ", ".join(o["name"] for o in graph["outputs"])
        print(
            f"wrote {Path(manifest['out']) / graph['file']} (outputs: {outputs}; largest "
            f"relative error against PyTorch {worst:.1e})"
        )
    print(f"wrote {Path(manifest['out']) / 'export.json'}")
    for reason in manifest["refused"].values():
        print(f"vaekit: refused: {reason}", file=sys.stderr)


def cmd_pack(args: argparse.Namespace) -> None:
    from vaekit.data import load_dataset
    from vaekit.data.errors import DataError
    from vaekit.data.pack import verify_pack, write_pack

    if args.verify:
        problems = verify_pack(args.source)
        if problems:
            raise DataError(f"{args.source}: {len(problems)} damaged file(s); first: {problems[0]}")
        print(f"{args.source}: every shard matches its SHA-256 in pack.json")
        return
    if args.out is None:
        raise DataError("vaekit pack: give -o DIR, the pack folder to create")
    from vaekit.outputs import check_outputs

    check_outputs({"out": args.out}, inputs=[args.source])  # not the source, not in a run
    dataset = load_dataset(
        args.source,
        args.data_dir,
        args.val_fraction,
        args.split_seed,
        image_size=args.image_size,
        label_column=args.label_column,
        in_memory=False,
    )
    started = time.perf_counter()
    out = write_pack(dataset, args.out, args.source, args.shard_mb, layout=args.format)
    seconds = time.perf_counter() - started
    rows = sum(len(dataset.split(name)) for name in ("train", "val", "test"))
    rate = rows / max(seconds, 1e-9)
    print(f"wrote {out}: {rows} examples in {seconds:.1f} s ({rate:.0f} examples/s)")


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "sample": cmd_sample,
    "impute": cmd_impute,
    "datasets": cmd_datasets,
    "reconstruct": cmd_reconstruct,
    "interpolate": cmd_interpolate,
    "traverse": cmd_traverse,
    "latent-map": cmd_latent_map,
    "encode": cmd_encode,
    "decode": cmd_decode,
    "score": cmd_score,
    "report": cmd_report,
    "explore": cmd_explore,
    "compare": cmd_compare,
    "lesson": cmd_lesson,
    "export": cmd_export,
    "pack": cmd_pack,
}
