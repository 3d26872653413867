"""What a headline likelihood number is read against: references in its own space and unit.

An nll of 92 nats per example means little alone. Beside it, ``vaekit evaluate``, the report
and the end of training show, each in the same space as the headline ``nll`` (the data as
given, see :mod:`vaekit.evaluate`) and in nats per example (with bits per dimension where the
data are discrete):

* ``uniform``: uniform noise. Binary data: D log 2 (every pixel a fair coin, 1 bit/dim);
  L discrete levels: D log L (log2 L bits/dim: 8 for 8-bit images); data on [0, 1]^D in
  the model's space: the uniform density there, which is the transform's change-of-variables
  term ``log_data_scale`` in the data as given (D log L for dequantised levels). Unbounded
  real values have no uniform density: none is given.
* ``independent``: the data's independent-dimension baseline, fitted on the training split
  and scored on the evaluated examples (the first ``num_examples`` rows of the split):
  binary data, a Bernoulli per dimension with p_d = (sum_i q_id + 1) / (n + 2) (Laplace's
  rule, so a pixel never on in training keeps a finite cost), scored as the expected nll over
  the binarisation draws (q = the stored level / (levels - 1) under dynamic binarisation);
  L levels, a categorical per dimension with P_d(l) = (count_d(l) + 1) / (n + L);
  continuous data, a Gaussian per dimension fitted by maximum likelihood in the model's
  space (variance floored at ``VARIANCE_FLOOR``: a constant column would otherwise give an
  infinite density), plus ``log_data_scale`` (an affine change of variables maps the fit
  to the same fit in the data's units). A model that does not beat it has learnt nothing
  about how dimensions go together.
* ``preset``: the number a shipped preset recorded (``PRESET_RECORDS``), shown for a run
  whose data, model and objective are the preset's (the training budget may differ: a
  shorter run is expected to fall short of it).
* ``published``: the best published number for the same data and space
  (``PUBLISHED_RECORDS``), only where the data set is the one it was measured on.

None of these apply to a model conditioned on labels (its nll is -log p(x|y)) except the
data's own two, which bound it from the unconditional side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from vaekit.data import Dataset
from vaekit.data_defaults import OTHER_DEFAULTS

# Model-space variance floor of the independent Gaussian baseline (see the module doc).
VARIANCE_FLOOR = 1e-6
ROWS_PER_BLOCK = 4096  # training rows counted at a time: bounded memory on large splits


@dataclass(frozen=True)
class Record:
    """A recorded number: ``value`` in ``unit`` ("nats" per example or "bits" per
    dimension) on data set ``data``, with where it comes from."""

    value: float
    unit: str
    data: str
    source: str


# What the shipped presets reached (benchmarks/RESULTS.md and benchmarks/notes/presets.md):
# the test split, K = 5000 importance samples, the preset's whole budget on 2 CPU cores.
PRESET_RECORDS: dict[str, Record] = {
    "mnist-nll": Record(86.15, "nats", "mnist-binarized-dynamic", "benchmarks/RESULTS.md"),
    "mnist-record-1h": Record(84.00, "nats", "mnist-binarized-dynamic", "benchmarks/RESULTS.md"),
    "mnist-record-2h": Record(83.67, "nats", "mnist-binarized-dynamic", "benchmarks/RESULTS.md"),
    "fashion-bpd": Record(4.41, "bits", "fashion-mnist", "benchmarks/notes/presets.md"),
}
# The best published numbers vaekit's data sets can be compared with, in the same space.
PUBLISHED_RECORDS: dict[str, Record] = {
    "mnist-binarized-dynamic": Record(
        78.01, "nats", "mnist-binarized-dynamic", "NVAE, Vahdat & Kautz (2020)"
    ),
    "cifar10": Record(2.91, "bits", "cifar10", "NVAE, Vahdat & Kautz (2020)"),
}
LABELS = {"uniform": "uniform", "preset": "preset record", "published": "published record"}


def dimension_word(dataset: Dataset) -> str:
    """ "pixels" for images ``[C, H, W]``, "columns" otherwise."""
    return "pixels" if len(dataset.shape) == 3 else "columns"


def _rows(dataset: Dataset, split: str, stop: int | None = None):
    """Stored rows of ``split`` as float64 ``[b, D]`` blocks (the first ``stop`` rows)."""
    data = dataset.split(split)
    n = len(data) if stop is None else min(stop, len(data))
    for start in range(0, n, ROWS_PER_BLOCK):
        block = data.read(start, min(n, start + ROWS_PER_BLOCK))
        yield block.reshape(block.shape[0], -1).double()


def _discrete_levels(dataset: Dataset) -> int | None:
    """L where the data are L integer levels scored as such (dequantised or as levels)."""
    if dataset.transform.kind in ("dequantize", "levels"):
        return dataset.transform.levels
    return None


def _binary_rate(dataset: Dataset, block: torch.Tensor) -> torch.Tensor:
    """q = P(x = 1) of each stored value: the level / (levels - 1) under dynamic
    binarisation, the value itself for data stored as 0/1."""
    if dataset.transform.kind == "binarize-dynamic":
        return block / (dataset.transform.levels - 1)
    return block


def independent_nll(dataset: Dataset, split: str = "test", num_examples: int | None = None):
    """The independent-dimension baseline's nll per example (nats, the data as given) on
    the first ``num_examples`` rows of ``split``, fitted on the training split: a tensor
    ``[N]`` (float64), or None for data it does not cover (a mixed-type table)."""
    d = math.prod(dataset.shape)
    levels = _discrete_levels(dataset)
    if len(dataset.train) == 0 or len(dataset.split(split)) == 0:
        return None  # new data evaluated alone: nothing to fit the baseline on
    if dataset.support == "binary":
        n, ones = 0, torch.zeros(d, dtype=torch.float64)
        for block in _rows(dataset, "train"):
            n, ones = n + block.shape[0], ones + _binary_rate(dataset, block).sum(0)
        p = (ones + 1) / (n + 2)
        return torch.cat(
            [
                -(q * p.log() + (1 - q) * (-p).log1p()).sum(1)
                for q in (_binary_rate(dataset, b) for b in _rows(dataset, split, num_examples))
            ]
        )
    if levels is not None:
        offsets = torch.arange(d, dtype=torch.long) * levels  # dimension j's counts at j*L
        counts, n = torch.zeros(d * levels, dtype=torch.float64), 0
        for block in _rows(dataset, "train"):
            index = (block.long() + offsets).flatten()
            counts += torch.bincount(index, minlength=d * levels).double()
            n += block.shape[0]
        log_p = ((counts + 1) / (n + levels)).log()
        return torch.cat(
            [-log_p[b.long() + offsets].sum(1) for b in _rows(dataset, split, num_examples)]
        )
    if dataset.support == "table" or dataset.transform.kind == "table":
        return None
    # Continuous: a Gaussian per dimension in the model's space (deterministic transforms).
    n, total, squares = 0, torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    for block in _rows(dataset, "train"):
        x = _model_space(dataset, block)
        n, total, squares = n + x.shape[0], total + x.sum(0), squares + x.square().sum(0)
    mean = total / n
    var = (squares / n - mean.square()).clamp_min(VARIANCE_FLOOR)
    c = dataset.transform.log_data_scale(tuple(dataset.shape))
    parts = []
    for block in _rows(dataset, split, num_examples):
        x = _model_space(dataset, block)
        log_p = -0.5 * ((x - mean).square() / var + var.log() + math.log(2 * math.pi))
        parts.append(c - log_p.sum(1))
    return torch.cat(parts)


def _model_space(dataset: Dataset, block: torch.Tensor) -> torch.Tensor:
    x = dataset.transform(block.reshape(block.shape[0], *dataset.shape))
    return x.reshape(block.shape[0], -1).double()


def uniform_nll(dataset: Dataset) -> float | None:
    """Uniform noise's nll per example (nats, the data as given; see the module doc), None
    for unbounded real values."""
    d = math.prod(dataset.shape)
    if dataset.support == "binary":
        return d * math.log(2.0)
    if dataset.transform.kind == "levels":
        return d * math.log(dataset.transform.levels)
    if dataset.support == "unit-interval":
        return dataset.transform.log_data_scale(tuple(dataset.shape))
    return None


def preset_of(config: dict[str, Any] | None) -> str | None:
    """The preset with a record whose data set, model and objective ``config`` (a run's
    config.json ``config``) has; where several do, the one whose training section shares the
    most settings with it (the first by name on a tie). None: none does, or ``config`` is
    not a config."""
    if not config:
        return None
    from vaekit.config import Config, load_config
    from vaekit.settings import ConfigError, to_dict

    try:  # an older run's config gains the settings added since, at their defaults
        run = to_dict(Config.from_dict(config))
    except (ConfigError, TypeError, ValueError):
        return None
    found = []
    for name in PRESET_RECORDS:
        preset = to_dict(load_config(name))
        if run["data"]["name"] != preset["data"]["name"]:
            continue
        if all(_as_trained(preset, run, key) == run[key] for key in ("model", "objective")):
            shared = sum(run["train"].get(k) == v for k, v in preset["train"].items())
            found.append((-shared, name))
    return min(found)[1] if found else None


def _as_trained(preset: dict[str, Any], run: dict[str, Any], section: str) -> dict[str, Any]:
    """Section ``section`` of a preset's config as a run of it records it: its ``"auto"``
    settings resolved as for data other than a table (every preset with a record is an
    image set), and the fields training fills from the data (the preset leaves them None or
    ``"auto"``: the data's shape and levels, an ``"auto"`` likelihood) taken from ``run``."""
    trained = {}
    for name, value in preset[section].items():
        if value == "auto" and f"{section}.{name}" in OTHER_DEFAULTS:
            value = OTHER_DEFAULTS[f"{section}.{name}"]
        if value is None or value == "auto":
            value = run[section].get(name, value)
        trained[name] = value
    return trained


def _entry(label: str, nll: float | None, dims: int, bits: bool, source: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"label": label, "nll": nll, "source": source}
    if bits and nll is not None:
        entry["bits_per_dim"] = nll / (dims * math.log(2.0))
    return entry


def _record_entry(kind: str, record: Record, dims: int, bits: bool, source: str) -> dict:
    nll = record.value if record.unit == "nats" else record.value * dims * math.log(2.0)
    return _entry(LABELS[kind], nll, dims, bits, source)


def references(
    dataset: Dataset,
    split: str,
    num_examples: int,
    *,
    bits: bool,
    conditional: bool = False,
    config: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """``eval.json``'s ``references``: name -> {label, nll (nats per example, the data as
    given), bits_per_dim (where ``bits``: the headline has bits/dim), source}; only those
    that apply (see the module doc). ``config``: the run's, to find its preset."""
    d = math.prod(dataset.shape)
    refs: dict[str, dict[str, Any]] = {}
    baseline = independent_nll(dataset, split, num_examples)
    if baseline is not None:
        what = f"independent {dimension_word(dataset)}"
        source = f"each dimension fitted alone on the training split, mean over the {split} rows"
        refs["independent"] = _entry(what, float(baseline.mean()), d, bits, source)
    uniform = uniform_nll(dataset)
    if uniform is not None:
        refs["uniform"] = _entry(LABELS["uniform"], uniform, d, bits, "uniform noise")
    if conditional or split != "test":
        return refs  # records are unconditional nlls of the test split
    preset = preset_of(config)
    if preset is not None and PRESET_RECORDS[preset].data == dataset.name:
        record = PRESET_RECORDS[preset]
        source = f"preset {preset}, its whole budget, K = 5000 ({record.source})"
        refs["preset"] = _record_entry("preset", record, d, bits, source)
    published = PUBLISHED_RECORDS.get(dataset.name)
    if published is not None:
        refs["published"] = _record_entry("published", published, d, bits, published.source)
    return refs


def reference_text(result: dict[str, Any], key: str = "nll") -> str | None:
    """The references of ``result`` in one phrase, in the unit of its ``key`` (``nll``:
    nats per example; ``bits_per_dim``), e.g. ``independent pixels 206.4, uniform 543.4,
    preset record 84.00``; None where it has none."""
    refs = result.get("references") or {}
    digits = 2 if key == "nll" else 3
    parts = [
        f"{ref['label']} {ref[key]:.{digits}f}"
        for ref in refs.values()
        if isinstance(ref.get(key), int | float)
    ]
    return ", ".join(parts) or None


def reference_lines(result: dict[str, Any], indent: str = "  ") -> list[str]:
    """The headline nll (and bits/dim) beside its references, a line each, for the CLI,
    the end of training and the report; none where ``result`` has no references."""
    lines = []
    for key, unit in (("nll", "nats per example"), ("bits_per_dim", "bits/dim")):
        text = reference_text(result, key)
        value = result.get(key)
        if text is not None and isinstance(value, int | float):
            digits = 2 if key == "nll" else 3
            name = "nll" if key == "nll" else "bits/dim"
            lines.append(f"{indent}beside {name} {value:.{digits}f} {unit}: {text}")
    return lines
