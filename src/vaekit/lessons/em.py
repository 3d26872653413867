"""The experiment behind ``vaekit lesson em``: closed-form MLE, exact EM and linear VAEs on
one data set, side by side, with the fixed-decoder experiment; writes ``em.json`` and the report.

The mathematics lives in ``vaekit.lessons.ppca`` and ``vaekit.lessons.linear_vae``; this module only
loads data, runs the methods, summarises them (nats per example) and writes files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from vaekit.lessons.linear_vae import train_linear_vae, vae_posterior_moments
from vaekit.lessons.ppca import (
    PPCA,
    diagonal_gap,
    fit_mle,
    gaussian_elbo,
    gaussian_gap,
    make_record,
    mixing_rotation,
    off_diagonal_ratio,
    optimal_diagonal_q,
    principal_angles,
    run_em,
    synthetic_ppca,
)
from vaekit.support.spelling import spell


def summary(x: torch.Tensor, params: PPCA, mle: PPCA, q_mean, q_cov) -> dict[str, float]:
    """Final figures of a method: nats per example, angles in degrees."""
    with torch.no_grad():
        rec = make_record(0, params, x, q_mean, q_cov)
        angles = principal_angles(params.W, mle.W)
    return {
        "log_px": rec.log_px,
        "elbo": rec.elbo,
        "gap": rec.gap,
        "sigma2": float(params.sigma2),
        "max_principal_angle_deg": math.degrees(float(angles.max())),
        "wtw_off_diagonal_ratio": off_diagonal_ratio(params.W),
    }


SYNTHETIC = "synthetic"


def load_em_data(
    data: str,
    latent_dim: int,
    seed: int = 0,
    data_dir: str | None = None,
    max_examples: int = 2000,
    data_dim: int = 10,
) -> tuple[torch.Tensor, PPCA | None, str]:
    """The data matrix ``[N, D]`` (float64), the true PPCA if synthetic, and a description.

    ``synthetic``: ``max_examples`` draws from :func:`synthetic_ppca` with ``latent_dim`` true
    factors in ``data_dim`` dimensions; any other name: that registered dataset's training
    split, transformed once with ``seed`` and flattened, its first ``max_examples`` rows.
    """
    if data == SYNTHETIC:
        x, true = synthetic_ppca(max_examples, data_dim, latent_dim, sigma=0.5, seed=seed)
        text = (
            f"synthetic PPCA data: {max_examples} examples, D = {data_dim}, true m = "
            f"{latent_dim}, sigma = 0.5, seed {seed} (true W has non-orthogonal columns)"
        )
        return x, true, text
    from vaekit.data import load_dataset

    dataset = load_dataset(data, data_dir)
    x = dataset.fixed("train", seed=seed).flatten(start_dim=1).double()[:max_examples]
    text = f"{data} training split, first {x.shape[0]} examples flattened to D = {x.shape[1]}"
    return x, None, text


def em_experiment(
    data: str = SYNTHETIC,
    latent_dim: int = 3,
    em_iterations: int = 500,
    vae_steps: int = 3000,
    lr: float = 0.1,
    seed: int = 0,
    data_dir: str | None = None,
    max_examples: int = 2000,
    out: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run closed-form MLE, exact EM and the linear VAE (diagonal and full q) on one data set,
    plus the fixed-decoder experiment; return a JSON-ready dict (nats per example).

    ``out``: also write ``OUT/em.json`` (figures and histories) and ``OUT/report.html``.
    """
    if em_iterations < 1 or vae_steps < 1:
        raise ValueError(
            f"{spell('--em-iterations and --steps', 'em_iterations and vae_steps')} must be >= 1"
        )
    if out is not None:
        from vaekit.outputs import check_outputs

        check_outputs({"out": out}, inputs=[data])
    x, true, description = load_em_data(data, latent_dim, seed, data_dir, max_examples)
    mle = fit_mle(x, latent_dim)
    log(f"data: {description}")
    methods: dict[str, dict[str, float]] = {}
    histories: dict[str, list[dict[str, float]]] = {}

    methods["closed_form_mle"] = summary(x, mle, mle, *mle.posterior(x))
    if true is not None:
        methods["true_parameters"] = summary(x, true, mle, *true.posterior(x))
    em = run_em(x, latent_dim, em_iterations, seed=seed)
    methods["exact_em"] = summary(x, em.params, mle, *em.params.posterior(x))
    histories["exact_em"] = [r.as_dict() for r in em.history]
    for posterior in ("diagonal", "full"):
        model, result = train_linear_vae(x, latent_dim, posterior, vae_steps, lr, seed)
        with torch.no_grad():
            methods[f"linear_vae_{posterior}"] = summary(
                x, result.params, mle, *vae_posterior_moments(model, x)
            )
        histories[f"linear_vae_{posterior}"] = [r.as_dict() for r in result.history]
        log(f"linear VAE ({posterior} q): {vae_steps} steps done")

    # Decoder held fixed at the MLE rotated by R: same log p(x) as the MLE, but the columns of
    # W R are not orthogonal, so the exact posterior is correlated.
    fixed = PPCA(W=mle.W @ mixing_rotation(latent_dim), b=mle.b, sigma2=mle.sigma2)
    fixed_summary: dict[str, Any] = {
        "decoder": "W = W_mle R (R: 45-degree rotations in every plane), b and sigma^2 of the MLE",
        "log_px": float(fixed.log_px(x).mean()),
        "wtw_off_diagonal_ratio": off_diagonal_ratio(fixed.W),
        "closed_form_diagonal_gap": float(diagonal_gap(fixed)),
    }
    for name, (q_mean, q_cov) in {
        "optimal_full_q": fixed.posterior(x),
        "optimal_diagonal_q": optimal_diagonal_q(fixed, x),
    }.items():
        fixed_summary[name] = {
            "elbo": float(gaussian_elbo(fixed, x, q_mean, q_cov).mean()),
            "gap": float(gaussian_gap(fixed, x, q_mean, q_cov).mean()),
        }
    for posterior in ("diagonal", "full"):
        model, result = train_linear_vae(x, latent_dim, posterior, vae_steps, lr, seed, fixed=fixed)
        last = result.history[-1]
        fixed_summary[f"trained_{posterior}_encoder"] = {"elbo": last.elbo, "gap": last.gap}
        histories[f"fixed_decoder_{posterior}_encoder"] = [r.as_dict() for r in result.history]
    log("fixed-decoder encoders trained")

    report: dict[str, Any] = {
        "data": data,
        "description": description,
        "num_examples": x.shape[0],
        "data_dim": x.shape[1],
        "latent_dim": latent_dim,
        "em_iterations": em_iterations,
        "vae_steps": vae_steps,
        "lr": lr,
        "seed": seed,
        "units": {
            "log_px": "exact log p(x), nats per example, mean over the data",
            "elbo": "exact ELBO (expectation in closed form), nats per example",
            "gap": "KL(q(z|x) || p(z|x)) = log p(x) - ELBO, nats per example",
            "max_principal_angle_deg": "largest principal angle between col(W) and col(W_mle)",
            "wtw_off_diagonal_ratio": "||offdiag(W^T W)||_F / ||W^T W||_F (0: orthogonal)",
        },
        "methods": methods,
        "fixed_decoder": fixed_summary,
    }
    if out is not None:
        from pathlib import Path

        from vaekit.lessons.em_page import write_em_report
        from vaekit.rundir import atomic_write_json

        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / "em.json", {**report, "histories": histories})
        write_em_report(report, histories, out_dir)
        report["report"] = str(out_dir / "report.html")
    return report
