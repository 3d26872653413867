"""Reports for the lecture's two contrasts: ``vaekit em`` (VAE vs EM) and ``vaekit compare``
(AE vs VAE). Each is one self-contained HTML page (PNG figures inlined as base64) beside the
PNG files and a JSON file with every number. Every sentence that states a result is built from
the computed numbers; nothing is written in advance.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.report.page import Page
from vaekit.rundir import atomic_write_bytes
from vaekit.spelling import spell

Figure = tuple[str, bytes, str]  # (file name, PNG bytes, caption)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    return buffer.getvalue()


def write_page(
    out_dir: Path, title: str, intro: list[str], sections: list[tuple[str, list[str], list[Figure]]]
) -> Path:
    """Write ``out_dir/report.html`` (self-contained, by :class:`vaekit.report.page.Page`) and
    each figure as ``out_dir/NAME``."""
    page = Page(title)
    for paragraph in intro:
        page.paragraph(paragraph)
    for heading, paragraphs, figures in sections:
        page.heading(heading)
        for paragraph in paragraphs:
            page.paragraph(paragraph)
        for name, png, caption in figures:
            atomic_write_bytes(out_dir / name, png)
            page.figure(png, caption, name)
    return page.write(out_dir / "report.html")


# --- vaekit em -------------------------------------------------------------------------------

_EM_LABELS = {
    "exact_em": "exact EM",
    "linear_vae_diagonal": "linear VAE, diagonal q",
    "linear_vae_full": "linear VAE, full-covariance q",
}


def _column(history: list[dict[str, float]], key: str) -> np.ndarray:
    return np.array([row[key] for row in history])


def _bound_figure(report: dict[str, Any], histories: dict[str, list[dict]]) -> bytes:
    """Distance below the closed-form maximum (log scale): log p(x) and the ELBO per method."""
    plt = _pyplot()
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
    return _png(fig)


def _estep_figure(
    report: dict[str, Any], histories: dict[str, list[dict]], iterations: int = 15
) -> bytes:
    """Saw-tooth: after each M-step the old q's ELBO is below log p(x); the E-step closes it."""
    plt = _pyplot()
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
    ax.legend(fontsize=8)
    gaps = _column(h, "gap")[1:]
    ax_gap.semilogy(_column(h, "step")[1:], gaps, "o-", color="C1", label="after the M-step")
    ax_gap.set_xlabel("EM iteration")
    ax_gap.set_ylabel("KL(q || p(z|x)), nats per example")
    ax_gap.set_title("gap before each E-step; after it the gap is exactly 0", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _fixed_figure(report: dict[str, Any], histories: dict[str, list[dict]]) -> bytes:
    plt = _pyplot()
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
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _rotation_figure(report: dict[str, Any], histories: dict[str, list[dict]]) -> bytes:
    plt = _pyplot()
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
    ax.legend(fontsize=8)
    ax_rot.semilogy(steps, _column(h, "wtw_off_diagonal_ratio"), color="C3")
    ax_rot.set_xlabel("gradient step")
    ax_rot.set_ylabel("||offdiag(W^T W)||_F / ||W^T W||_F")
    ax_rot.set_title("how far W^T W is from diagonal (0: orthogonal columns)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


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
    """The ``vaekit em`` report: four figures and the computed statements, in ``out_dir``."""
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


# --- vaekit compare ----------------------------------------------------------------------------

_KINDS = {"ae": "AE (reconstruction only)", "vae": "VAE (ELBO)"}


def _samples_figure(generated: dict[str, Any], n: int = 64) -> bytes:
    from vaekit.report.plots import image_grid

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    for ax, (kind, images) in zip(axes, generated.items(), strict=True):
        grid = image_grid(images[:n])
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{_KINDS[kind]}: E[x|z], z ~ N(0, I)", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def _codes_figure(codes: dict[str, Any], labels) -> bytes:
    """2-D map of the test codes (first two principal components if m > 2), by label."""
    import torch

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    circle = np.linspace(0, 2 * np.pi, 200)
    for ax, (kind, z) in zip(axes, codes.items(), strict=True):
        z = z.double()
        if z.shape[1] > 2:
            centred = z - z.mean(0)
            _, _, vh = torch.linalg.svd(centred, full_matrices=False)
            xy, how = z @ vh[:2].T, "codes, first two principal axes"
        else:
            xy, how = z, "codes"
        xy = xy.numpy()
        points = ax.scatter(
            xy[:, 0], xy[:, 1], c=labels.numpy(), cmap="tab10", s=9, vmin=-0.5, vmax=9.5
        )
        ax.plot(2 * np.cos(circle), 2 * np.sin(circle), "k--", lw=0.8)
        ax.set_title(f"{_KINDS[kind]}: {how}", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
    fig.colorbar(points, ax=axes, ticks=range(10), label="label")
    return _png(fig)


def _interpolation_figure(rows: dict[str, Any], ends) -> bytes:
    from vaekit.report.plots import image_grid

    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.6 * len(rows) + 0.4))
    for ax, (kind, images) in zip(axes, rows.items(), strict=True):
        import torch

        strip = torch.cat([ends[:1], images, ends[1:]])  # input a, path, input b
        ax.imshow(
            image_grid(strip, ncols=strip.shape[0])[..., 0],
            cmap="gray",
            vmin=0,
            vmax=1,
            interpolation="nearest",
        )
        ax.set_title(
            f"{_KINDS[kind]}: input a | decoded (1-t) z_a + t z_b, t = 0..1 | input b", fontsize=9
        )
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def _compare_claims(result: dict[str, Any]) -> dict[str, list[str]]:
    ae, vae = result["models"]["ae"], result["models"]["vae"]
    claims: dict[str, list[str]] = {}
    a, v = ae["reconstruction_squared_error"], vae["reconstruction_squared_error"]
    winner = "AE" if a < v else "VAE"
    claims["recon"] = [
        f"Test reconstruction error (squared error summed over the data dimensions, mean per "
        f"example): AE {a:.4f} ± {ae['reconstruction_squared_error_stderr']:.4f}, VAE {v:.4f} ± "
        f"{vae['reconstruction_squared_error_stderr']:.4f} (± one standard error). The "
        f"{winner}'s is lower, by a factor {max(a, v) / min(a, v):.2f}."
    ]
    q = result["sample_quality"]
    sa, sv = ae["prior_sample_score"], vae["prior_sample_score"]
    better = "VAE" if sv < sa else "AE"
    claims["samples"] = [
        f"Sample-quality score of 1000 prior samples ({q['definition']}): AE {sa:.2f}, VAE "
        f"{sv:.2f}; {q['held_out_real_count']} real images of the training split (not the "
        f"test reference set) score {q['held_out_real']:.2f}, a floor for this sample size. "
        f"The {better}'s prior samples are closer to real data, by a factor "
        f"{max(sa, sv) / min(sa, sv):.2f}. The classifier behind the features has test "
        f"accuracy {q['classifier_test_accuracy']:.3f}."
    ]
    ca, cv = ae["code_distribution"], vae["code_distribution"]
    far = "AE" if ca["kl_gaussian_fit_to_prior"] > cv["kl_gaussian_fit_to_prior"] else "VAE"
    claims["codes"] = [
        f"The AE's test codes f(x): ||mean|| = {ca['mean_norm']:.3f}, ||Cov - I||_F = "
        f"{ca['cov_minus_identity_fro']:.3f}, KL(N(mean, Cov) || N(0, I)) = "
        f"{ca['kl_gaussian_fit_to_prior']:.3f} nats. The VAE's aggregate posterior (mean of "
        f"mu(x); Cov(mu(x)) + mean Sigma(x)): ||mean|| = {cv['mean_norm']:.3f}, ||Cov - I||_F = "
        f"{cv['cov_minus_identity_fro']:.3f}, KL = {cv['kl_gaussian_fit_to_prior']:.3f} nats. "
        f"The {far}'s code distribution is further from the prior N(0, I) that both models "
        "decode from when sampling.",
        "The map shows mu(x) for the VAE and f(x) for the AE; the dashed circle has radius 2 "
        "(86% of N(0, I)'s mass in any 2-D orthonormal projection).",
    ]
    held = vae["held_out"]
    claims["likelihood"] = [
        f"VAE held-out nll (-log p(x), importance-sampled with K = {held['num_samples']} per "
        f"example, {held['num_examples']} test examples): {held['nll']:.3f} ± "
        f"{held['nll_stderr']:.3f} nats per example; ELBO {held['elbo']:.3f} nats per example"
        + (
            f"; {held['bits_per_dim']:.4f} bits per dimension of the discrete data."
            if "bits_per_dim" in held
            else "."
        )
        + (
            " The nll is negative because x has a density on a bounded set, which can exceed "
            "1; bits per dimension of the discrete data are the comparable figure."
            if held["nll"] < 0
            else ""
        ),
        "The AE defines no density p(x): it has no likelihood and no nll, and none is "
        "reported for it.",
    ]
    return claims


def write_compare_report(
    result: dict[str, Any],
    models: dict[str, Any],
    x,
    labels,
    codes: dict[str, Any],
    generated: dict[str, Any],
    out_dir: str | Path,
    seed: int = 0,
) -> Path:
    """The ``vaekit compare`` report in ``out_dir``: figures, computed statements, HTML."""
    import torch

    from vaekit.report.plots import is_image

    out_dir = Path(out_dir)
    claims = _compare_claims(result)
    # Interpolation ends: a seeded random test image and the next one (same order) whose
    # label differs.
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    first = int(order[0])
    second = next(int(i) for i in order if labels[i] != labels[first])
    ends = x[[first, second]]
    t = torch.linspace(0, 1, 10, dtype=x.dtype).unsqueeze(1)
    paths = {}
    with torch.no_grad():
        for kind, model in models.items():
            z = codes[kind][[first, second]]
            paths[kind] = model.decode_mean((1 - t) * z[0] + t * z[1])
    image_data = is_image(tuple(x.shape[1:]))
    sections = [
        ("Reconstruction error", claims["recon"], []),
        (
            "Decoding draws from N(0, I)",
            claims["samples"],
            [("compare_samples.png", _samples_figure(generated), "64 prior samples per model.")]
            if image_data
            else [],
        ),
        (
            "The code distribution against N(0, I)",
            claims["codes"],
            [
                (
                    "compare_codes.png",
                    _codes_figure(codes, labels),
                    "Test codes coloured by label; for m > 2 projected on the codes' own first "
                    "two principal axes (an orthonormal projection, so N(0, I) stays N(0, I)).",
                )
            ],
        ),
        (
            "Interpolations between two encoded test images",
            [
                f"Test examples {first} (label {int(labels[first])}) and {second} (label "
                f"{int(labels[second])}), 10 evenly spaced codes on the line between them."
            ],
            [
                (
                    "compare_interpolations.png",
                    _interpolation_figure(paths, ends),
                    "Same pair, both models.",
                )
            ]
            if image_data
            else [],
        ),
        ("Likelihood", claims["likelihood"], []),
    ]
    differ = result["config_differences"]
    intro = [
        f"Data: {result['data']} (test split). Runs: AE {result['runs']['ae']}, VAE "
        f"{result['runs']['vae']}. "
        + (
            "Their saved configurations (networks, likelihood, data, budget, optimiser, seed) "
            f"are identical except {' and '.join(differ)}."
            if set(differ) <= {"model.kind", "objective.name"}
            else f"Their saved configurations differ in {', '.join(differ)}: the comparison "
            "is not like for like."
        )
        + " The AE minimises reconstruction error only, the VAE maximises the ELBO."
    ]
    return write_page(out_dir, "Autoencoder vs VAE", intro, sections)
