"""``RUN/report.html``: one self-contained page for a person in a hurry.

It opens with the headline (the nll ± its standard error, bits/dim, the training and
evaluation time, the device, the torch and vaekit versions), then the evaluation table, then
every picture of ``vaekit.report.figures``; the run's configuration is folded away at the
end. Labels, units and definitions come from :mod:`vaekit.metrics`; the page is written by
:class:`vaekit.report.page.Page` (PNGs embedded as base64, no network, no script).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from vaekit.checkpoint import read_descriptor
from vaekit.evaluate import (
    QUICK_MAX_EXAMPLES,
    QUICK_NUM_SAMPLES,
    evaluate_run,
    load_run,
    save_evaluation,
)
from vaekit.evaluation.latent_statistics import latent_statistics
from vaekit.evaluation.references import reference_lines, reference_text
from vaekit.metrics import lookup, metric, result_problem, shown_metrics
from vaekit.outputs import read_regular, staged_dir
from vaekit.report.figures import Figure, run_figures
from vaekit.report.page import Page
from vaekit.report.table_rows import TableRows, table_rows
from vaekit.rundir import RunDirError, atomic_write_bytes, locked
from vaekit.support.progress import format_seconds
from vaekit.validate import StateError, parse_json

REPORT_FILE = "report.html"
FIGURE_DIR = "figures"
NO_LIKELIHOOD = (
    "this model defines no likelihood p(x), so there is no nll, ELBO or bits/dim to report"
)


def evaluation_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(label, value, unit, definition) rows of the evaluation table, from the metrics table."""
    return [
        (m.label, text, m.unit, f"{m.definition} {m.direction.capitalize()}.")
        for m, text in shown_metrics(result)
    ]


def reference_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(label, nll, bits/dim, source) rows of the references table ("-": not given)."""

    def text(value: Any, digits: int) -> str:
        return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"

    return [
        (ref["label"], text(ref.get("nll"), 2), text(ref.get("bits_per_dim"), 3), ref["source"])
        for ref in (result.get("references") or {}).values()
    ]


def _card(label: str, number: str, unit: str = "", kind: str = "") -> str:
    """One headline box; ``kind`` is "main" (the nll) or "missing" (a reason, not a number)."""
    cls = f"card {kind}".strip()
    return (
        f"<div class='{cls}'><div class='label'>{html.escape(label)}</div>"
        f"<div class='number'>{html.escape(number)}</div>"
        f"<div class='unit'>{html.escape(unit)}</div></div>"
    )


def _nll_card(result: dict[str, Any] | None) -> str:
    nll = metric("nll")
    if result is None:
        return _card(nll.label, "not available", NO_LIKELIHOOD, "missing")
    value = lookup(result, nll.key)
    if not isinstance(value, int | float) or value != value or abs(value) == float("inf"):
        return _card(nll.label, "not available", "the estimate is not finite", "missing")
    split = result.get("split", "test")
    detail = (
        f"{nll.unit}, ± one standard error; {split} split, N = {result.get('num_examples')}, "
        f"K = {result.get('num_samples')}"
    )
    beside = reference_text(result)
    detail += f"; beside: {beside}" if beside else ""
    return _card(nll.label, nll.value_text(result), detail, "main")


def _bpd_card(result: dict[str, Any] | None) -> str:
    bpd = metric("bits_per_dim")
    if result is None:
        return _card(bpd.label, "not available", "no likelihood, so no bits", "missing")
    if lookup(result, bpd.key) is None:
        return _card(
            bpd.label,
            "not applicable",
            "continuous data: no discrete levels to count bits of",
            "missing",
        )
    beside = reference_text(result, bpd.key)
    return _card(
        bpd.label, bpd.value_text(result), bpd.unit + (f"; beside: {beside}" if beside else "")
    )


def _run_card(result: dict[str, Any] | None, training: dict[str, Any]) -> str:
    """Run time, device and versions: training's from config.json's metadata, evaluation's
    from eval.json; "not recorded" for a run written before vaekit recorded them."""
    evaluation = result or {}
    rows = []
    train_s, eval_s = training.get("train_seconds"), evaluation.get("eval_seconds")
    times = [
        f"training {format_seconds(train_s)}" if train_s is not None else "training not recorded"
    ]
    if eval_s is not None:
        times.append(f"evaluation {format_seconds(eval_s)}")
    rows.append(("run time", ", ".join(times) + " (wall clock)"))
    trained_on, evaluated_on = training.get("device"), evaluation.get("device")
    if trained_on and evaluated_on and trained_on != evaluated_on:
        device = f"trained on {trained_on}, evaluated on {evaluated_on}"
    else:
        device = trained_on or evaluated_on or "not recorded"
    if training.get("world_size", 1) > 1:
        device += f" x {training['world_size']} processes"
    rows.append(("device", device))
    for name in ("torch", "vaekit"):
        version = training.get(f"{name}_version") or evaluation.get(f"{name}_version")
        rows.append((name, version or "not recorded"))
    items = "".join(
        f"<dt>{html.escape(key)}</dt><dd>{html.escape(value)}</dd>" for key, value in rows
    )
    return f"<div class='card' id='run-info'><div class='label'>run</div><dl>{items}</dl></div>"


def headline(result: dict[str, Any] | None, training: dict[str, Any]) -> str:
    """The boxes the page opens with: the nll, bits/dim and the run's time, device and
    versions. ``training`` is config.json's metadata."""
    cards = [_nll_card(result), _bpd_card(result), _run_card(result, training)]
    return f"<section class='headline' id='headline'>{''.join(cards)}</section>"


def _model_line(descriptor: dict[str, Any], probabilistic: bool) -> str:
    """ "vae, 8-D latent, gaussian-learned likelihood, diagonal posterior, mlp networks"; a
    model without a likelihood (``probabilistic`` False) has no likelihood or posterior to
    name, whatever defaults its config carries."""
    model = descriptor.get("model") or {}
    parts = [str(model.get("kind", "model"))]
    if model.get("latent_dim") is not None:
        parts.append(f"{model['latent_dim']}-D latent")
    named = [("likelihood", "likelihood"), ("posterior", "posterior")] if probabilistic else []
    for key, word in (*named, ("network", "networks")):
        if model.get(key):
            parts.append(f"{model[key]} {word}")
    return ", ".join(parts)


def render_report(
    title: str,
    config: dict[str, Any],
    result: dict[str, Any] | None,
    figures: list[Figure],
    descriptor: dict[str, Any] | None = None,
    explorer: bool = False,
    rows: TableRows | None = None,
) -> str:
    """The report page as one HTML string (``result`` None: a model with no likelihood);
    ``explorer``: explore.html exists beside it, so the page links to it; ``rows``: a mixed
    table's reconstructions and samples as rows of its cells."""
    descriptor = descriptor or {}
    page = Page(title, lead=_model_line(descriptor, result is not None) if descriptor else None)
    page.raw(headline(result, descriptor.get("metadata") or {}))
    page.paragraph(
        "All likelihood numbers are nats per example unless they say bits per dimension. "
        "Pictures of decoded images show the decoder mean E[x|z]."
    )
    if explorer:  # a link only to a page that is there
        page.raw(
            "<p id='explorer-link'>Move through the latent space in the "
            "<a href='explore.html'>interactive latent explorer</a> (explore.html beside this "
            "page; <code>vaekit explore RUN</code> rewrites it).</p>"
        )
    else:
        page.raw(
            "<p id='explorer-link'>To move through the latent space in an interactive "
            "explorer, run <code>vaekit explore RUN</code>: it writes explore.html beside "
            "this page.</p>"
        )
    if result is None:
        kind = (config.get("model") or {}).get("kind")
        why = (
            "Its samples decode z ~ N(0, I), which nothing made its codes follow."
            if kind == "ae"
            else "`vaekit evaluate` gives what it does define (its reconstruction term and, "
            "for a VQ-VAE, the codebook's usage and perplexity)."
        )
        page.heading("Evaluation").paragraph(
            f"{NO_LIKELIHOOD[0].upper()}{NO_LIKELIHOOD[1:]} (model {kind}). {why}",
            id="evaluation",
        )
    else:
        page.heading(f"Evaluation ({result.get('split')} split)")
        page.paragraph(
            f"N = {result.get('num_examples')} {result.get('split')} examples, K = "
            f"{result.get('num_samples')} importance samples per example for the nll. "
            f"Space of the likelihood figures: {result.get('space', 'the model inputs')}"
            + (
                f" (the model-space figures are of {result['model_space']})."
                if "model_space" in result
                else "."
            )
            + (
                f" Bits/dim: {result['bits_per_dim_basis']}."
                if "bits_per_dim_basis" in result
                else ""
            )
        )
        page.table(
            ("quantity", "value", "unit", "definition"),
            evaluation_rows(result),
            id="evaluation",
            value_columns=(1,),
        )
        if result.get("references"):
            page.paragraph("The nll beside references in the same space:")
            page.table(
                ("reference", "nll (nats per example)", "bits/dim", "what it is"),
                reference_rows(result),
                id="references",
                value_columns=(1, 2),
            )
        info = result.get("fcd_classifier")
        if isinstance(info, dict):
            page.paragraph(
                f"FCD classifier: {info.get('architecture', '?')}; test accuracy "
                f"{100 * float(info.get('test_accuracy', float('nan'))):.1f}%; "
                f"{result.get('fcd_num_examples')} real and as many generated images."
            )
    if rows is not None:
        _table_rows(page, rows)
    page.heading("Pictures")
    page.gallery(
        [(f.path.read_bytes(), f.caption, f.name, f"fig-{f.name}", f.pixels) for f in figures]
    )
    page.details(
        "Configuration (config.json): click to open", json.dumps(config, indent=2), id="config"
    )
    return page.render()


def _table_rows(page: Page, rows: TableRows) -> None:
    """A mixed table's test rows beside their reconstructions, then synthetic rows."""
    page.heading("Rows (in the table's own types)")
    page.paragraph(
        "Test rows, each followed by its reconstruction E[v|z = mu(x)]: a real or positive "
        "column's mean, a count's mean rounded, a category's most probable value; a blank "
        "input cell is missing (the model filled it in the reconstruction)."
    )
    body = []
    for i, (cells, recon) in enumerate(rows.pairs):
        body.append((f"test row {i}", *(c or "(missing)" for c in cells)))
        body.append(("reconstruction", *recon))
    page.table(("", *rows.names), body, id="table-reconstructions", value_columns=())
    if rows.samples:
        page.paragraph("Synthetic rows: z ~ p(z), then every cell drawn from p(v|z).")
        body = [(f"sample {i + 1}", *cells) for i, cells in enumerate(rows.samples)]
        page.table(("", *rows.names), body, id="table-samples")


def _evaluation(
    run_dir, descriptor, model, num_samples, max_examples, data_dir, seed, log, max_seconds
):
    """The run's eval.json if it belongs to these weights, else a fresh (quick) evaluation,
    within ``max_seconds`` if given; None for an AE, which defines no likelihood."""
    if not model.has_likelihood:
        return None
    eval_path = run_dir / "eval.json"
    if eval_path.exists():
        # Numbers shown as they are read: a file that is not what vaekit writes is refused,
        # naming the field, rather than printed ("nll: abc nats per example").
        try:
            result = parse_json(read_regular(eval_path), eval_path)
            problem = result_problem(result)
        except StateError as exc:
            problem = str(exc).removeprefix(f"{eval_path}: ")
        if problem is not None:
            raise ValueError(
                f"{eval_path}: {problem}; delete it, or run vaekit evaluate to write it anew"
            )
        sha = (descriptor.get("weights") or {}).get("sha256")
        if result.get("model_sha256") == sha:
            return result
    if log is not None:
        log(f"report: evaluating with K = {num_samples} importance samples")
    result = evaluate_run(
        run_dir,
        data_dir=data_dir,
        save=False,
        num_samples=num_samples,
        max_examples=max_examples,
        seed=seed,
        max_seconds=max_seconds,
        log=log if max_seconds is not None else None,  # say what the time budget cut
    )
    try:  # a cache for the next report: the report itself does not depend on it
        save_evaluation(run_dir, result)
    except (OSError, RunDirError) as exc:
        if log is not None:
            log(f"report: {eval_path} not written ({exc})")
    return result


def evaluation_summary(result: dict[str, Any] | None) -> list[str]:
    """The evaluation's headline as text lines (printed before any file is written)."""
    if result is None:
        return [f"evaluation: {NO_LIKELIHOOD}"]
    return [
        f"evaluation ({result.get('split')} split, {result.get('num_examples')} examples):",
        *(f"  {q}: {v} {u}" for q, v, u, _ in evaluation_rows(result)),
        *reference_lines(result),
    ]


def write_report(
    run_dir: str | Path,
    num_samples: int = QUICK_NUM_SAMPLES,
    max_examples: int | None = QUICK_MAX_EXAMPLES,
    data_dir: str | None = None,
    seed: int = 0,
    log=None,
    max_seconds: float | None = None,
) -> Path:
    """Write ``run_dir/report.html`` (and its PNGs in ``run_dir/figures/``); returns its path.

    Uses ``run_dir/eval.json`` when it belongs to the current weights (same SHA-256); else
    evaluates first with K = ``num_samples`` on at most ``max_examples`` test examples (a
    quick check; ``vaekit evaluate RUN --final`` gives the final number) and saves that
    eval.json. ``max_seconds``: the time the report may take (training's under
    train.max_minutes); the evaluation gets half of it and is cut to fit (see ``evaluate``).
    """
    run_dir = Path(run_dir)
    descriptor = read_descriptor(run_dir)
    model, dataset = load_run(run_dir, data_dir)
    share = max_seconds / 2 if max_seconds is not None else None  # figures take the rest
    result = _evaluation(
        run_dir, descriptor, model, num_samples, max_examples, data_dir, seed, log, share
    )
    if log is not None:  # the result first: it survives a run directory that cannot be written
        for line in evaluation_summary(result):
            log(line)
    x = dataset.fixed("test", seed=seed)[:2000].to(next(model.parameters()).dtype)
    y = dataset.test.y[:2000] if dataset.test.y is not None and model.takes_labels else None
    stats = latent_statistics(model, x, y=y) if model.has_continuous_latent else None
    config = descriptor.get("config") or {
        "model": descriptor.get("model"),
        "data": descriptor.get("data"),
    }
    title = f"vaekit report: {run_dir.name} ({dataset.name})"
    explorer = (run_dir / "explore.html").is_file()
    path = run_dir / REPORT_FILE
    # No other vaekit process writes the run meanwhile; the figures and the page land
    # together, so a failed write (a full disk) leaves the old ones as they were.
    with locked(run_dir), staged_dir(run_dir / FIGURE_DIR, replace=True, marker=False) as staged:
        figures = run_figures(model, dataset, run_dir, staged, stats=stats, seed=seed)
        rows = table_rows(model, dataset.fixed("test", seed=seed), y, seed=seed)
        page = render_report(title, config, result, figures, descriptor, explorer, rows)
        atomic_write_bytes(path, page.encode("utf-8"))  # the umask's mode, like every file
    return path


def refresh_report(run_dir: str | Path, log=None) -> Path | None:
    """Rewrite ``run_dir/report.html``, where there is one, after its eval.json changed: the
    page shows the numbers of the eval.json beside it, never an older evaluation's. Returns
    its path (None: no report to refresh). A failure is said through ``log`` and leaves the
    old page, which then names its own K and N."""
    run_dir = Path(run_dir)
    path = run_dir / REPORT_FILE
    if not path.is_file():
        return None
    seed = ((read_descriptor(run_dir).get("config") or {}).get("train") or {}).get("seed", 0)
    try:
        return write_report(run_dir, seed=seed)
    except Exception as exc:  # the evaluation above stands; the page is only its display
        if log is not None:
            log(f"warning: {path} not updated ({exc}); `vaekit report {run_dir}` rewrites it")
        return None
