"""``RUN/report.html``: one self-contained page (PNGs embedded as base64, no network, no
script) with the run's configuration, the evaluation table with units and definitions, and
every picture of ``vaekit.report.figures``.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from vaekit.checkpoint import atomic_write_bytes, read_descriptor
from vaekit.evaluate import evaluate_run, latent_statistics, load_run, save_evaluation
from vaekit.models import VAE
from vaekit.report.figures import Figure, run_figures
from vaekit.rundir import RunDirError, locked

REPORT_FILE = "report.html"
FIGURE_DIR = "figures"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table.eval { border-collapse: collapse; width: 100%; font-size: .92em; }
table.eval th, table.eval td { border: 1px solid #ccc; padding: .35em .6em; text-align: left;
                               vertical-align: top; }
table.eval th { background: #f2f2f2; }
td.value { font-family: monospace; font-size: 1.1em; white-space: nowrap; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: .92em; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:  # eval.json writes a non-finite number as null (see null_reasons)
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.{digits}f}"
    return str(value)


def evaluation_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(quantity, value, unit, definition) rows of the evaluation table."""
    k, n = result.get("num_samples"), result.get("num_examples")
    rows = [
        (
            "nll",
            f"{_fmt(result['nll'])} ± {_fmt(result['nll_stderr'])}",
            "nats per example",
            f"-log p(x) estimated by importance sampling with K = {k} draws from q(z|x) per "
            f"example (Burda et al. 2015), mean over N = {n} {result.get('split')} examples "
            "± one standard error; an upper bound on the true nll in expectation. Negative "
            "values are possible for continuous (e.g. dequantised) data, where p is a density.",
        ),
    ]
    if "bits_per_dim" in result:
        rows.append(
            (
                "bits/dim",
                f"{_fmt(result['bits_per_dim'], 4)}",
                "bits per dimension",
                "nll of the discrete data: (nll + D log levels) / (D log 2) for "
                "dequantised data (Theis et al. 2016), nll / (D log 2) for binary data.",
            )
        )
    rows += [
        (
            "ELBO",
            _fmt(result["elbo"]),
            "nats per example",
            "E_q[log p(x|z)] - KL(q(z|x) || p(z)), one Monte-Carlo draw; "
            "a lower bound on log p(x).",
        ),
        (
            "E_q[log p(x|z)]",
            _fmt(result["log_px_z"]),
            "nats per example",
            "the reconstruction term of the ELBO.",
        ),
        (
            "KL",
            _fmt(result["kl"]),
            "nats per example",
            "KL(q(z|x) || N(0, I)) in closed form, mean over examples.",
        ),
    ]
    if abs(result.get("kl_correlation", 0.0)) > 1e-6:
        rows.append(
            (
                "KL correlation part",
                _fmt(result["kl_correlation"]),
                "nats per example",
                "KL minus the sum of the per-coordinate marginal KLs: the part of the KL "
                "due to correlations in the full-covariance posterior.",
            )
        )
    m = len(result.get("kl_per_dim", []))
    rows.append(
        (
            "active units",
            f"{result['active_units']} of {m}",
            "latent coordinates",
            "coordinates j with Var_x(E_q[z_j|x]) > 0.01 (Burda et al. 2015).",
        )
    )
    agg = result.get("aggregate_posterior", {})
    if agg:
        rows += [
            (
                "aggregate posterior: mean norm",
                _fmt(agg["mean_norm"]),
                "latent units",
                "||m|| for m = mean_x E_q[z|x]; 0 under the prior.",
            ),
            (
                "aggregate posterior: ||C - I||_F",
                _fmt(agg["cov_frobenius_to_identity"]),
                "latent units squared",
                "Frobenius distance of C = Cov_x(mu(x)) + mean_x Sigma(x) from the prior's I.",
            ),
            (
                "aggregate posterior: KL to prior",
                _fmt(agg["kl_gaussian_fit_to_prior"]),
                "nats",
                "KL(N(m, C) || N(0, I)) of the Gaussian with the aggregate posterior's moments.",
            ),
        ]
    if "frechet_classifier_distance" in result:
        info = result.get("fcd_classifier", {})
        rows.append(
            (
                "Fréchet classifier distance (FCD)",
                _fmt(result["frechet_classifier_distance"]),
                "squared feature units",
                f"Fréchet distance between Gaussian fits of {result.get('fcd_num_examples')} "
                "real and as many generated images (E[x|z], z ~ N(0, I)) in the 64-d "
                "features of vaekit's own classifier for this dataset "
                f"({info.get('architecture', '')}; test accuracy "
                f"{100 * info.get('test_accuracy', float('nan')):.1f}%). Not FID; lower is "
                "better; comparable only on the same dataset.",
            )
        )
    return rows


def _table(result: dict[str, Any]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(q)}</td><td class='value'>{html.escape(v)}</td>"
        f"<td>{html.escape(u)}</td><td>{html.escape(d)}</td></tr>"
        for q, v, u, d in evaluation_rows(result)
    )
    return (
        "<table class='eval' id='evaluation'><thead><tr><th>quantity</th><th>value</th>"
        f"<th>unit</th><th>definition</th></tr></thead><tbody>{body}</tbody></table>"
    )


def _figure(figure: Figure) -> str:
    data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
    return (
        f"<figure id='fig-{figure.name}'><img alt='{html.escape(figure.name)}' "
        f"src='data:image/png;base64,{data}'><figcaption>{html.escape(figure.caption)}"
        "</figcaption></figure>"
    )


def _evaluation_section(result: dict[str, Any] | None) -> str:
    if result is None:
        return (
            "<h2>Evaluation</h2><p id='evaluation'>This is a plain autoencoder: it defines "
            "no likelihood p(x), so there is no ELBO, log-likelihood or KL to report. "
            "Its samples decode z ~ N(0, I), which nothing made its codes follow.</p>"
        )
    split = html.escape(str(result.get("split")))
    return f"<h2>Evaluation ({split} split)</h2>{_table(result)}"


def render_report(
    title: str, config: dict[str, Any], result: dict[str, Any], figures: list[Figure]
) -> str:
    """The report page as one HTML string."""
    pictures = "".join(_figure(f) for f in figures)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        "<p>All likelihood numbers are nats per example unless they say bits per dimension. "
        "Pictures of decoded images show the decoder mean E[x|z].</p>"
        f"{_evaluation_section(result)}"
        f"<h2>Pictures</h2>{pictures}"
        "<h2>Configuration</h2>"
        f"<pre id='config'>{html.escape(json.dumps(config, indent=2))}</pre>"
        "</body></html>"
    )


def _evaluation(run_dir, descriptor, model, num_samples, max_examples, data_dir, seed, log):
    """The run's eval.json if it belongs to these weights, else a fresh (quick) evaluation;
    None for an AE, which defines no likelihood."""
    if not isinstance(model, VAE):
        return None
    eval_path = run_dir / "eval.json"
    if eval_path.exists():
        try:
            result = json.loads(eval_path.read_text())
        except json.JSONDecodeError:
            result = None
        sha = (descriptor.get("weights") or {}).get("sha256")
        if isinstance(result, dict) and result.get("model_sha256") == sha:
            return result
    if log is not None:
        log(f"report: evaluating with K = {num_samples} importance samples")
    result = evaluate_run(
        run_dir, data_dir, save=False, num_samples=num_samples, max_examples=max_examples, seed=seed
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
        return ["evaluation: a plain autoencoder defines no likelihood p(x): nothing to report"]
    return [
        f"evaluation ({result.get('split')} split, {result.get('num_examples')} examples):",
        *(f"  {q}: {v} {u}" for q, v, u, _ in evaluation_rows(result)),
    ]


def write_report(
    run_dir: str | Path,
    num_samples: int = 500,
    max_examples: int | None = 1000,
    data_dir: str | None = None,
    seed: int = 0,
    log=None,
) -> Path:
    """Write ``run_dir/report.html`` (and its PNGs in ``run_dir/figures/``); returns its path.

    Uses ``run_dir/eval.json`` when it belongs to the current weights (same SHA-256); else
    evaluates first with K = ``num_samples`` on at most ``max_examples`` test examples (a
    quick check; run ``vaekit evaluate RUN`` with the default K = 5000 for the final number)
    and saves that eval.json.
    """
    run_dir = Path(run_dir)
    descriptor = read_descriptor(run_dir)
    model, dataset = load_run(run_dir, data_dir)
    result = _evaluation(run_dir, descriptor, model, num_samples, max_examples, data_dir, seed, log)
    if log is not None:  # the result first: it survives a run directory that cannot be written
        for line in evaluation_summary(result):
            log(line)
    x = dataset.fixed("test", seed=seed)[:2000].to(next(model.parameters()).dtype)
    stats = latent_statistics(model, x) if isinstance(model, VAE) else None
    with locked(run_dir):  # no other vaekit process writes the run meanwhile
        figures = run_figures(model, dataset, run_dir, run_dir / FIGURE_DIR, stats=stats, seed=seed)
    config = descriptor.get("config") or {
        "model": descriptor.get("model"),
        "data": descriptor.get("data"),
    }
    title = f"vaekit report: {run_dir.name} ({dataset.name})"
    page = render_report(title, config, result, figures)
    path = run_dir / REPORT_FILE
    with locked(run_dir):
        atomic_write_bytes(path, page.encode("utf-8"))  # the umask's mode, like every file
    return path
