"""The one table of what ``eval.json`` holds: every metric with its label, unit and definition,
and every evaluation setting beside it.

``vaekit.evaluate`` writes the keys, ``vaekit evaluate`` prints the table's rows and the HTML
report renders the same rows; none of them spells a label or a unit of its own. Keys are
dotted paths into eval.json (``aggregate_posterior.mean_norm`` is
``result["aggregate_posterior"]["mean_norm"]``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    """One quantity of eval.json.

    ``higher_is_better`` is True or False where a direction exists, None for a diagnostic
    with no better direction (a KL, a count of active units). ``stderr_key`` names the
    entry holding its standard error; ``of_key`` a list whose length the value is a count
    out of ("3 of 8"); ``brief`` is the definition in a few words. ``shown`` rows appear in
    the CLI print and the report; the others (lists, standard errors folded into their
    metric) live in eval.json and the figures.
    """

    key: str
    label: str
    unit: str
    definition: str
    higher_is_better: bool | None = None
    digits: int = 3
    stderr_key: str | None = None
    of_key: str | None = None
    shown: bool = True
    omit_if_zero: bool = False
    brief: str = ""  # the definition in a few words, for the terminal

    def value_text(self, result: dict[str, Any]) -> str:
        """The value as the CLI and the report print it: "12.345 ± 0.067", "3 of 8", "n/a"."""
        value = lookup(result, self.key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        if isinstance(value, float) and not math.isfinite(value):
            return "n/a"
        text = str(value) if isinstance(value, int) else f"{value:.{self.digits}f}"
        if self.stderr_key is not None:
            stderr = lookup(result, self.stderr_key)
            if isinstance(stderr, float) and math.isfinite(stderr):
                text += f" ± {stderr:.{self.digits}f}"
            elif self.stderr_key in (result.get("null_reasons") or {}):
                text += " ± n/a"  # written as null; the reason is printed beside it
        if self.of_key is not None:
            total = lookup(result, self.of_key)
            if isinstance(total, list):
                text += f" of {len(total)}"
        return text

    @property
    def direction(self) -> str:
        """ "higher is better", "lower is better" or "no better direction"."""
        if self.higher_is_better is None:
            return "neither higher nor lower is better"
        return "higher is better" if self.higher_is_better else "lower is better"


_NATS = "nats per example"

METRICS: tuple[Metric, ...] = (
    Metric(
        "nll",
        "nll",
        _NATS,
        "-log p(x) estimated by importance sampling with K draws from q(z|x) per example "
        "(Burda et al. 2015), mean over the N examples, ± one standard error; an upper bound "
        "on the true nll in expectation that tightens as K grows. Negative values are "
        "possible for continuous data, where p is a density. Of the data as given (the "
        "'space' setting says which), i.e. including the change of variables of every "
        "recorded transform.",
        higher_is_better=False,
        stderr_key="nll_stderr",
        brief="-log p(x) of the data as given, importance-sampled; ± one standard error",
    ),
    Metric(
        "nll_model_space",
        "nll (model space)",
        _NATS,
        "the same importance-sampled estimate for the model's inputs x = transform(v) (the "
        "'model_space' setting names them), before the change of variables back to the data "
        "as given; present only where the transform changes densities.",
        higher_is_better=False,
        brief="-log p(x) of the model's inputs, not of the data as given",
    ),
    Metric(
        "elbo_model_space",
        "ELBO (model space)",
        _NATS,
        "the ELBO of the model's inputs x = transform(v).",
        higher_is_better=True,
        shown=False,
    ),
    Metric(
        "log_px_z_model_space",
        "E_q[log p(x|z)] (model space)",
        _NATS,
        "the reconstruction term of the model-space ELBO.",
        higher_is_better=True,
        shown=False,
    ),
    Metric(
        "nll_stderr",
        "nll standard error",
        _NATS,
        "std(log p(x_i), ddof=1) / sqrt(N) over the evaluated examples.",
        shown=False,
    ),
    Metric(
        "bits_per_dim",
        "bits/dim",
        "bits per dimension",
        "nll of the discrete data / (D log 2): exact for a discrete likelihood (discretised "
        "logistic on the levels, Bernoulli on binary data); for a density on dequantised data "
        "(model-space nll + D log levels) / (D log 2), a bound (Theis et al. 2016); absent for "
        "continuous data. The 'bits_per_dim_basis' setting says which.",
        higher_is_better=False,
        digits=4,
        stderr_key="bits_per_dim_stderr",
        brief="of the discrete data; ± one standard error",
    ),
    Metric(
        "bits_per_dim_stderr",
        "bits/dim standard error",
        "bits per dimension",
        "the nll's standard error divided by D log 2.",
        digits=4,
        shown=False,
    ),
    Metric(
        "elbo",
        "ELBO",
        _NATS,
        "E_q[log p(x|z)] - KL(q(z|x) || p(z)) with one Monte-Carlo draw per example; a lower "
        "bound on log p(x).",
        higher_is_better=True,
        brief="a lower bound on log p(x), one draw",
    ),
    Metric(
        "log_px_z",
        "E_q[log p(x|z)]",
        _NATS,
        "the reconstruction term of the ELBO.",
        higher_is_better=True,
        brief="the reconstruction term of the ELBO",
    ),
    Metric(
        "kl",
        "KL",
        _NATS,
        "KL(q(z|x) || p(z)), mean over examples: the code's cost in nats. In closed form where "
        "the posterior and prior families have one (a Gaussian q against N(0, I)); otherwise "
        "(IAF posterior, VampPrior, the hierarchical VAE's conditional layers) the one-draw "
        "Monte-Carlo estimate log q(z|x) - log p(z) at the ELBO's draw.",
        brief="KL(q(z|x) || p(z)); closed form where one exists",
    ),
    Metric(
        "kl_correlation",
        "KL correlation part",
        _NATS,
        "KL minus the sum of the per-coordinate marginal KLs: the part of the KL due to "
        "correlations in a full-covariance posterior (0 for the diagonal one).",
        omit_if_zero=True,
        brief="the KL due to correlations within q(z|x)",
    ),
    Metric(
        "kl_per_dim",
        "KL per latent coordinate",
        "nats per example, per coordinate",
        "KL(N(mu_j, Sigma_jj) || N(0, 1)) of each coordinate's marginal posterior, mean over "
        "examples.",
        shown=False,
    ),
    Metric(
        "active_units",
        "active units",
        "latent coordinates",
        "coordinates j with Var_x(E_q[z_j|x]) above the threshold 0.01 (Burda et al. 2015): "
        "a unit whose posterior mean ignores x carries no information. Monte-Carlo means "
        "(flow posteriors, hierarchical models) have their sampling variance subtracted.",
        of_key="kl_per_dim",
        brief="Var_x(E_q[z_j|x]) > 0.01",
    ),
    Metric(
        "active_units_per_layer",
        "active units per layer",
        "latent coordinates, per stochastic layer",
        "the active units of each stochastic layer of a hierarchical model, z_1 (next to x) first.",
        brief="z_1 (next to x) first",
    ),
    Metric(
        "posterior_mean_variance",
        "variance of the posterior means",
        "latent units squared, per coordinate",
        "Var_x(E_q[z_j|x]) of each coordinate over the evaluated examples.",
        shown=False,
    ),
    Metric(
        "aggregate_posterior.mean_norm",
        "aggregate posterior: mean norm",
        "latent units",
        "||m|| for m = mean_x E_q[z|x]; 0 under the prior.",
        higher_is_better=False,
        brief="||mean_x E_q[z|x]||, 0 under the prior",
    ),
    Metric(
        "aggregate_posterior.cov_frobenius_to_identity",
        "aggregate posterior: ||C - I||_F",
        "latent units squared",
        "Frobenius distance of C = Cov_x(mu(x)) + mean_x Sigma(x) from the prior's I.",
        higher_is_better=False,
        brief="q(z)'s covariance C against the prior's I",
    ),
    Metric(
        "aggregate_posterior.kl_gaussian_fit_to_prior",
        "aggregate posterior: KL to prior",
        "nats",
        "KL(N(m, C) || N(0, I)) of the Gaussian with the aggregate posterior's moments.",
        higher_is_better=False,
        brief="KL(N(m, C) || N(0, I)) of a Gaussian fit to q(z)",
    ),
    Metric(
        "aggregate_posterior.mean",
        "aggregate posterior mean",
        "latent units, per coordinate",
        "m = mean_x E_q[z|x].",
        shown=False,
    ),
    Metric(
        "aggregate_posterior.cov_diagonal",
        "aggregate posterior variances",
        "latent units squared, per coordinate",
        "the diagonal of C = Cov_x(mu(x)) + mean_x Sigma(x).",
        shown=False,
    ),
    Metric(
        "commitment",
        "commitment",
        "squared code units per example",
        "||z_e(x) - z_q(x)||^2 summed over the code positions: how far the encoder's output "
        "lies from its nearest codebook vector (VQ-VAE).",
        higher_is_better=False,
        brief="||z_e - z_q||^2, encoder output to its code",
    ),
    Metric(
        "codebook_usage",
        "codebook usage",
        "fraction of codes",
        "the fraction of the codebook's vectors chosen at least once on the evaluated examples.",
        higher_is_better=True,
        brief="codes used at least once",
    ),
    Metric(
        "codebook_perplexity",
        "codebook perplexity",
        "codes",
        "exp(entropy of the code frequencies): K when all K codes are used equally, 1 when one "
        "code is used.",
        higher_is_better=True,
        brief="exp(entropy of the code frequencies)",
    ),
    Metric(
        "frechet_classifier_distance",
        "Fréchet classifier distance (FCD)",
        "squared feature units",
        "Fréchet distance between Gaussian fits of real test images and as many generated "
        "ones (E[x|z], z ~ N(0, I)) in the 64-d penultimate features of vaekit's own "
        "classifier for this dataset. Not FID; comparable only on the same dataset.",
        higher_is_better=False,
        brief="in vaekit's classifier features; not FID",
    ),
)


@dataclass(frozen=True)
class Setting:
    """A key of eval.json that is not a measurement: how, on what and with what it was
    evaluated."""

    key: str
    label: str
    unit: str
    definition: str


SETTINGS: tuple[Setting, ...] = (
    Setting("dataset", "dataset", "", "the registered dataset the model was trained on."),
    Setting("likelihood", "likelihood", "", "why a model without p(x) reports no nll or ELBO."),
    Setting(
        "conditioned_on", "conditioned on", "", "what a conditional model's densities are given."
    ),
    Setting("codebook_size", "codebook size", "codes", "vectors in a VQ-VAE's codebook."),
    Setting(
        "bits_per_dim_basis",
        "bits/dim basis",
        "",
        "exact (a probability of the discrete data) or the dequantisation bound.",
    ),
    Setting("space", "space", "", "the space nll, ELBO and log p(x|z) are in: the data as given."),
    Setting(
        "references",
        "references",
        "nats per example",
        "what the nll is read against, in its space: uniform noise, independent dimensions "
        "fitted on the training split, the preset's and the published record where they "
        "apply (vaekit.references); each with its bits/dim where the nll has them.",
    ),
    Setting("model_space", "model space", "", "the space of the model's inputs x = transform(v)."),
    Setting(
        "log_data_scale",
        "change of variables",
        "nats per example",
        "c = log of the transform's scale (e.g. sum_d log std_d): log p(v) = log p(x) - c.",
    ),
    Setting("split", "split", "", "the split evaluated: train, val or test."),
    Setting("num_examples", "N", "examples", "examples evaluated."),
    Setting("num_samples", "K", "samples per example", "importance samples per example."),
    Setting("chunk_size", "chunk", "samples per decoder call", "chosen from the memory budget."),
    Setting("batch_size", "batch", "examples per batch", "examples per decoder batch."),
    Setting(
        "active_unit_threshold",
        "active-unit threshold",
        "latent units squared",
        "Var_x(E_q[z_j|x]) above this makes coordinate j active.",
    ),
    Setting("fcd_num_examples", "FCD examples", "examples", "real (and generated) examples."),
    Setting(
        "fcd_classifier",
        "FCD classifier",
        "",
        "cache key, architecture and test accuracy (a fraction) of the feature network.",
    ),
    Setting(
        "null_reasons",
        "why null",
        "",
        "for each value written as null (strict JSON has no NaN or infinity), the reason.",
    ),
    Setting("model_sha256", "weights SHA-256", "", "hash of the evaluated model.safetensors."),
    Setting("units", "units", "", "each metric's unit and definition, from this table."),
    Setting("eval_seconds", "evaluation time", "seconds", "wall-clock time of the evaluation."),
    Setting("device", "device", "", "the device the evaluation ran on."),
    Setting("torch_version", "torch", "", "the torch version that evaluated."),
    Setting("vaekit_version", "vaekit", "", "the vaekit version that evaluated."),
)

_BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}


def metric(key: str) -> Metric:
    """The table entry of ``key``; a KeyError names a key the table lacks."""
    return _BY_KEY[key]


def lookup(result: dict[str, Any], key: str) -> Any:
    """``result``'s value at the dotted ``key``, None where any part is missing."""
    value: Any = result
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


# The settings of eval.json that are not text, by kind (every other setting is a string).
_INT_SETTINGS = {"num_examples", "num_samples", "chunk_size", "batch_size", "codebook_size"}
_INT_SETTINGS |= {"fcd_num_examples"}
_NUMBER_SETTINGS = {"log_data_scale", "active_unit_threshold", "eval_seconds"}
_OBJECT_SETTINGS = {"null_reasons", "units", "fcd_classifier", "references"}


def result_problem(result: Any) -> str | None:
    """What is wrong with an evaluation read back from eval.json, in words naming the field
    (``"nll must be a finite number or null, got 'abc'"``); None if every field the table
    knows has its kind: metrics finite numbers, lists of them, or null; counts integers;
    settings strings, numbers or objects as the table says."""
    if not isinstance(result, dict):
        return f"must hold one object, got {type(result).__name__}"
    for entry in METRICS:
        value = lookup(result, entry.key)
        if not _numbers_or_null(value):
            return f"{entry.key} must be a finite number or null, got {_short(value)}"
    for entry in SETTINGS:
        value = result.get(entry.key)
        if value is None:
            continue
        if entry.key in _INT_SETTINGS:
            ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif entry.key in _NUMBER_SETTINGS:
            ok, want = _numbers_or_null(value) and not isinstance(value, list), "a number"
        elif entry.key in _OBJECT_SETTINGS:
            ok, want = isinstance(value, dict), "an object"
        else:
            ok, want = isinstance(value, str), "a string"
        if not ok:
            return f"{entry.key} must be {want}, got {_short(value)}"
    return None


def _numbers_or_null(value: Any, depth: int = 0) -> bool:
    if value is None:
        return True
    if isinstance(value, list) and depth < 3:  # per-dimension and per-layer lists
        return all(_numbers_or_null(v, depth + 1) for v in value)
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def shown_metrics(result: dict[str, Any]) -> Iterator[tuple[Metric, str]]:
    """The rows the CLI and the report show, in table order: (entry, value text) for each
    shown metric ``result`` holds (a zero ``omit_if_zero`` metric is left out)."""
    nulls = result.get("null_reasons") or {}
    for entry in METRICS:
        value = lookup(result, entry.key)
        if entry.shown and value is None and entry.key in nulls:  # written as null: say so
            yield entry, "n/a"
            continue
        if not entry.shown or value is None:
            continue
        if entry.omit_if_zero and isinstance(value, float) and abs(value) <= 1e-6:
            continue
        yield entry, entry.value_text(result)


def units_of(result: dict[str, Any]) -> dict[str, str]:
    """``{key: "unit: definition"}`` for every metric ``result`` holds: eval.json's ``units``."""
    return {
        m.key: f"{m.unit}: {m.definition}" for m in METRICS if lookup(result, m.key) is not None
    }


def eval_keys(result: dict[str, Any]) -> set[str]:
    """The dotted keys of ``result``: a nested dict with no table entry of its own (such as
    ``aggregate_posterior``) counts as its children's keys."""
    known = set(_BY_KEY) | {s.key for s in SETTINGS}
    keys: set[str] = set()

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, value in node.items():
            key = prefix + name
            if isinstance(value, dict) and key not in known:
                walk(value, key + ".")
            else:
                keys.add(key)

    walk(result, "")
    return keys
