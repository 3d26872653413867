"""Honest evaluation: every number is the quantity its name says, with its unit.

* ``nll``: -log p(x) in nats per example, estimated by importance sampling with
  K = ``num_samples`` draws from q(z|x) per example (Burda et al. 2015, §3). The estimate of
  log p(x) is biased low (Jensen), so ``nll`` is an upper bound on the true nll in
  expectation that tightens as K grows. ``nll_stderr`` is its standard error across
  examples: ``std(log p_hat(x_i), ddof=1) / sqrt(N)``.
* ``elbo``, ``log_px_z``, ``kl``: nats per example (the ELBO with one Monte-Carlo draw).
* ``bits_per_dim``: the nll of the *discrete* data in bits per dimension. For dequantised
  data with ``levels`` grey levels scaled to [0, 1]: (nll + D log(levels)) / (D log 2),
  the dequantisation bound of Theis et al. (2016); for binary data: nll / (D log 2).
* ``kl_per_dim``: mean over examples of the KL of each latent coordinate's *marginal*
  q(z_j|x) = N(mu_j, Sigma_jj) from N(0, 1), nats per example. For the diagonal posterior the
  coordinates are independent and these sum to ``kl`` exactly (up to Monte-Carlo-free float
  error). For the full-covariance posterior the total KL is the sum of the marginal KLs
  plus ``kl_correlation`` = KL(q(z|x) || prod_j q(z_j|x)) = -log|Corr| / 2 >= 0, reported
  separately, because p(z) = N(0, I) factorises.
* ``active_units``: the number of latent coordinates j with Var_x(E_q[z_j|x]) > 0.01
  (Burda et al. 2015, §5.2): a unit whose posterior mean ignores x carries no information.
* ``aggregate_posterior``: moments of q(z) = mean_x q(z|x) against the prior N(0, I): its
  mean m = mean_x mu(x) and covariance C = Cov_x(mu(x)) + mean_x Sigma(x) (law of total
  covariance, exact, no sampling); ``mean_norm`` = ||m||, ``cov_frobenius_to_identity`` =
  ||C - I||_F, and ``kl_gaussian_fit_to_prior`` = KL(N(m, C) || N(0, I)) in nats.
* ``frechet_classifier_distance`` (FCD): the Fréchet distance between Gaussians fitted to
  the features of real test images and of generated ones E[x|z], z ~ N(0, I), in the feature
  space of vaekit's own small classifier (``vaekit.feature_net``). Not FID: FID uses the
  Inception network; FCD values are only comparable between models of the same dataset.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from vaekit.allocator import keep_freed_memory
from vaekit.data import Dataset
from vaekit.distributions.posteriors import DiagonalGaussian
from vaekit.models import VAE
from vaekit.progress import progress_bar

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2015), §5.2
# MiB per decoder call. Small on purpose: on CPU, calls of ~1000 rows stay in cache and ran
# faster than calls of ~20,000 rows (benchmarks/RESULTS.md); raise it on a GPU.
DEFAULT_MEMORY_BUDGET_MB = 32

UNITS = {
    "nll": "nats per example: -log p(x), importance-sampled (Burda et al. 2015)",
    "nll_stderr": "nats per example: standard error of the mean over examples",
    "bits_per_dim": "bits per dimension of the discrete data (dequantisation bound)",
    "elbo": "nats per example: E_q[log p(x|z)] - KL(q(z|x) || p(z)), one draw",
    "log_px_z": "nats per example: E_q[log p(x|z)], the reconstruction term",
    "kl": "nats per example: KL(q(z|x) || N(0, I)), closed form",
    "kl_per_dim": "nats per example, per latent coordinate: KL of the marginal q(z_j|x)",
    "kl_correlation": "nats per example: kl - sum(kl_per_dim), 0 for the diagonal posterior",
    "active_units": "count of coordinates with Var_x(E_q[z_j]) > 0.01",
    "posterior_mean_variance": "Var_x(E_q[z_j|x]) per coordinate (latent units squared)",
    "aggregate_posterior": "moments of q(z) = mean_x q(z|x) vs N(0, I); KL in nats",
    "frechet_classifier_distance": "squared feature units of vaekit's classifier (not FID)",
}


def load_run(run: str | Path, data_dir: str | None = None) -> tuple[VAE, Dataset]:
    """Load a run's model and the dataset it was trained on (as recorded in config.json)."""
    from vaekit.checkpoint import load, read_descriptor
    from vaekit.data import load_dataset

    model = load(run)
    descriptor = read_descriptor(run)
    data_info = descriptor.get("data") or {}
    data_config = (descriptor.get("config") or {}).get("data", {})
    name = data_info.get("name") or data_config.get("name")
    if name is None:
        raise ValueError(f"{run}: config.json does not say which dataset the model was trained on")
    dataset = load_dataset(
        name,
        data_dir or data_config.get("data_dir"),
        data_config.get("val_fraction", 0.1),
        data_config.get("split_seed", 0),
        image_size=data_config.get("image_size"),
    )
    return model, dataset


def decoder_floats_per_row(model: VAE) -> int:
    """Floats held per decoded latent row while evaluating log p(x|z): every decoder module's
    output for one z (measured with forward hooks), plus four data-sized temporaries of the
    likelihood's ``log_prob`` (difference, square, scaled, log-density)."""
    p = next(model.parameters())
    total = 0

    def count(_module, _inputs, output) -> None:
        nonlocal total
        if torch.is_tensor(output):
            total += output.numel()

    hooks = [m.register_forward_hook(count) for m in model.decoder.modules()]
    try:
        with torch.no_grad():
            model.decoder(torch.zeros(1, model.latent_dim, dtype=p.dtype, device=p.device))
    finally:
        for hook in hooks:
            hook.remove()
    return total + 4 * math.prod(model.data_shape) + 4 * model.latent_dim


def choose_chunk_size(
    model: VAE, batch_size: int, num_samples: int, memory_budget_mb: float
) -> int:
    """Importance samples per decoder call so that one call's ``chunk * batch_size`` rows stay
    within ``memory_budget_mb`` MiB: ``floor(budget / (batch * bytes per row))``, at least 1."""
    element = next(model.parameters()).element_size()
    bytes_per_row = decoder_floats_per_row(model) * element
    rows = int(memory_budget_mb * 2**20 // bytes_per_row)
    return max(1, min(num_samples, rows // max(1, batch_size)))


def standard_error(values: torch.Tensor) -> float:
    """Standard error of the mean: ``std(values, ddof=1) / sqrt(N)``; nan for N < 2."""
    n = values.numel()
    if n < 2:
        return float("nan")
    return float(values.double().std(unbiased=True) / math.sqrt(n))


def marginal_kl_per_dim(q: torch.distributions.Distribution) -> torch.Tensor:
    """KL(N(mu_j, Sigma_jj) || N(0, 1)) for each coordinate, nats, ``[B, m]``.

    For :class:`DiagonalGaussian` these are the exact per-coordinate terms of the closed-form
    KL (Kingma & Welling 2014, App. B) and sum to it.
    """
    if isinstance(q, DiagonalGaussian):
        mu, log_var = q.loc, q.log_var
    else:
        mu, log_var = q.mean, q.variance.log()
    return 0.5 * (mu.square() + log_var.exp() - 1.0 - log_var)


def _posterior_covariance(q: torch.distributions.Distribution) -> torch.Tensor:
    """Sigma(x) of each example, ``[B, m, m]``."""
    if isinstance(q, DiagonalGaussian):
        return torch.diag_embed(q.variance)
    return q.covariance_matrix


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> tuple[int, list]:
    """Burda et al.'s active units from posterior means ``mu [N, m]``.

    Returns the count of j with Var_x(mu_j) > ``threshold`` and the per-coordinate variances
    (population variance over the N examples).
    """
    variance = mu.double().var(dim=0, unbiased=False)
    return int((variance > threshold).sum()), variance.tolist()


def gaussian_kl_to_standard_normal(mean: torch.Tensor, cov: torch.Tensor) -> float:
    """KL(N(mean, cov) || N(0, I)) = (tr C + ||m||^2 - d - log|C|) / 2 in nats (float64)."""
    mean, cov = mean.double(), cov.double()
    d = mean.numel()
    log_det = torch.linalg.slogdet(cov).logabsdet
    return float(0.5 * (torch.trace(cov) + mean.square().sum() - d - log_det))


def aggregate_posterior_stats(mu: torch.Tensor, mean_cov: torch.Tensor) -> dict[str, Any]:
    """Moments of q(z) = mean_x q(z|x) from ``mu [N, m]`` and mean_x Sigma(x) ``[m, m]``."""
    mu = mu.double()
    mean = mu.mean(dim=0)
    centred = mu - mean
    cov = centred.T @ centred / mu.shape[0] + mean_cov.double()
    eye = torch.eye(mean.numel(), dtype=torch.float64)
    return {
        "mean_norm": float(mean.norm()),
        "cov_frobenius_to_identity": float((cov - eye).norm()),
        "kl_gaussian_fit_to_prior": gaussian_kl_to_standard_normal(mean, cov),
        "mean": mean.tolist(),
        "cov_diagonal": cov.diagonal().tolist(),
    }


@torch.no_grad()
def latent_statistics(model: VAE, x: torch.Tensor, batch_size: int = 1000) -> dict[str, Any]:
    """KL per coordinate, active units and aggregate-posterior moments over ``x [N, ...]``.

    Also returns the posterior means ``mu`` ``[N, m]`` (a tensor, not JSON) for plots.
    """
    device = next(model.parameters()).device
    mus, kl_dims, kls = [], [], []
    cov_sum = torch.zeros(model.latent_dim, model.latent_dim, dtype=torch.float64)
    for start in range(0, x.shape[0], batch_size):
        q = model.encode(x[start : start + batch_size].to(device))
        mus.append(q.mean.double().cpu())
        kl_dims.append(marginal_kl_per_dim(q).double().cpu())
        kls.append(q.kl_standard_normal().double().cpu())
        cov_sum += _posterior_covariance(q).double().sum(dim=0).cpu()
    mu = torch.cat(mus)
    n = mu.shape[0]
    kl_per_dim = torch.cat(kl_dims).mean(dim=0)
    count, variances = active_units(mu)
    return {
        "kl_per_dim": kl_per_dim.tolist(),
        "kl_correlation": float(torch.cat(kls).mean() - kl_per_dim.sum()),
        "active_units": count,
        "active_unit_threshold": ACTIVE_UNIT_THRESHOLD,
        "posterior_mean_variance": variances,
        "aggregate_posterior": aggregate_posterior_stats(mu, cov_sum / n),
        "mu": mu,
    }


@torch.no_grad()
def evaluate(
    model: VAE,
    dataset: Dataset,
    split: str = "test",
    num_samples: int = 5000,
    batch_size: int = 100,
    chunk_size: int | None = None,
    seed: int = 0,
    max_examples: int | None = None,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    fcd: bool = True,
    log=None,
    progress: str = "auto",
) -> dict[str, Any]:
    """Evaluate ``model`` on ``split``; returns a JSON-ready dict (see the module doc).

    The log-likelihood runs batched over ``batch_size`` examples and chunked over samples:
    each decoder call sees ``[chunk * batch, m]`` latents, with ``chunk`` picked from
    ``memory_budget_mb`` (MiB) unless ``chunk_size`` is given. ``fcd`` adds the Fréchet
    classifier distance where the dataset has class labels (integers >= 0; trains and caches
    the classifier once). ``progress`` (auto, bar, plain; see ``vaekit.progress``) shows the
    importance sampling's progress as a bar with its ETA; without a bar, ``log`` (if given)
    gets a line at every tenth of the examples.
    """
    if not isinstance(model, VAE):
        raise ValueError("evaluate needs a VAE: an AE defines no likelihood p(x)")
    model.eval()
    device = next(model.parameters()).device
    if device.type == "cpu":
        keep_freed_memory()  # the chunk loop reuses its memory (vaekit/allocator.py)
    x_all = dataset.fixed(split, seed=seed)
    if max_examples is not None:
        x_all = x_all[:max_examples]
    if x_all.shape[0] == 0:
        raise ValueError(f"split {split!r} of {dataset.name!r} is empty")
    x_all = x_all.to(next(model.parameters()).dtype)
    if chunk_size is None:
        chunk_size = choose_chunk_size(model, batch_size, num_samples, memory_budget_mb)
    torch.manual_seed(seed)
    log_px, elbo, log_px_z, kl = [], [], [], []
    total, started, next_line = x_all.shape[0], time.perf_counter(), 0.1
    bar = progress_bar(total, progress, unit="example", desc=f"log p(x), K = {num_samples}")
    try:
        for start in range(0, total, batch_size):
            x = x_all[start : start + batch_size].to(device)
            terms = model.elbo(x)
            elbo.append(terms.elbo.cpu())
            log_px_z.append(terms.log_px_z.cpu())
            kl.append(terms.kl.cpu())
            log_px.append(model.log_likelihood(x, num_samples, chunk_size).cpu())
            done = start + x.shape[0]
            if bar is not None:
                bar.update(x.shape[0])
            elif log is not None and (done / total >= next_line or done == total):
                next_line = math.floor(done / total * 10 + 1) / 10
                elapsed = time.perf_counter() - started
                left = elapsed / done * (total - done)
                log(
                    f"  log p(x), K = {num_samples}: {done}/{total} examples, "
                    f"{elapsed:.0f} s elapsed, about {left:.0f} s left"
                )
    finally:
        if bar is not None:
            bar.close()
    log_px_t = torch.cat(log_px).double()
    n = log_px_t.numel()
    nll = float(-log_px_t.mean())
    result: dict[str, Any] = {
        "split": split,
        "num_examples": n,
        "num_samples": num_samples,
        "chunk_size": chunk_size,
        "batch_size": batch_size,
        "nll": nll,
        "nll_stderr": standard_error(log_px_t),
        "elbo": float(torch.cat(elbo).double().mean()),
        "log_px_z": float(torch.cat(log_px_z).double().mean()),
        "kl": float(torch.cat(kl).double().mean()),
    }
    bpd = bits_per_dim(nll, dataset)
    if bpd is not None:
        result["bits_per_dim"] = bpd
        result["bits_per_dim_stderr"] = result["nll_stderr"] / (
            math.prod(dataset.shape) * math.log(2.0)
        )
    stats = latent_statistics(model, x_all)
    stats.pop("mu")
    result.update(stats)
    labels = dataset.train.y
    if fcd and labels is not None and not labels.is_floating_point() and labels.min() >= 0:
        from vaekit.feature_net import frechet_classifier_distance

        result.update(
            frechet_classifier_distance(
                model, dataset, split=split, seed=seed, max_examples=max_examples or 10000
            )
        )
    result["units"] = {key: unit for key, unit in UNITS.items() if key in result}
    return result


def evaluate_run(
    run: str | Path, data_dir: str | None = None, log=None, **options: Any
) -> dict[str, Any]:
    """Evaluate a run directory's model on its dataset and save ``RUN/eval.json`` (atomically).

    ``options`` are :func:`evaluate`'s keyword arguments. The result records the SHA-256 of
    the weights it evaluated (``model_sha256``) so a report can tell a stale eval.json.
    """
    from vaekit.checkpoint import atomic_write_json, read_descriptor

    model, dataset = load_run(run, data_dir)
    result = evaluate(model, dataset, log=log, **options)
    result["dataset"] = dataset.name
    result["model_sha256"] = (read_descriptor(run).get("weights") or {}).get("sha256")
    atomic_write_json(Path(run) / "eval.json", result)
    return result


def bits_per_dim(nll: float, dataset: Dataset) -> float | None:
    """Convert an nll in nats per example to bits per dimension of the discrete data.

    Returns None where it does not apply (continuous data with no discrete levels).
    """
    d = math.prod(dataset.shape)
    kind = dataset.transform.kind
    if kind == "dequantize":
        return (nll + d * math.log(dataset.transform.levels)) / (d * math.log(2.0))
    if dataset.support == "binary":
        return nll / (d * math.log(2.0))
    return None
