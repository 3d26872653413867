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

from vaekit.comparison.checks import (
    ComparisonError,
    check_comparable,
    check_conditioning,
    data_signature,
)
from vaekit.comparison.paired import (
    COMPARED,
    PairedDifference,
    bits_per_dim_per_example,
    bootstrap_active_units,
    count_active,
    paired_difference,
    per_example,
)
from vaekit.evaluate import load_run
from vaekit.evaluation.likelihood_space import data_space
from vaekit.metrics import metric

__all__ = [
    "COMPARED",
    "ComparisonError",
    "PairedDifference",
    "RunComparison",
    "RunSummary",
    "bootstrap_active_units",
    "check_comparable",
    "check_conditioning",
    "compare_runs",
    "count_active",
    "data_signature",
    "paired_difference",
    "per_example",
]


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
    definitions: dict[str, str] = field(default_factory=dict)
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
                "for the AE-vs-VAE lesson use `vaekit lesson ae-vs-vae --runs AE_RUN VAE_RUN`"
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
        for key in COMPARED[:-1]:  # active units, a count, are bootstrapped below
            if key in values and key in base:
                differences.append(paired_difference(key, names[0], name, base[key], values[key]))
        if not with_units:
            continue
        au_a = int(count_active(base["mu"], base["mu_noise"]))
        au_b = int(count_active(values["mu"], values["mu_noise"]))
        counted = metric("active_units")
        differences.append(
            PairedDifference(
                metric=counted.key,
                label=counted.label,
                unit=counted.unit,
                a=names[0],
                b=name,
                value_a=float(au_a),
                value_b=float(au_b),
                difference=float(au_b - au_a),
                stderr=bootstrap_active_units(base, values, seed=seed),
                method="bootstrap",
                higher_is_better=counted.higher_is_better,
            )
        )
    compared = {d.metric for d in differences} | set(summaries[0].values)
    definitions = {key: metric(key).definition for key in COMPARED if key in compared}
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
