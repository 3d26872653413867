"""The config settings left ``"auto"``, resolved once the data is known.

A mixed-type table trains best with other settings than an image set (measured on the table
benchmarks' imputation error and held-out nll), so these settings default to ``"auto"`` and
take their value here, when training starts:
:func:`data_defaults` says what each one is for the data's facts, and
:func:`resolve_auto` writes those values into the config's ``"auto"`` fields (a value the
user gave, by flag, TOML, ``--set`` or the estimator, is never replaced). The run's
config.json then records the concrete values, so a resumed or evaluated run reads them back
as they were trained. ``vaekit train`` and :class:`vaekit.VAEEstimator` both train through
``vaekit.training``'s Trainer, which calls :func:`resolve_auto`: one table, one model. A
model or objective built from a config that never saw data reads ``"auto"`` as the value for
data other than a table (:func:`unresolved`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The IWAE bound for a table (MIWAE's training: the bound its imputations and scores are
# importance-sampled from), with K importance samples.
TABLE_OBJECTIVE = "iwae"
TABLE_IMPORTANCE_SAMPLES = 10
# Adam's L2 weight decay for a table: a few hundred rows train tens of thousands of weights.
TABLE_WEIGHT_DECAY = 1e-4
# The joint low-rank Gaussian's rank over a table's real and positive columns, and the
# training rows it needs: a covariance factor learned from fewer rows overfits (on the table
# benchmarks it lowered wine's anomaly AUROC and density with 142 training rows). Up to 16,
# because the held-out density of breast cancer's 30 columns (455 training rows) kept
# improving with the rank: -36.3 nats per row at rank 4, -39.2 at 8, -43.4 at 16.
TABLE_RANK = 16
TABLE_RANK_MIN_ROWS = 300

# What every other dataset gets: the values these settings had before they could say "auto".
OTHER_DEFAULTS: dict[str, Any] = {
    "objective.name": "elbo",
    "objective.num_importance_samples": 5,
    "optim.weight_decay": 0.0,
    "model.rank": None,  # the likelihood's own default (1 for gaussian-lowrank)
}


def unresolved(path: str, value: Any) -> Any:
    """``value`` of the setting ``path`` ("section.field"), or where it is still ``"auto"``
    (no data seen), the value data other than a table gets."""
    return OTHER_DEFAULTS[path] if value == "auto" else value


@dataclass(frozen=True)
class DataFacts:
    """What the defaults depend on: whether the data is a mixed-type table, its training
    rows, and its real and positive columns (0 for anything but a table)."""

    table: bool
    train_rows: int
    gaussian_columns: int = 0


def data_defaults(facts: DataFacts) -> dict[str, Any]:
    """The value of every ``"auto"`` setting for data with these facts, as
    ``{"section.field": value}``."""
    if not facts.table:
        return dict(OTHER_DEFAULTS)
    rank = None
    if facts.gaussian_columns >= 2 and facts.train_rows >= TABLE_RANK_MIN_ROWS:
        rank = min(TABLE_RANK, facts.gaussian_columns - 1)
    return {
        "objective.name": TABLE_OBJECTIVE,
        "objective.num_importance_samples": TABLE_IMPORTANCE_SAMPLES,
        "optim.weight_decay": TABLE_WEIGHT_DECAY,
        "model.rank": rank,
    }


def resolve_auto(config: Any, facts: DataFacts, objectives: tuple[str, ...]) -> dict[str, Any]:
    """Replace each ``"auto"`` field of ``config`` (a :class:`vaekit.config.Config`), in
    place, by its value from :func:`data_defaults`; return the fields replaced and their
    values. ``objectives``: those the model trains with (``Model.objectives``): an objective
    it lacks, or the IWAE bound where the ELBO's own options (KL warm-up, free bits) were
    given, falls back to "elbo"."""
    values = data_defaults(facts)
    objective = config.objective
    if objective.name == "auto" and (
        values["objective.name"] not in objectives
        or objective.kl_warmup_steps
        or objective.free_bits
    ):
        values["objective.name"] = "elbo"
    applied = {}
    for path, value in values.items():
        section, name = path.split(".")
        part = getattr(config, section)
        if getattr(part, name) == "auto":
            setattr(part, name, value)
            applied[path] = value
    if objective.name != "iwae":  # K is recorded, but nothing trains with it
        applied.pop("objective.num_importance_samples", None)
    return applied


def describe(applied: dict[str, Any], facts: DataFacts) -> str | None:
    """The one line training prints about the table defaults it applied (None: none)."""
    if not facts.table or not applied:
        return None
    words = {
        "objective.name": lambda v: f"objective {v}",
        "objective.num_importance_samples": lambda v: f"K = {v} importance samples",
        "optim.weight_decay": lambda v: f"weight decay {v:g}",
        "model.rank": lambda v: (
            "rank none (independent real columns)" if v is None else f"rank {v}"
        ),
    }
    given = ", ".join(
        words[path](value) if path in words else f"{path} = {value}"
        for path, value in applied.items()
    )
    return (
        f"table defaults ({facts.train_rows} training rows, {facts.gaussian_columns} real or "
        f"positive columns): {given} (a flag, --set or config value replaces any of them)"
    )
