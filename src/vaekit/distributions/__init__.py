"""Probability pieces: posteriors q(z|x), likelihoods p(x|z), priors p(z) and their math."""

from vaekit.distributions.likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    DiscretizedLogisticMixtureLikelihood,
    GaussianLikelihood,
    HeteroscedasticGaussianLikelihood,
    build_likelihood,
)
from vaekit.distributions.posteriors import (
    POSTERIORS,
    DiagonalGaussian,
    DiagonalGaussianPosterior,
    FullCovarianceGaussian,
    FullCovariancePosterior,
)
from vaekit.distributions.priors import PRIORS, StandardNormalPrior, VampPrior

__all__ = [
    "LIKELIHOODS",
    "POSTERIORS",
    "PRIORS",
    "BernoulliLikelihood",
    "DiagonalGaussian",
    "DiagonalGaussianPosterior",
    "DiscretizedLogisticLikelihood",
    "DiscretizedLogisticMixtureLikelihood",
    "FullCovarianceGaussian",
    "FullCovariancePosterior",
    "GaussianLikelihood",
    "HeteroscedasticGaussianLikelihood",
    "StandardNormalPrior",
    "VampPrior",
    "build_likelihood",
]
