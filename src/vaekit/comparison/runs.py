"""``vaekit compare RUN_A RUN_B [RUN_C ...]``: is run B really better than run A?

Every run is evaluated as ``vaekit evaluate`` does it, on the same test examples with the same
K importance samples and the same seed per batch (common random numbers), and each run after
the first is compared with the first: the mean per-example difference of -log p(x), the ELBO,
bits/dim and the KL with its paired standard error, and of active units with a paired
bootstrap standard error. The standard errors describe this test set and these draws, not
another training seed. What is compared, what is refused and why: docs/guide/comparing.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaekit.chunking import DEFAULT_MEMORY_BUDGET_MB, choose_chunk_size
from vaekit.data import Dataset
from vaekit.evaluate import load_run
from vaekit.latent_statistics import ACTIVE_UNIT_THRESHOLD
from vaekit.likelihood_space import bits_per_dim, data_space

BOOTSTRAP_DRAWS = 1000
# Which way is better for each compared metric: +1 higher is better, -1 lower, 0 neither.
METRICS = {
    "nll": ("-log p(x)", "nats per example", -1),
    "elbo": ("ELBO", "nats per example", +1),
    "bits_per_dim": ("bits/dim", "bits per dimension", -1),
    "kl": ("KL(q(z|x) || p(z))", "nats per example", 0),
    "active_units": ("active units", "latent coordinates", 0),
}
# The same metrics of a conditional model (takes_labels): every density is given the label y.
CONDITIONAL_LABELS = {"nll": "-log p(x|y)", "kl": "KL(q(z|x,y) || p(z|y))"}
DEFINITIONS = {
    "nll": "-log p(x) of the data as given (the model-space estimate plus the transform's "
    "change-of-variables term, as `vaekit evaluate` reports it), importance-sampled with K "
    "draws from q(z|x) per example (Burda et al. 2015)",
    "elbo": "E_q[log p(x|z)] - KL(q(z|x) || p(z)) of the data as given (minus the same "
    "change-of-variables term), one Monte-Carlo draw per example",
    "bits_per_dim": "the nll of the discrete data per dimension, in bits: exact for a discrete "
    "likelihood or binary data, the dequantisation bound (Theis et al. 2016) for a density on "
    "dequantised levels",
    "kl": "KL(q(z|x) || p(z)) per example: in closed form where the posterior family has one "
    "against the prior, else the Monte-Carlo estimate log q(z|x) - log p(z) at the ELBO's draw "
    "(IAF posterior, hierarchical layers); the preprocessing does not change it",
    "active_units": f"latent coordinates j with Var_x(E_q[z_j|x]) > {ACTIVE_UNIT_THRESHOLD} "
    "(Burda et al. 2015), E_q[z|x] from the model's latent moments",
}
CONDITIONAL_DEFINITIONS = {
    "nll": "-log p(x|y) of the data as given, each example with its own label y "
    "(importance-sampled with K draws from q(z|x,y); the change-of-variables term added)",
    "elbo": "E_q[log p(x|z,y)] - KL(q(z|x,y) || p(z|y)) of the data as given, a lower bound "
    "on log p(x|y), one Monte-Carlo draw per example",
    "kl": "KL(q(z|x,y) || p(z|y)) per example, closed form where it exists, else Monte Carlo",
}


class ComparisonError(ValueError):
    """The runs cannot be compared example by example (different data, split, no likelihood,
    different conditioning)."""


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
        digits = 4 if self.unit == "bits per dimension" else 3
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


@dataclass
class RunSummary:
    """One run's own numbers on the compared examples (means ± standard error)."""

    name: str
    path: str
    kind: str
    latent_dim: int
    values: dict[str, float]
    stderrs: dict[str, float]
    # What the likelihood figures are of (``likelihood_space.data_space``) and the
    # change-of-variables term c added to the model-space nll (nats per example).
    space: str = ""
    log_data_scale: float = 0.0


@dataclass
class RunComparison:
    """What :func:`compare_runs` returns: every run's numbers and each run's paired
    differences against the first."""

    data: str
    split: str
    num_examples: int
    num_samples: int
    seed: int
    runs: list[RunSummary]
    differences: list[PairedDifference]
    definitions: dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))
    report: str | None = None
    # The space of the baseline's nll/ELBO (every run's own is in its summary), and, for
    # conditional models, what the densities are conditioned on.
    space: str = ""
    conditioned_on: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["differences"] = [
            asdict(d) | {"z": d.z if math.isfinite(d.z) else None, "sentence": d.sentence()}
            for d in self
        ]
        return out

    def __iter__(self):
        return iter(self.differences)

    def lines(self) -> list[str]:
        """The terminal summary: one sentence per metric and run pair."""
        lines = [
            f"{self.data} {self.split} split, {self.num_examples} examples, K = "
            f"{self.num_samples} importance samples, seed {self.seed}; nll and ELBO of "
            f"{self.space}"
            + (f"; conditioned on {self.conditioned_on}" if self.conditioned_on else "")
            + f"; each run against {self.runs[0].name}:"
        ]
        lines += [f"  {d.sentence()}" for d in self.differences]
        if self.report:
            lines.append(f"report: {self.report}")
        return lines


# --- per-example evaluation --------------------------------------------------------------------


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
    ``vaekit.likelihood_space.bits_per_dim`` (``discrete``: the likelihood is a probability of the
    levels, so bits/dim is exact)."""
    zero = bits_per_dim(0.0, dataset, discrete=discrete)
    if zero is None:
        return None
    slope = bits_per_dim(1.0, dataset, discrete=discrete) - zero
    return zero + slope * nll


def count_active(mu: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Active units of posterior means ``mu [..., N, m]`` (population variance over N), less
    the mean sampling variance ``noise [..., N, m]`` of Monte-Carlo means (zeros if exact),
    as ``vaekit.latent_statistics.active_units`` counts them."""
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


def _paired(
    metric: str, a: str, b: str, values_a, values_b, label: str | None = None
) -> PairedDifference:
    default_label, unit, direction = METRICS[metric]
    label = label or default_label
    d = values_b - values_a
    se = float(d.std(unbiased=True) / math.sqrt(d.numel())) if d.numel() > 1 else math.nan
    return PairedDifference(
        metric=metric,
        label=label,
        unit=unit,
        a=a,
        b=b,
        value_a=float(values_a.mean()),
        value_b=float(values_b.mean()),
        difference=float(d.mean()),
        stderr=se,
        method="paired",
        higher_is_better=None if direction == 0 else direction > 0,
    )


# --- refusing what cannot be paired ------------------------------------------------------------

SPLIT_FIELDS = ("name", "val_fraction", "split_seed", "image_size")


# Transforms that present the same stored integer levels: a density sees them dequantised,
# a discrete likelihood sees the levels themselves (``Dataset.as_levels``).
LEVEL_TRANSFORMS = ("dequantize", "levels")


def data_signature(descriptor: dict[str, Any]) -> dict[str, Any]:
    """What must agree for two runs to share test examples: the recorded dataset, its split
    (validation fraction, split seed), image size and preprocessing. ``data_dir`` may differ,
    and so may the way stored levels are presented (dequantised for a density, the levels for
    a discrete likelihood): in the data's own space both are -log P(levels)."""
    config = (descriptor.get("config") or {}).get("data") or {}
    info = descriptor.get("data") or {}
    signature = {f"data.{k}": config.get(k) for k in SPLIT_FIELDS if k in config}
    signature["data.name"] = info.get("name", config.get("name"))
    for key in ("shape", "support", "num_levels", "transform"):
        signature[f"preprocessing.{key}"] = info.get(key)
    transform = info.get("transform")
    if isinstance(transform, dict) and transform.get("kind") in LEVEL_TRANSFORMS:
        signature["preprocessing.transform"] = {"stored levels": transform.get("levels")}
    return signature


def check_conditioning(names: list[str], models: list[Any]) -> None:
    """Raise a one-line :class:`ComparisonError` if the runs' models do not all condition on
    the label alike: -log p(x|y) and -log p(x) are different quantities."""
    first = models[0].takes_labels
    for name, model in zip(names[1:], models[1:], strict=True):
        if model.takes_labels != first:
            which = {True: "-log p(x|y), conditioned on the label", False: "-log p(x)"}
            raise ComparisonError(
                f"{name}: model {model.name!r} reports {which[model.takes_labels]}, "
                f"{names[0]}'s model {models[0].name!r} reports {which[first]}: different "
                "quantities, so they are not paired"
            )


def check_comparable(names: list[str], descriptors: list[dict[str, Any]]) -> None:
    """Raise a one-line :class:`ComparisonError` naming the first field where a run's data
    or split differs from the first run's."""
    first = data_signature(descriptors[0])
    for name, descriptor in zip(names[1:], descriptors[1:], strict=True):
        other = data_signature(descriptor)
        for key in sorted(set(first) | set(other)):
            if first.get(key) != other.get(key):
                shown = [_short(first.get(key)), _short(other.get(key))]
                raise ComparisonError(
                    f"{name}: trained on different data or a different split than {names[0]} "
                    f"({key} {shown[1]} vs {shown[0]}): a paired comparison needs the same "
                    "test examples"
                )


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- the comparison ----------------------------------------------------------------------------


def _names(runs: list[Path]) -> list[str]:
    """Short, distinct display names: the directory names, else the paths."""
    names = [run.name or str(run) for run in runs]
    return names if len(set(names)) == len(names) else [str(run) for run in runs]


def compare_runs(
    runs: list[str | Path],
    num_samples: int = 500,
    seed: int = 0,
    max_examples: int | None = None,
    batch_size: int = 100,
    data_dir: str | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> RunComparison:
    """Compare trained runs example by example on their shared test split (module doc).

    ``runs``: two or more run (or model) directories trained on the same data and split; the
    first is the baseline A. ``num_samples``: K importance samples per example.
    ``max_examples``: use only the first N test examples. ``out``: also write
    ``out/report.html`` (table, overlaid training curves, sample grids) and ``out/compare.json``.
    """
    from vaekit.checkpoint import read_descriptor
    from vaekit.outputs import check_outputs, staged_dir
    from vaekit.rundir import atomic_write_json, check_replace

    paths = [Path(r) for r in runs]
    if len(paths) < 2:
        raise ComparisonError("compare: give at least two runs (RUN_A RUN_B [RUN_C ...])")
    names = _names(paths)
    descriptors = [read_descriptor(p) for p in paths]
    check_comparable(names, descriptors)
    if out is not None:
        check_outputs({"out": out}, inputs=paths)
        check_replace(out, overwrite, "compare.json")  # refused now, not after evaluating
    models, datasets = [], []
    for path in paths:
        # The path `vaekit evaluate` takes: the run's data as its likelihood models it.
        model, dataset = load_run(path, data_dir)
        if not model.has_likelihood:
            raise ComparisonError(
                f"{path}: this model defines no likelihood p(x), so there is no nll to pair; "
                "for the AE-vs-VAE lesson use `vaekit compare --runs AE_RUN VAE_RUN`"
            )
        models.append(model)
        datasets.append(dataset)
    check_conditioning(names, models)
    conditional = models[0].takes_labels
    y = datasets[0].split("test").y if conditional else None
    if conditional and y is None:
        raise ComparisonError(
            f"the test split of {datasets[0].name!r} has no labels, which the conditional "
            f"model {models[0].name!r} needs"
        )
    n = len(datasets[0].split("test"))
    if max_examples is not None:
        n = min(n, max_examples)
    if n < 2:
        raise ComparisonError(f"the test split of {datasets[0].name!r} has fewer than 2 examples")
    evaluated, spaces, scales = [], [], []
    for name, model, dataset in zip(names, models, datasets, strict=True):
        if log is not None:
            log(f"evaluating {name}: {n} test examples, K = {num_samples}")
        x = dataset.fixed("test", seed=seed)[:n]
        values = per_example(
            model,
            x,
            num_samples,
            seed=seed,
            batch_size=batch_size,
            y=y[:n] if y is not None else None,
        )
        # Model space -> the data as given, as `vaekit evaluate` reports them
        # (likelihood_space.to_data_space).
        c = dataset.transform.log_data_scale(tuple(dataset.shape))
        nll_model = -values.pop("log_px")
        discrete = bool(getattr(getattr(model, "likelihood", None), "discrete", False))
        bpd = bits_per_dim_per_example(nll_model, dataset, discrete=discrete)
        values["nll"] = nll_model + c
        values["elbo"] = values["elbo"] - c
        if bpd is not None:
            values["bits_per_dim"] = bpd
        evaluated.append(values)
        spaces.append(data_space(dataset))
        scales.append(float(c))
    with_units = all("mu" in values for values in evaluated)
    labels = CONDITIONAL_LABELS if conditional else {}
    summaries, differences = [], []
    for name, path, model, values, space, c in zip(
        names, paths, models, evaluated, spaces, scales, strict=True
    ):
        per = {k: v for k, v in values.items() if k not in ("mu", "mu_noise")}
        units = {}
        if with_units:
            units = {"active_units": float(count_active(values["mu"], values["mu_noise"]))}
        summaries.append(
            RunSummary(
                name=name,
                path=str(path),
                kind=model.name,
                latent_dim=model.latent_dim,
                values={k: float(v.mean()) for k, v in per.items()} | units,
                stderrs={
                    k: float(v.std(unbiased=True) / math.sqrt(v.numel())) for k, v in per.items()
                },
                space=space,
                log_data_scale=c,
            )
        )
    base = evaluated[0]
    for name, values in zip(names[1:], evaluated[1:], strict=True):
        for metric in ("nll", "elbo", "bits_per_dim", "kl"):
            if metric in values and metric in base:
                differences.append(
                    _paired(
                        metric, names[0], name, base[metric], values[metric], labels.get(metric)
                    )
                )
        if not with_units:
            continue
        au_a = int(count_active(base["mu"], base["mu_noise"]))
        au_b = int(count_active(values["mu"], values["mu_noise"]))
        differences.append(
            PairedDifference(
                metric="active_units",
                label="active units",
                unit="latent coordinates",
                a=names[0],
                b=name,
                value_a=float(au_a),
                value_b=float(au_b),
                difference=float(au_b - au_a),
                stderr=bootstrap_active_units(base, values, seed=seed),
                method="bootstrap",
                higher_is_better=None,
            )
        )
    definitions = dict(DEFINITIONS) | (CONDITIONAL_DEFINITIONS if conditional else {})
    result = RunComparison(
        data=datasets[0].name,
        split="test",
        num_examples=n,
        num_samples=num_samples,
        seed=seed,
        runs=summaries,
        differences=differences,
        definitions=definitions,
        space=spaces[0],
        conditioned_on="each example's own label y: densities are p(x|y)" if conditional else None,
    )
    if out is not None:
        from vaekit.comparison.page import write_comparison_page

        replace = check_replace(out, overwrite, "compare.json")
        with staged_dir(out, replace) as staging:  # whole or not at all
            page = write_comparison_page(result, models, paths, staging, seed=seed)
            result.report = str(Path(out) / page.name)
            atomic_write_json(staging / "compare.json", result.to_dict())
    return result
