"""The statistics of a paired comparison: per-example values of one run on common random
numbers, B's mean minus A's with its paired standard error, and the bootstrap of a count."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vaekit.data import Dataset
from vaekit.evaluation.chunking import DEFAULT_MEMORY_BUDGET_MB, choose_chunk_size
from vaekit.evaluation.latent_statistics import ACTIVE_UNIT_THRESHOLD
from vaekit.evaluation.likelihood_space import bits_per_dim
from vaekit.metrics import metric

BOOTSTRAP_DRAWS = 1000
# What is compared, in this order; labels, units, directions and definitions: vaekit.metrics.
COMPARED = ("nll", "elbo", "bits_per_dim", "kl", "active_units")


@dataclass(frozen=True)
class PairedDifference:
    """B's value minus A's for one metric, with its standard error.

    ``difference`` = mean_i (B_i - A_i) (or, for active units, B's count - A's count);
    ``stderr`` is the paired standard error of that mean (``method`` = "paired") or the
    standard deviation of its paired bootstrap distribution (``method`` = "bootstrap").
    """

    metric: str
    label: str
    unit: str
    a: str
    b: str
    value_a: float
    value_b: float
    difference: float
    stderr: float
    method: str
    higher_is_better: bool | None

    @property
    def z(self) -> float:
        """difference / stderr: more than 2 in size is unlikely to be chance (normal approx.)."""
        if self.stderr > 0:
            return self.difference / self.stderr
        return 0.0 if self.difference == 0 else math.copysign(math.inf, self.difference)

    def sentence(self) -> str:
        """'-log p(x): B is 1.21 ± 0.07 nats per example better than A (...)', ± one
        standard error (paired, or bootstrap for active units)."""
        digits = metric(self.metric).digits
        size = f"{abs(self.difference):.{digits}f} ± {self.stderr:.{digits}f}"
        if self.metric == "active_units":
            a, b, n = int(self.value_a), int(self.value_b), int(abs(self.difference))
            se = f"bootstrap standard error {self.stderr:.2f}"
            if n == 0:
                return f"active units: {self.b} has as many as {self.a} ({b} vs {a}; {se})"
            word = "more" if self.difference > 0 else "fewer"
            if self.stderr == 0:
                return (
                    f"active units: {self.b} has {n} {word} than {self.a} ({b} vs {a}) in "
                    "every bootstrap resample (bootstrap standard error 0)"
                )
            return (
                f"active units: {self.b} has {n} {word} than {self.a} ({b} vs {a}; {se}; "
                f"{abs(self.z):.1f} standard errors)"
            )
        if self.difference == 0 and self.stderr == 0:
            return f"{self.label}: {self.b} and {self.a} are equal on every example"
        tail = f"(± one paired standard error; {abs(self.z):.1f} standard errors)"
        if self.higher_is_better is None:
            word = "higher" if self.difference >= 0 else "lower"
            return f"{self.label}: {self.b}'s is {size} {self.unit} {word} than {self.a}'s {tail}"
        word = "better" if (self.difference > 0) == self.higher_is_better else "worse"
        return f"{self.label}: {self.b} is {size} {self.unit} {word} than {self.a} {tail}"


@torch.no_grad()
def per_example(
    model,
    x: torch.Tensor,
    num_samples: int,
    seed: int = 0,
    batch_size: int = 100,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    y: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-example model-space ``log_px`` (importance-sampled, nats), ``elbo`` and ``kl``
    (nats, the model's ``elbo`` terms: closed-form KL or its Monte-Carlo estimate), each
    ``[N]`` float64, and, for a model with a continuous latent, E_q[z|x] ``mu [N, m]`` from
    its ``latent_moments``. ``y [N]``: labels, passed to every method of a conditional model
    (then ``log_px`` is log p(x|y)).

    Batch b's draws come from the seed ``(seed, b)``, so two models with the same latent
    dimension use the same standard-normal noise (common random numbers). The global RNG is
    restored afterwards.
    """
    model.eval()
    p = next(model.parameters())
    chunk = choose_chunk_size(model, batch_size, num_samples, memory_budget_mb)
    out: dict[str, list[torch.Tensor]] = {
        "log_px": [], "elbo": [], "kl": [], "mu": [], "mu_noise": []
    }  # fmt: skip
    devices = [p.device.index or 0] if p.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        for b, start in enumerate(range(0, x.shape[0], batch_size)):
            xb = x[start : start + batch_size].to(device=p.device, dtype=p.dtype)
            yb = y[start : start + batch_size].to(p.device) if y is not None else None
            torch.manual_seed(seed * 1_000_003 + b)
            terms = model.elbo(xb, y=yb)
            torch.manual_seed(seed * 1_000_003 + b + 500_000)
            out["log_px"].append(model.log_likelihood(xb, num_samples, chunk, y=yb).double().cpu())
            out["elbo"].append(terms.elbo.double().cpu())
            out["kl"].append(terms.kl.double().cpu())
            if model.has_continuous_latent:  # Monte-Carlo moments (IAF, hierarchical): seeded
                torch.manual_seed(seed * 1_000_003 + b + 250_000)
                moments = model.latent_moments(xb, y=yb)
                out["mu"].append(moments.mean.double().cpu())
                # The sampling variance of a Monte-Carlo mean (zero where it is exact).
                noise = moments.covariance.diagonal(dim1=-2, dim2=-1).double().cpu()
                out["mu_noise"].append(
                    noise / moments.mean_draws if moments.mean_draws else 0 * noise
                )
    if not out["mu"]:
        del out["mu"], out["mu_noise"]
    return {k: torch.cat(v) for k, v in out.items()}


def bits_per_dim_per_example(
    nll: torch.Tensor, dataset: Dataset, discrete: bool = False
) -> torch.Tensor | None:
    """Each example's model-space nll (nats) as bits per dimension of the discrete data,
    ``[N]``; None where there is no honest conversion. The same affine map as
    ``vaekit.evaluate.bits_per_dim`` (``discrete``: the likelihood is a probability of the
    levels, so bits/dim is exact)."""
    zero = bits_per_dim(0.0, dataset, discrete=discrete)
    if zero is None:
        return None
    slope = bits_per_dim(1.0, dataset, discrete=discrete) - zero
    return zero + slope * nll


def count_active(mu: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Active units of posterior means ``mu [..., N, m]`` (population variance over N), less
    the mean sampling variance ``noise [..., N, m]`` of Monte-Carlo means (zeros if exact),
    as ``vaekit.evaluate.active_units`` counts them."""
    variance = mu.var(dim=-2, unbiased=False) - noise.mean(dim=-2)
    return (variance > ACTIVE_UNIT_THRESHOLD).sum(-1)


def bootstrap_active_units(
    a: dict[str, torch.Tensor],
    b: dict[str, torch.Tensor],
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> float:
    """Standard deviation of B's minus A's active-unit count over ``draws`` paired bootstrap
    resamples of the examples (the same resampled rows for both runs); ``a`` and ``b`` hold
    each run's ``mu`` and ``mu_noise``."""
    mu_a, mu_b = a["mu"], b["mu"]
    g = torch.Generator().manual_seed(seed)
    n, m = mu_a.shape[0], max(mu_a.shape[1], mu_b.shape[1])
    step = max(1, 2**22 // (n * m))  # resamples per pass: about 32 MiB of float64 rows
    differences = []
    for start in range(0, draws, step):
        idx = torch.randint(n, (min(step, draws - start), n), generator=g)  # [draws, N]
        count_b = count_active(mu_b[idx], b["mu_noise"][idx])
        differences.append((count_b - count_active(mu_a[idx], a["mu_noise"][idx])).double())
    return float(torch.cat(differences).std(unbiased=True))


def paired_difference(
    key: str, a: str, b: str, values_a: torch.Tensor, values_b: torch.Tensor
) -> PairedDifference:
    """B's mean minus A's of the metric ``key`` from per-example values ``[N]`` of the same
    examples, with its paired standard error; label, unit and direction from the table."""
    entry = metric(key)
    d = values_b - values_a
    se = float(d.std(unbiased=True) / math.sqrt(d.numel())) if d.numel() > 1 else math.nan
    return PairedDifference(
        metric=key,
        label=entry.label,
        unit=entry.unit,
        a=a,
        b=b,
        value_a=float(values_a.mean()),
        value_b=float(values_b.mean()),
        difference=float(d.mean()),
        stderr=se,
        method="paired",
        higher_is_better=entry.higher_is_better,
    )
