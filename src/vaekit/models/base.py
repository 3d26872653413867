"""The model contract: what every model offers, and the flags that say what else it can do.

Callers (trainer, evaluator, report, codes, CLI, checkpoint) ask a model through these flags
and methods; none of them tests a model's type.

* :class:`Model`: every model. ``encode``, ``decode_params`` (and from it ``decode`` and
  ``decode_mean``), ``sample``, ``reconstruct``, ``latent_moments`` (where the latent is
  continuous), ``per_example_metrics`` (what validation reports), the latent's layout
  (``latent_layers``, ``codebook_size``, ``discrete``) and ``group_decoder`` (one latent
  group's decoder as plain layers, for the explorer), plus the capability flags.
* :class:`LikelihoodModel`: a model with a likelihood p(x) (``has_likelihood``): adds
  ``elbo`` and the importance weights behind ``log_weights`` and ``log_likelihood``.

Every concrete model is final (abstract or final, never subclassed and overridden): it
subclasses one of these two abstract classes, registers itself in
:mod:`vaekit.models.registry` and names its own config dataclass. Every method takes labels
as the keyword ``y`` (``[B]`` integers, or None); models with ``takes_labels`` need them,
the others ignore them. Nothing here averages over the batch.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.distributions import Distribution

from vaekit.data_defaults import unresolved
from vaekit.settings import ModelConfig


@dataclass
class ELBOTerms:
    """Per-example ELBO in nats and its two terms, each ``[B]``.

    ``elbo = log_px_z - kl`` where ``log_px_z`` is the Monte-Carlo mean of log p(x|z) over
    z ~ q(z|x) and ``kl`` = KL(q(z|x) || p(z)) (closed form where the posterior family has
    one against the prior, a Monte-Carlo estimate at the same draws otherwise).
    """

    elbo: torch.Tensor
    log_px_z: torch.Tensor
    kl: torch.Tensor
    # Computes the KL split into independent groups, ``[B, G]`` summing to ``kl`` (one per
    # latent coordinate where the posterior and prior factorise): what free bits clamp. Only
    # free bits need it, so it runs on demand. None, or returning None: one group.
    group_kl: Callable[[], torch.Tensor | None] | None = None

    @property
    def kl_groups(self) -> torch.Tensor | None:
        """The KL per independent group, ``[B, G]``, or None (the whole KL is one group)."""
        return self.group_kl() if self.group_kl is not None else None

    def means(self) -> dict[str, float]:
        """The batch means of ``elbo``, ``log_px_z`` and ``kl`` as floats (nats per example),
        read off the graph: numbers to print or log, with no autograd warning."""
        return {k: float(getattr(self, k).detach().mean()) for k in ("elbo", "log_px_z", "kl")}

    def __float__(self) -> float:
        """``float(model.elbo(x))``: the batch-mean ELBO in nats per example (detached)."""
        return self.means()["elbo"]


# Draws behind Monte-Carlo latent moments, where q(z|x)'s marginals have no closed form (the
# lower layers of a hierarchy: mixtures over the draws above them).
MOMENT_SAMPLES = 32


@dataclass
class LatentMoments:
    """Moments of the code distribution of each example over the continuous latent ``[m]``.

    ``mean [B, m]`` is E_q[z|x] (a deterministic code for an autoencoder); ``covariance
    [B, m, m]`` is Cov_q[z|x] (zeros for a deterministic code). ``kl [B]`` is
    KL(q(z|x) || p(z)) in nats and ``kl_per_dim [B, m]`` the KL of each coordinate's marginal
    q(z_j|x) from N(0, 1), where the model defines them (None otherwise). ``layer_sizes``
    splits the m coordinates into stochastic layers (bottom first) for a hierarchical model.
    ``mean_draws`` is the number of Monte-Carlo draws behind ``mean`` and ``covariance`` where
    they are estimates (a flow posterior, the upper layers of a hierarchy); None where exact.
    """

    mean: torch.Tensor
    covariance: torch.Tensor
    kl: torch.Tensor | None = None
    kl_per_dim: torch.Tensor | None = None
    layer_sizes: list[int] | None = None
    mean_draws: int | None = None

    @classmethod
    def from_draws(cls, z: torch.Tensor, layer_sizes: list[int] | None = None) -> LatentMoments:
        """Monte-Carlo moments from draws ``z [S, B, m]`` of q(z|x): the sample mean ``[B, m]``
        and the sample covariance ``[B, m, m]`` (divided by S - 1)."""
        draws = z.shape[0]
        mean = z.mean(dim=0)
        centred = z - mean
        cov = torch.einsum("sbi,sbj->bij", centred, centred) / (draws - 1)
        return cls(mean, cov, layer_sizes=layer_sizes, mean_draws=draws)


class Model(nn.Module, abc.ABC):
    """Abstract base of every model. Shapes: ``x [B, *data_shape]``, ``z [*lead, m]``.

    Class attributes every model sets (the registry checks the first three):

    * ``name``: its registry name (``--model NAME``); ``description``: one line for --help;
    * ``config_class``: its own :class:`~vaekit.config.ModelConfig` dataclass;
    * ``has_likelihood``: it defines p(x), so ``elbo``, ``log_weights`` and
      ``log_likelihood`` exist (it is a :class:`LikelihoodModel`);
    * ``has_continuous_latent``: z is a real vector ``[m]`` that ``decode`` takes, so
      ``latent_moments``, interpolations and traversals make sense;
    * ``has_posterior``: ``encode`` returns q(z|x), a distribution over the continuous
      latent ``[m]`` with ``mean``, ``variance``, ``scale_tril``, ``rsample`` and
      ``log_prob`` (a deterministic encoder returns the code tensor instead);
    * ``has_codebook``: its latent is a discrete code into a codebook, and
      ``codebook_statistics(x)`` reports its usage and perplexity (VQ-VAE);
    * ``discrete``: ``encode`` gives integer codes, not a point of the latent space; the
      vector ``decode`` takes is what they select (the VQ-VAE's quantised code), and
      ``quantise(codes)`` makes that vector from the codes;
    * ``takes_labels``: it is conditioned on a label y, which every method then needs, and
      ``prior_given(y)`` is p(z|y) (a ``DiagonalGaussian`` over ``[B, m]`` where the prior
      depends on y, else the model's p(z));
    * ``objectives``: the training criteria it supports (``vaekit.objectives``), its
      default first.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]]
    has_likelihood: ClassVar[bool] = False
    has_continuous_latent: ClassVar[bool]
    has_posterior: ClassVar[bool]
    has_codebook: ClassVar[bool] = False
    discrete: ClassVar[bool] = False
    takes_labels: ClassVar[bool] = False
    objectives: ClassVar[tuple[str, ...]]

    config: ModelConfig
    # p(x|z)'s family (``vaekit.distributions.likelihoods``): turns ``decode_params`` into
    # ``decode`` and ``decode_mean``.
    likelihood: nn.Module

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.config.data_shape)

    @property
    @abc.abstractmethod
    def latent_dim(self) -> int:
        """m: the size of the code ``decode`` takes."""

    @abc.abstractmethod
    def encode(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> Any:
        """The code of ``x``: q(z|x) as a distribution for a probabilistic encoder, the code
        ``[B, m]`` itself for a deterministic one."""

    @property
    def latent_layers(self) -> tuple[int, ...]:
        """The sizes of the latent groups the code ``[m]`` is made of, bottom (next to x)
        first; they sum to ``latent_dim``. One entry for a model with one latent vector."""
        return (self.latent_dim,)

    @property
    def codebook_size(self) -> int | None:
        """K, the number of code-book entries a discrete code indexes; None without one."""
        return None

    @abc.abstractmethod
    def decode_params(self, z: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """The likelihood's parameters for ``z [*lead, m]``: the decoder output
        ``[*lead, *likelihood.param_shape]`` that ``decode`` and ``decode_mean`` read."""

    def decode(self, z: torch.Tensor, *, y: torch.Tensor | None = None) -> Distribution:
        """p(x|z): ``z [*lead, m]`` -> distribution with batch ``[*lead]``, event data shape."""
        return self.likelihood(self.decode_params(z, y=y))

    def decode_mean(self, z: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z], ``[*lead, *data_shape]``: what a picture of the decoder shows."""
        return self.likelihood.mean(self.decode_params(z, y=y))

    @abc.abstractmethod
    def group_decoder(self, group: int) -> nn.Module:
        """Decode by group: a module of plain layers (``nn.Sequential`` of linear, conv,
        activation, reshape and the layers of ``vaekit.models.paths``) from the coordinates
        of latent group ``group`` (an index into ``latent_layers``), ``[B, m_group]``, to the
        likelihood's parameters ``[B, *param_shape]``. The other groups are held at their
        prior means: the groups below at the means of their conditionals given the groups
        above, the top group at the prior's mean. A model that takes labels reads
        ``[z, one_hot(y)]``. It shares the model's weights; build it again after training."""

    def code_decoder(self) -> nn.Module | None:
        """The whole generative path as plain layers (those of ``group_decoder``, plus
        ``TopDown`` and ``Inject`` of ``vaekit.models.paths``), from the full code ``[B,
        latent_dim]`` to the likelihood's parameters: decode by group with the other groups
        held at given values (a test example's posterior means, a prior draw). A model that
        has one also has ``sample_codes(n, generator) -> [n, latent_dim]``, the codes of
        ancestral prior draws. None (the default): decode by group is ``group_decoder``'s."""
        return None

    @abc.abstractmethod
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """E[x|z] for ``n`` draws z from the prior, ``[n, *data_shape]``."""

    @abc.abstractmethod
    def reconstruct(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z] at the code of ``x`` (the posterior mean), ``[B, *data_shape]``."""

    @abc.abstractmethod
    def latent_moments(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> LatentMoments:
        """Moments of the code distribution per example (models with a continuous latent;
        the others raise ValueError)."""

    @abc.abstractmethod
    def network_bodies(self) -> list[nn.Module]:
        """The modules that only compute features (no log-density, no variance head): what
        mixed precision may run in half precision (``vaekit.training.precision``)."""

    @abc.abstractmethod
    def per_example_metrics(
        self, x: torch.Tensor, *, y: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """What validation reports, each ``[B]`` in nats per example (e.g. ``elbo``,
        ``log_px_z``, ``kl``). An ``elbo`` entry is what early stopping watches."""

    # --- helpers every model uses ----------------------------------------------------------

    def own_config(self, config: ModelConfig) -> ModelConfig:
        """A copy of ``config`` for this model to keep (and resolve), after checking that it
        is this model's own config class."""
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} is built from a {self.config_class.__name__}, "
                f"got a {type(config).__name__}"
            )
        config = dataclasses.replace(config)
        config.rank = unresolved("model.rank", config.rank)  # "auto" with no data seen
        return config

    def check_input(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Refuse data of the wrong shape, and a missing label where the model needs one."""
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"expected data of shape [batch, {', '.join(map(str, self.data_shape))}], "
                f"got {list(x.shape)}"
            )
        if self.takes_labels and y is None:
            raise ValueError(f"model {self.name!r} is conditional: it needs the labels y")


class LikelihoodModel(Model):
    """Abstract base of a model with a likelihood p(x) = E_{q(z|x)}[p(x, z) / q(z|x)].

    A subclass provides ``elbo``, ``proposal`` (what the importance weights reuse across
    chunks of draws: the encoder's output for x) and ``log_weight_terms_given``; ``log_weights``
    and ``log_likelihood`` are built from them here, once for every model.
    """

    has_likelihood: ClassVar[bool] = True

    @abc.abstractmethod
    def elbo(
        self, x: torch.Tensor, num_mc_samples: int = 1, *, y: torch.Tensor | None = None
    ) -> ELBOTerms:
        """Per-example ELBO (nats) with L = ``num_mc_samples`` reparameterised draws."""

    @abc.abstractmethod
    def proposal(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> Any:
        """The part of q(z|x) computed once per example (the encoder pass), for
        :meth:`log_weights_given`."""

    @abc.abstractmethod
    def log_weight_terms_given(
        self,
        proposal: Any,
        x: torch.Tensor,
        num_samples: int,
        *,
        y: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two parts of the log-weights at ``num_samples`` fresh draws z ~ q: ``(log
        p(x|z), log p(z) - log q(z|x))``, each ``[K, B]`` (nats). Their sum is log w; their
        means over the draws are the Monte-Carlo ELBO's two terms (reconstruction, -KL)."""

    def log_weights_given(
        self,
        proposal: Any,
        x: torch.Tensor,
        num_samples: int,
        *,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """log w = log p(x, z) - log q(z|x) for ``num_samples`` fresh draws z ~ q, ``[K, B]``."""
        log_px_z, log_ratio = self.log_weight_terms_given(proposal, x, num_samples, y=y)
        return log_px_z + log_ratio

    def log_weight_terms(
        self, x: torch.Tensor, num_samples: int, *, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(x|z), log p(z) - log q(z|x))`` at K = ``num_samples`` draws z_k ~ q(z|x),
        each ``[K, B]``: what the IWAE objective trains on (their sum) and reports (their
        means) from one set of draws."""
        return self.log_weight_terms_given(self.proposal(x, y=y), x, num_samples, y=y)

    def log_weights(
        self, x: torch.Tensor, num_samples: int, *, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Importance log-weights log w = log p(x|z) + log p(z) - log q(z|x), ``[K, B]``.

        z_k ~ q(z|x), K = ``num_samples``. log mean_k exp(log w) is the IWAE_K bound
        (Burda et al. 2015, §3): ELBO <= IWAE_K <= log p(x), increasing in K.
        """
        return self.log_weights_given(self.proposal(x, y=y), x, num_samples, y=y)

    @torch.no_grad()
    def log_likelihood(
        self,
        x: torch.Tensor,
        num_samples: int = 1000,
        chunk_size: int | None = None,
        *,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Importance-sampled log p(x) per example in nats, ``[B]`` (Burda et al. 2015).

        Every example gets exactly ``num_samples`` draws from q(z|x); ``chunk_size`` only
        bounds memory (draws per decoder call), it does not change the estimator.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        chunk = min(chunk_size or num_samples, num_samples)
        partial = []  # logsumexp of each chunk's log-weights, [B] each
        with self.held_fixed():
            proposal = self.proposal(x, y=y)  # the encoder runs once per example
            for start in range(0, num_samples, chunk):
                k = min(chunk, num_samples - start)
                log_w = self.log_weights_given(proposal, x, k, y=y)  # [k, B]
                partial.append(torch.logsumexp(log_w, dim=0))
        return torch.logsumexp(torch.stack(partial), dim=0) - math.log(num_samples)

    @contextlib.contextmanager
    def held_fixed(self) -> Iterator[None]:
        """Within: the weights do not change (inference), so every submodule that offers
        ``held_fixed`` (a VampPrior's components) computes what depends only on the weights
        once instead of at every call."""
        with contextlib.ExitStack() as stack:
            for module in self.modules():
                hold = getattr(module, "held_fixed", None)
                if module is not self and hold is not None:
                    stack.enter_context(hold())
            yield

    def per_example_metrics(
        self, x: torch.Tensor, *, y: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The ELBO and its two terms (one draw), each ``[B]`` nats per example."""
        terms = self.elbo(x, y=y)
        return {"elbo": terms.elbo, "log_px_z": terms.log_px_z, "kl": terms.kl}


class DecodesThroughLikelihood:
    """``decode_params`` and ``group_decoder`` for a model whose decoder body maps its one
    latent vector straight to the likelihood's parameters (``self.decoder``); no labels.
    Listed before the model's base class so its methods fill the contract's abstract ones."""

    decoder: nn.Module

    def decode_params(self, z: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder output for ``z [*lead, m]``, ``[*lead, *param_shape]``."""
        return self.decoder(z)

    def group_decoder(self, group: int) -> nn.Module:
        """The decoder itself: the one group is the whole latent."""
        if group != 0:
            raise IndexError(f"this model has one latent group, not group {group}")
        return self.decoder
