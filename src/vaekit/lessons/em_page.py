"""The ``vaekit lesson em`` page (VAE vs EM): figures and the statements computed from the
experiment's numbers; nothing is written in advance."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.report.page import write_page
from vaekit.report.plots import legend, png_bytes, pyplot
from vaekit.support.spelling import spell

_EM_LABELS = {
    "exact_em": "exact EM",
    "linear_vae_diagonal": "linear VAE, diagonal q",
    "linear_vae_full": "linear VAE, full-covariance q",
}


def _column(history: list[dict[str, float]], key: str) -> np.ndarray:
    return np.array([row[key] for row in history])


def _bound_figure(report: dict[str, Any], histories: dict[str, list[dict]]) -> bytes:
    """Distance below the closed-form maximum (log scale): log p(x) and the ELBO per method."""
    plt = pyplot()
    mle = report["methods"]["closed_form_mle"]["log_px"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ax, name in zip(axes, _EM_LABELS, strict=True):
        h = histories[name]
        steps = _column(h, "step")
        ax.semilogy(steps, np.maximum(mle - _column(h, "log_px"), 1e-12), label="log p(x)")
        ax.semilogy(steps, np.maximum(mle - _column(h, "elbo"), 1e-12), "--", label="ELBO")
        ax.set_title(_EM_LABELS[name], fontsize=10)
        ax.set_xlabel("EM iteration" if name == "exact_em" else "gradient step")
        ax.legend(fontsize=8, loc="upper right")
    axes[0].set_ylabel("closed-form max log p(x) minus value\n(nats per example, log scale)")
    fig.tight_layout()
    return png_bytes(fig)


def _estep_figure(
    report: dict[str, Any], histories: dict[str, list[dict]], iterations: int = 15
) -> bytes:
    """Saw-tooth: after each M-step the old q's ELBO is below log p(x); the E-step closes it."""
    plt = pyplot()
    mle = report["methods"]["closed_form_mle"]["log_px"]
    h = histories["exact_em"][: iterations + 1]
    xs, ys = [0.0], [h[0]["log_px"]]
    for row in h[1:]:
        t = row["step"]
        xs += [t - 0.5, t]  # after the M-step (old q), after the E-step (exact posterior)
        ys += [row["elbo"], row["log_px"]]
    fig, (ax, ax_gap) = plt.subplots(1, 2, figsize=(11, 3.8))
    ax.semilogy(_column(h, "step"), mle - _column(h, "log_px"), "o-", label="log p(x | theta_t)")
    ax.semilogy(xs, mle - np.array(ys), "--", color="C1", label="ELBO of the current q")
    ax.set_xlabel("EM iteration (half steps: after the M-step, before the E-step)")
    ax.set_ylabel("closed-form max log p(x) minus value\n(nats per example, log scale)")
    legend(ax, fontsize=8)
    gaps = _column(h, "gap")[1:]
    ax_gap.semilogy(_column(h, "step")[1:], gaps, "o-", color="C1", label="after the M-step")
    ax_gap.set_xlabel("EM iteration")
    ax_gap.set_ylabel("KL(q || p(z|x)), nats per example")
    ax_gap.set_title("gap before each E-step; after it the gap is exactly 0", fontsize=10)
    fig.tight_layout()
    return png_bytes(fig)


def _fixed_figure(report: dict[str, Any], histories: dict[str, list[dict]]) -> bytes:
    plt = pyplot()
    fixed = report["fixed_decoder"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for posterior, colour in (("diagonal", "C0"), ("full", "C2")):
        h = histories[f"fixed_decoder_{posterior}_encoder"]
        ax.semilogy(
            _column(h, "step"), _column(h, "gap"), color=colour, label=f"trained {posterior} q"
        )
    ax.axhline(
        fixed["closed_form_diagonal_gap"],
        color="k",
        ls=":",
        label=f"best diagonal q, closed form: {fixed['closed_form_diagonal_gap']:.4f} nats",
    )
    ax.set_xlabel("gradient step (decoder fixed, encoder trained)")
    ax.set_ylabel("gap KL(q || p(z|x)), nats per example")
    legend(ax, fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def _rotation_figure(report: dict[str, Any], histories: dict[str, list[dict]]) -> bytes:
    plt = pyplot()
    mle = report["methods"]["closed_form_mle"]["log_px"]
    h = histories["linear_vae_diagonal"]
    steps = _column(h, "step")
    fig, (ax, ax_rot) = plt.subplots(1, 2, figsize=(11, 3.8))
    shortfall = np.maximum(mle - _column(h, "log_px"), 1e-12)
    ax.semilogy(steps, shortfall, label="MLE log p(x) - log p(x)")
    ax.semilogy(steps, np.maximum(_column(h, "gap"), 1e-12), "--", label="gap KL(q || p(z|x))")
    ax.set_xlabel("gradient step")
    ax.set_ylabel("nats per example")
    ax.set_title("diagonal linear VAE, W learned", fontsize=10)
    legend(ax, fontsize=8)
    ax_rot.semilogy(steps, _column(h, "wtw_off_diagonal_ratio"), color="C3")
    ax_rot.set_xlabel("gradient step")
    ax_rot.set_ylabel("||offdiag(W^T W)||_F / ||W^T W||_F")
    ax_rot.set_title("how far W^T W is from diagonal (0: orthogonal columns)", fontsize=10)
    fig.tight_layout()
    return png_bytes(fig)


def _em_claims(report: dict[str, Any], histories: dict[str, list[dict]]) -> dict[str, list[str]]:
    m = report["methods"]
    mle = m["closed_form_mle"]["log_px"]
    em = m["exact_em"]
    em_lp = _column(histories["exact_em"], "log_px")
    steps = np.diff(em_lp)
    claims: dict[str, list[str]] = {}
    worst = max(
        float((_column(h, "elbo") - _column(h, "log_px")).max())
        for name, h in histories.items()
        if name in _EM_LABELS
    )
    claims["bound"] = [
        f"Closed-form MLE: log p(x) = {mle:.6f} nats per example. "
        + "".join(
            f"{label}: log p(x) = {m[name]['log_px']:.6f}, ELBO = {m[name]['elbo']:.6f}, "
            f"gap = {m[name]['gap']:.3g} nats per example; largest principal angle to the MLE "
            f"subspace {m[name]['max_principal_angle_deg']:.3g} degrees. "
            for name, label in _EM_LABELS.items()
        ),
        f"Over every recorded iteration and step of the three methods, the largest value of "
        f"ELBO - log p(x) was {worst:.3g} nats per example "
        + ("(<= 0 up to rounding: the ELBO is a lower bound)." if worst <= 1e-9 else "."),
    ]
    if "true_parameters" in m:
        claims["bound"].append(
            f"Under the parameters that generated the data, log p(x) = "
            f"{m['true_parameters']['log_px']:.6f} nats per example (the MLE fits this sample "
            f"at least as well: {mle - m['true_parameters']['log_px']:.4g} nats higher)."
        )
    claims["estep"] = [
        f"Exact EM ran {len(steps)} iterations; log p(x) changed by at least {steps.min():.3g} "
        f"nats per example per iteration "
        + ("(it never decreased)" if steps.min() >= -1e-12 else "(it DECREASED at some step)")
        + f" and ended at {em['log_px']:.6f}, {abs(em['log_px'] - mle) / abs(mle):.2e} "
        f"relative to the closed-form maximum. After each E-step the gap is "
        f"{em['gap']:.2g} nats (q is the exact posterior); the largest gap left by the previous "
        f"q after an M-step was {float(_column(histories['exact_em'], 'gap').max()):.4g} nats."
    ]
    f = report["fixed_decoder"]
    claims["fixed"] = [
        f"Decoder fixed at W = W_mle R: log p(x) = {f['log_px']:.6f} nats per example and "
        f"||offdiag(W^T W)||_F / ||W^T W||_F = {f['wtw_off_diagonal_ratio']:.3f} (columns not "
        f"orthogonal, so p(z|x) is correlated).",
        f"Exact optimal full-covariance q: ELBO = {f['optimal_full_q']['elbo']:.6f}, gap "
        f"{f['optimal_full_q']['gap']:.2g} nats. Exact optimal diagonal q: ELBO = "
        f"{f['optimal_diagonal_q']['elbo']:.6f}, gap {f['optimal_diagonal_q']['gap']:.6f} nats; "
        f"closed-form gap 0.5 (sum_j log P_jj - log|P|) = {f['closed_form_diagonal_gap']:.6f}.",
        f"Trained encoders: diagonal q ends with gap {f['trained_diagonal_encoder']['gap']:.6f} "
        f"nats, full q with gap {f['trained_full_encoder']['gap']:.3g} nats.",
    ]
    d = m["linear_vae_diagonal"]
    claims["rotation"] = [
        f"With W learned too, the diagonal linear VAE reached log p(x) = {d['log_px']:.6f}, "
        f"{mle - d['log_px']:.3g} nats per example below the closed-form maximum, with gap "
        f"{d['gap']:.3g} nats, and ||offdiag(W^T W)||_F / ||W^T W||_F = "
        f"{d['wtw_off_diagonal_ratio']:.3g} (the fixed decoder above: "
        f"{f['wtw_off_diagonal_ratio']:.3f})"
        + (
            ": it reached the maximum by choosing a W with (nearly) orthogonal columns, for "
            "which the exact posterior is diagonal (Lucas et al. 2019)."
            if mle - d["log_px"] < 1e-3 and d["wtw_off_diagonal_ratio"] < 0.01
            else ": within this budget it did not reach both the maximum (to 1e-3 nats) and "
            f"orthogonal columns (ratio < 0.01); train longer ({spell('--steps', 'vae_steps')})."
        )
    ]
    return claims


def write_em_report(
    report: dict[str, Any], histories: dict[str, list[dict]], out_dir: str | Path
) -> Path:
    """The ``vaekit lesson em`` report: four figures and the computed statements, in ``out_dir``."""
    out_dir = Path(out_dir)
    claims = _em_claims(report, histories)
    intro = [
        f"Data: {report['description']}. Latent dimension m = {report['latent_dim']}. All "
        "numbers are means over the data, in nats per example; log p(x) is exact "
        "(log N(x; b, W W^T + sigma^2 I)) and the ELBO is computed with its expectation in "
        "closed form, so gap = log p(x) - ELBO = KL(q || p(z|x)) exactly.",
        f"Linear VAEs: Adam on the exact ELBO, full batch, {report['vae_steps']} steps, "
        f"lr {report['lr']} with cosine decay, seed {report['seed']}.",
    ]
    sections = [
        (
            "The ELBO is a lower bound on log p(x)",
            claims["bound"],
            [
                (
                    "em_bound.png",
                    _bound_figure(report, histories),
                    "How far log p(x) and the ELBO are below the closed-form maximum (log "
                    "scale); the dashed ELBO curve lies on or above the solid one: ELBO <= "
                    "log p(x).",
                )
            ],
        ),
        (
            "EM's E-step closes the gap exactly",
            claims["estep"],
            [
                (
                    "em_estep.png",
                    _estep_figure(report, histories),
                    "Left: the ELBO of the current q rises in the M-step and jumps up to "
                    "log p(x) in the E-step. Right: the gap just before each E-step.",
                )
            ],
        ),
        (
            "Decoder fixed at a non-orthogonal W: the gap each family of q leaves",
            claims["fixed"],
            [
                (
                    "em_fixed_decoder.png",
                    _fixed_figure(report, histories),
                    "Gap of encoders trained against the fixed decoder; dotted: the "
                    "closed-form gap of the best diagonal q.",
                )
            ],
        ),
        (
            "W learned too: the diagonal linear VAE and the rotation of W",
            claims["rotation"],
            [
                (
                    "em_rotation.png",
                    _rotation_figure(report, histories),
                    "Left: distance to the MLE log p(x) and the gap. Right: how far W^T W is "
                    "from diagonal.",
                )
            ],
        ),
    ]
    return write_page(out_dir, "VAE vs EM on probabilistic PCA", intro, sections)


def em_headline(report: dict[str, Any]) -> list[str]:
    """Short text lines for the terminal (nats per example)."""
    lines = [f"{report['description']}; m = {report['latent_dim']}"]
    lines.append(f"{'method':<28}{'log p(x)':>14}{'ELBO':>14}{'gap':>12}{'angle':>10}")
    for name, row in report["methods"].items():
        lines.append(
            f"{name:<28}{row['log_px']:>14.6f}{row['elbo']:>14.6f}{row['gap']:>12.3g}"
            f"{row['max_principal_angle_deg']:>9.3g}°"
        )
    f = report["fixed_decoder"]
    lines.append(
        f"fixed non-orthogonal W: optimal full q gap {f['optimal_full_q']['gap']:.2g}, "
        f"optimal diagonal q gap {f['optimal_diagonal_q']['gap']:.6f} "
        f"(closed form {f['closed_form_diagonal_gap']:.6f})"
    )
    lines.append("units: nats per example (means over the data); angle: largest principal angle")
    if math.isfinite(f["log_px"]) and "report" in report:
        lines.append(f"report: {report['report']}")
    return lines
