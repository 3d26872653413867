"""Probabilistic PCA against the lecture's VAE: exact EM, the closed-form MLE and linear VAEs.

* :mod:`vaekit.em.ppca`: the mathematics of PPCA (Tipping & Bishop 1999): exact log p(x), the
  exact posterior, the closed-form MLE, exact EM, the closed-form ELBO of any Gaussian q and its
  gap KL(q || p(z|x));
* :mod:`vaekit.em.linear_vae`: the lecture's VAE with linear bodies, whose ELBO and decoder are
  read exactly through that mathematics, and its gradient-ascent training;
* :mod:`vaekit.em.experiment`: ``vaekit em``, the side-by-side experiment and its files.

Every name is importable from ``vaekit.em`` directly.
"""

from vaekit.em.experiment import SYNTHETIC, em_experiment, load_em_data, summary
from vaekit.em.linear_vae import (
    FlattenBody,
    LinearDecoder,
    linear_vae,
    train_linear_vae,
    vae_exact_elbo,
    vae_posterior_moments,
    vae_ppca,
)
from vaekit.em.ppca import (
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
