"""The AE-vs-VAE lesson's page: figures and the statements computed from the two runs'
numbers; nothing is written in advance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vaekit.report.page import write_page
from vaekit.report.plots import png_bytes, pyplot

_KINDS = {"ae": "AE (reconstruction only)", "vae": "VAE (ELBO)"}


def _samples_figure(generated: dict[str, Any], n: int = 64) -> bytes:
    from vaekit.report.plots import image_grid

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    for ax, (kind, images) in zip(axes, generated.items(), strict=True):
        grid = image_grid(images[:n])
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{_KINDS[kind]}: E[x|z], z ~ N(0, I)", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    return png_bytes(fig)


def _codes_figure(codes: dict[str, Any], labels) -> bytes:
    """2-D map of the test codes (first two principal components if m > 2), by label."""
    import torch

    plt = pyplot()
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
    return png_bytes(fig)


def _interpolation_figure(rows: dict[str, Any], ends) -> bytes:
    from vaekit.report.plots import image_grid

    plt = pyplot()
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
    return png_bytes(fig)


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
    """The ``vaekit lesson ae-vs-vae`` report in ``out_dir``: figures, computed statements, HTML."""
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
