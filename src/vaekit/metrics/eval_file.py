"""The rest of ``eval.json``: every evaluation setting beside the metrics (how, on what and
with what it was evaluated), and the check of a file read back against both tables."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vaekit.metrics.table import METRICS, lookup


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
        "apply (vaekit.evaluation.references); each with its bits/dim where the nll has them.",
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


def eval_keys(result: dict[str, Any]) -> set[str]:
    """The dotted keys of ``result``: a nested dict with no table entry of its own (such as
    ``aggregate_posterior``) counts as its children's keys."""
    known = {m.key for m in METRICS} | {s.key for s in SETTINGS}
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
