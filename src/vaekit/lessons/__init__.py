"""The lecture's two contrasts, each an experiment with its page.

* AE vs VAE ("what if we only minimise reconstruction error?"):
  :mod:`~vaekit.lessons.ae_vs_vae` trains both on the same networks and data and measures the
  difference; :mod:`~vaekit.lessons.ae_vs_vae_page` writes its page.
* VAE vs EM, on probabilistic PCA where everything is exact: :mod:`~vaekit.lessons.ppca` (exact
  log p(x), the exact posterior, the closed-form MLE, exact EM, the ELBO of any Gaussian q and
  its gap), :mod:`~vaekit.lessons.linear_vae` (the lecture's VAE with linear bodies, read
  through that mathematics), :mod:`~vaekit.lessons.em` (``vaekit lesson em``, the experiment) and
  :mod:`~vaekit.lessons.em_page` (its page).

The names of the EM lesson are importable from ``vaekit.lessons`` directly.
"""

from vaekit.lessons.em import SYNTHETIC, em_experiment, load_em_data, summary
from vaekit.lessons.linear_vae import (
    FlattenBody,
    LinearDecoder,
    linear_vae,
    train_linear_vae,
    vae_exact_elbo,
    vae_posterior_moments,
    vae_ppca,
)
from vaekit.lessons.ppca import (
    PPCA,
    MethodResult,
    Record,
    diagonal_gap,
    elbo_from_moments,
    em_step,
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

__all__ = [
    "PPCA",
    "SYNTHETIC",
    "FlattenBody",
    "LinearDecoder",
    "MethodResult",
    "Record",
    "diagonal_gap",
    "elbo_from_moments",
    "em_experiment",
    "em_step",
    "fit_mle",
    "gaussian_elbo",
    "gaussian_gap",
    "linear_vae",
    "load_em_data",
    "make_record",
    "mixing_rotation",
    "off_diagonal_ratio",
    "optimal_diagonal_q",
    "principal_angles",
    "run_em",
    "summary",
    "synthetic_ppca",
    "train_linear_vae",
    "vae_exact_elbo",
    "vae_posterior_moments",
    "vae_ppca",
]
