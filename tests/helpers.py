"""Shared test helpers: every registered family, and small exact models."""

from __future__ import annotations

import torch
from torch import nn

from vaekit.config import Config, apply_overrides
from vaekit.distributions import LIKELIHOODS, POSTERIORS
from vaekit.models import VAE, VAEConfig

# Contract tests are parametrised over these: adding a family to a registry adds it here.
POSTERIOR_NAMES = sorted(POSTERIORS)
# The tabular likelihood is built from a table's columns, not a shape: test_tables.py has it.
LIKELIHOOD_NAMES = sorted(name for name in LIKELIHOODS if name != "tabular")


class Identity(nn.Module):
    """An encoder body that passes flattened x through: features = x, ``[B, D]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def linear_gaussian_vae(
    W: torch.Tensor, b: torch.Tensor, sigma: float, posterior: str = "full"
) -> VAE:
    """A VAE whose decoder is x = W z + b + N(0, sigma^2 I), with a linear encoder head.

    Its exact marginal is log p(x) = log N(x; b, W W^T + sigma^2 I).
    Shapes: ``W [D, m]``, ``b [D]``.
    """
    from vaekit.distributions.likelihoods import GaussianLikelihood

    D, m = W.shape
    config = VAEConfig(
        latent_dim=m,
        network="mlp",
        hidden_dims=[D],
        likelihood="gaussian",
        data_shape=[D],
        posterior=posterior,
    )
    decoder = nn.Linear(m, D)
    with torch.no_grad():
        decoder.weight.copy_(W)
        decoder.bias.copy_(b)
    model = VAE(config, encoder=Identity(D), decoder=decoder)
    model.likelihood = GaussianLikelihood((D,), scale=sigma)
    return model


def exact_log_px(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(x; b, W W^T + sigma^2 I) per example, ``[B]``."""
    cov = W @ W.T + sigma**2 * torch.eye(W.shape[0], dtype=W.dtype)
    return torch.distributions.MultivariateNormal(b, covariance_matrix=cov).log_prob(x)


def set_exact_posterior(model: VAE, W: torch.Tensor, b: torch.Tensor, sigma: float) -> None:
    """Set a full-covariance linear head to the true posterior of the linear-Gaussian model:

    p(z|x) = N(M^{-1} W^T (x - b), sigma^2 M^{-1}),  M = W^T W + sigma^2 I.
    """
    m = W.shape[1]
    M = W.T @ W + sigma**2 * torch.eye(m, dtype=W.dtype)
    A = torch.linalg.solve(M, W.T)  # [m, D]
    L = torch.linalg.cholesky(sigma**2 * torch.linalg.inv(M))
    rows, cols = torch.tril_indices(m, m, offset=-1)
    head = model.posterior.head
    with torch.no_grad():
        head.weight.zero_()
        head.weight[:m] = A
        head.bias[:m] = -A @ b
        head.bias[m : 2 * m] = torch.diagonal(L).log()
        head.bias[2 * m :] = L[rows, cols]


def tiny(*overrides: str) -> Config:
    """Digits, hidden [32], latent 2, a few steps; no TensorBoard, plain logs."""
    base = [
        "data.name=digits",
        "model.hidden_dims=[32]",
        "model.latent_dim=2",
        "model.network=mlp",
        "train.batch_size=128",
        "train.epochs=2",
        "train.device=cpu",
        "train.log_every=4",
        "train.checkpoint_every=5",
        "train.tensorboard=false",
        "train.progress=plain",
    ]
    return apply_overrides(Config(), base + list(overrides))


# --- every registered model, each with a tiny config -----------------------------------------

# Contract tests are parametrised over the model registry: registering a model puts it under
# test. A model listed here gets these small settings ("--set" strings); one that is not
# listed is tested with its config's defaults (slower, but covered).
TINY_MODEL_SETTINGS: dict[str, list[str]] = {
    "vae": ["model.latent_dim=2", "model.hidden_dims=[16]", 'model.network="mlp"'],
    "ae": ["model.latent_dim=2", "model.hidden_dims=[16]", 'model.network="mlp"'],
    "hvae": ["model.latent_dims=[3, 2]", "model.hidden_dims=[[16], [8]]"],
    "deep-hvae": ["model.latent_dims=[3, 2, 2]", "model.width=16"],
    "cvae": [
        "model.latent_dim=2",
        "model.hidden_dims=[16]",
        'model.network="mlp"',
        "model.num_classes=10",
    ],
    "vqvae": [
        "model.num_latents=2",
        "model.code_dim=3",
        "model.codebook_size=8",
        "model.hidden_dims=[16]",
    ],
}


def model_names() -> list[str]:
    """Every registered model."""
    from vaekit.models import MODELS

    return list(MODELS)


def tiny_model_overrides(name: str) -> list[str]:
    """``--set`` strings that select model ``name`` with its tiny settings."""
    return [f'model.kind="{name}"', *TINY_MODEL_SETTINGS.get(name, [])]


def tiny_model(name: str, data_shape=(1, 8, 8), likelihood: str = "gaussian-learned"):
    """Model ``name`` built from its tiny config, for data of ``data_shape``."""
    from vaekit.models import build_model

    shape = ", ".join(map(str, data_shape))
    settings = [*tiny_model_overrides(name), f"model.data_shape=[{shape}]"]
    config = apply_overrides(Config(), [*settings, f'model.likelihood="{likelihood}"'])
    return build_model(config.model)


def discretized_logistic_reference(likelihood, params: torch.Tensor, x: torch.Tensor):
    """log P(x|z) of a discretised logistic (mixture) likelihood, summed over the event,
    ``[*batch]``, computed the plain way in float64: for each component the difference of two
    logistic CDFs at the bin's edges (the edge bins extended to -inf / +inf), taken on the
    side of the mode where it does not cancel, then log sum_k pi_k P_k.

    ``params [*batch, *param_shape]`` laid out as the likelihood documents: plain
    [mu (C) | raw scale (C)]; mixture [logits (K*C) | mu (K*C) | raw scale (K*C)], index
    k*C + c inside a block."""
    import math

    params, x = params.double(), x.double()
    c, rest = likelihood.event_shape[0], likelihood.event_shape[1:]
    k = likelihood.num_components
    n = len(likelihood.event_shape)
    lead = params.shape[:-n]
    if params.shape[-n] == 2 * c:  # plain
        logits = torch.zeros(*lead, 1, c, *rest, dtype=torch.float64)
        loc, raw = params.unflatten(-n, (2, 1, c)).unbind(-n - 2)
    else:
        logits, loc, raw = params.unflatten(-n, (3, k, c)).unbind(-n - 2)
    top = likelihood.num_levels - 1
    half = 0.5 / top
    log_s0 = math.log(0.2 * math.sqrt(3.0) / math.pi)
    log_s = (raw + log_s0).clamp(math.log(1.0 / top / 16.0), math.log(100.0))
    s = log_s.exp()  # [*batch, K, C, ...]
    xs = x.unsqueeze(-n - 1)  # [*, 1, C, ...]
    a = (xs + half - loc) / s  # upper edge, standardised
    b = (xs - half - loc) / s  # lower edge
    sig = torch.sigmoid
    interior = torch.where(xs > loc, sig(-b) - sig(-a), sig(a) - sig(b))
    p = torch.where(xs < half, sig(a), torch.where(xs > 1 - half, sig(-b), interior))
    weights = torch.softmax(logits, dim=-n - 1)
    mixture = (weights * p).sum(dim=-n - 1)  # [*batch, C, ...]
    return mixture.log().flatten(-n).sum(-1)


def lowrank_dense_parts(likelihood, params: torch.Tensor):
    """mu ``[*, D]`` and Sigma = W W^T + diag(d) ``[*, D, D]`` of the low-rank Gaussian
    likelihood from its decoder output, following its documented layout (mu | the diagonal's
    pre-activation | R blocks of W's columns) and parameterisation, written out again."""
    import math

    rank, dims = likelihood.rank, likelihood.dims
    blocks = params.reshape(*params.shape[: -len(likelihood.event_shape)], rank + 2, dims)
    parts = likelihood.parts
    sd = parts.min_scale + torch.nn.functional.softplus(blocks[..., 1, :] + parts.offset)
    w = 0.2 / math.sqrt(rank) * blocks[..., 2:, :].transpose(-1, -2)  # init_scale / sqrt(R)
    return blocks[..., 0, :], w @ w.transpose(-1, -2) + torch.diag_embed(sd**2)


def dense_gaussian_log_prob(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor):
    """log N(x; mu, Sigma) through torch.linalg on the dense matrix (solve, log-determinant),
    ``[*]`` nats; ``x, mu [*, D]``, ``sigma [*, D, D]``."""
    import math

    r = (x - mu)[..., None]
    quad = (r.transpose(-1, -2) @ torch.linalg.solve(sigma, r))[..., 0, 0]
    log_det = torch.linalg.slogdet(sigma).logabsdet
    return -0.5 * (quad + log_det + mu.shape[-1] * math.log(2 * math.pi))


def lowrank_dense_reference(likelihood, params: torch.Tensor, x: torch.Tensor):
    """The low-rank Gaussian likelihood's log p(x|z) by hand, in float64, ``[*batch]``."""
    mu, sigma = lowrank_dense_parts(likelihood, params.double())
    n = len(likelihood.event_shape)
    flat = x.double().reshape(*x.shape[:-n], -1)
    return dense_gaussian_log_prob(flat, mu, sigma).to(params.dtype)
