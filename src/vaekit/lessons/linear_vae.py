"""The lecture's VAE made linear, so that its ELBO, its gap and its decoder's PPCA are exact.

``linear_vae`` builds a :class:`vaekit.VAE` with linear encoder/decoder bodies and a learned
shared sigma; ``vae_ppca`` reads the PPCA its decoder defines; ``vae_exact_elbo`` computes its
ELBO with the expectation in closed form; ``train_linear_vae`` runs gradient ascent on it and
records exact log p(x), ELBO and gap (``vaekit.lessons.ppca``) along the way.

Every quantity is per example in nats. Shapes: ``x [N, D]``, ``W [D, m]``, ``b [D]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from vaekit.lessons.ppca import PPCA, MethodResult, elbo_from_moments, make_record
from vaekit.models import VAE, VAEConfig


class FlattenBody(nn.Module):
    """Encoder body of the linear VAE: features = x itself, flattened, ``[B, D]``.

    The posterior head (a Linear layer in ``vaekit.distributions``) then makes the encoder
    linear: mu(x) = A x + c, and the (log-)variance or Cholesky entries affine in x.
    """

    def __init__(self, data_dim: int) -> None:
        super().__init__()
        self.out_features = data_dim
        # Features are x - centre (a fixed buffer, set to the data mean before training): an
        # affine map either way, but centred inputs make gradient ascent far better conditioned.
        self.register_buffer("centre", torch.zeros(data_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(start_dim=1) - self.centre  # [B, D]


class LinearDecoder(nn.Module):
    """Decoder body of the linear VAE: z ``[*lead, m]`` -> W z + b ``[*lead, D]``."""

    def __init__(self, latent_dim: int, data_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(latent_dim, data_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)


def linear_vae(data_dim: int, latent_dim: int, posterior: str = "diagonal") -> VAE:
    """The lecture's VAE with linear bodies and p(x|z) = N(Wz + b, sigma^2 I), sigma learned
    and shared (``GaussianLikelihood(scale="learned", shared=True)``). float64."""
    config = VAEConfig(
        latent_dim=latent_dim,
        network="mlp",  # unused: the bodies below are passed in
        posterior=posterior,
        likelihood="gaussian-shared",
        data_shape=[data_dim],
    )
    model = VAE(config, encoder=FlattenBody(data_dim), decoder=LinearDecoder(latent_dim, data_dim))
    # Start the encoder at q(z|x) = N(0, I) for every x (head weights and biases 0): with the
    # default random init, exp(log-variance) affine in x spans orders of magnitude at step 0.
    for param in model.posterior.parameters():
        nn.init.zeros_(param)
    # And sigma at 1, the scale of the synthetic data (the library's default start, 0.2, is
    # meant for [0, 1] pixels); the step counts and learning rates here were tuned from it.
    lik = model.likelihood
    lik.raw_scale.data.fill_(math.log(math.expm1(1.0 - lik.min_scale)))
    return model.double()


def vae_ppca(model: VAE) -> PPCA:
    """The PPCA the linear VAE's decoder defines (W, b, sigma^2), as differentiable tensors."""
    linear = model.decoder.linear
    sigma = model.likelihood.scale()
    return PPCA(W=linear.weight, b=linear.bias, sigma2=sigma.square().reshape(()))


def vae_posterior_moments(model: VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's q(z|x): mean ``[N, m]`` and covariance ``[N, m, m]``."""
    q = model.encode(x)
    return q.mean, q.covariance_matrix  # both Gaussian families have it, [N, m, m]


def vae_exact_elbo(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """The linear VAE's ELBO computed exactly (the expectation in closed form), ``[N]`` nats."""
    params = vae_ppca(model)
    q = model.encode(x)
    # Both Gaussian families give their Cholesky factor (diagonal: diag(exp(log_var / 2))).
    tril = q.scale_tril  # Sigma = L L^T: tr(W^T W Sigma) = ||W L||_F^2
    return elbo_from_moments(
        params,
        x,
        q.mean,
        trace_wtw_sigma=(params.W @ tril).square().sum(dim=(-2, -1)),
        trace_sigma=tril.square().sum(dim=(-2, -1)),
        log_det_sigma=2.0 * torch.diagonal(tril, dim1=-2, dim2=-1).log().sum(-1),
    )


def train_linear_vae(
    x: torch.Tensor,
    latent_dim: int,
    posterior: str = "diagonal",
    steps: int = 2000,
    lr: float = 0.02,
    seed: int = 0,
    fixed: PPCA | None = None,
    num_mc_samples: int = 0,
    record_every: int = 10,
) -> tuple[VAE, MethodResult]:
    """Gradient ascent (Adam, full batch) on the linear VAE's mean ELBO over ``x``.

    ``num_mc_samples = 0`` uses the ELBO with its expectation in closed form (exact gradients);
    L > 0 uses the model's own reparameterised Monte-Carlo ELBO (``VAE.elbo``) with L draws.
    ``fixed``: hold the decoder at these PPCA parameters and train only the encoder (the
    "optimal q for a given decoder" experiment). The history records, every ``record_every``
    steps, exact log p(x), the exact ELBO and the gap KL(q || p(z|x)).
    """
    torch.manual_seed(seed)
    d = x.shape[1]
    model = linear_vae(d, latent_dim, posterior)
    with torch.no_grad():
        model.encoder.centre.copy_(x.mean(0))
        model.decoder.linear.bias.copy_(x.mean(0))
    if fixed is not None:
        with torch.no_grad():
            model.decoder.linear.weight.copy_(fixed.W)
            model.decoder.linear.bias.copy_(fixed.b)
            ls = model.likelihood
            sigma = fixed.sigma2.sqrt() - ls.min_scale
            ls.raw_scale.fill_(float(sigma + torch.log(-torch.expm1(-sigma))))  # softplus^-1
        for p in (*model.decoder.parameters(), *model.likelihood.parameters()):
            p.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=lr)
    # Cosine decay to 0: large steps early, then the precise convergence the tests check.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    objective: Callable[[], torch.Tensor]
    if num_mc_samples > 0:
        objective = lambda: model.elbo(x, num_mc_samples=num_mc_samples).elbo.mean()  # noqa: E731
    else:
        objective = lambda: vae_exact_elbo(model, x).mean()  # noqa: E731
    result = MethodResult(params=vae_ppca(model))
    for step in range(steps + 1):
        if step % record_every == 0 or step == steps:
            with torch.no_grad():
                mean, cov = vae_posterior_moments(model, x)
                result.history.append(make_record(step, vae_ppca(model), x, mean, cov))
        if step == steps:
            break
        loss = -objective()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        p = vae_ppca(model)
        result.params = PPCA(W=p.W.detach().clone(), b=p.b.detach().clone(), sigma2=p.sigma2)
    return model, result
