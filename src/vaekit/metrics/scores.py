"""The columns of ``vaekit score``'s CSV: what each holds, in which unit, and whether it is an
anomaly score (higher = more out-of-distribution) that AUROC and AUPRC rank."""

from __future__ import annotations

from dataclasses import dataclass

from vaekit.metrics.table import metric

_NATS = metric("nll").unit


@dataclass(frozen=True)
class ScoreColumn:
    """One column: ``meaning`` is its definition with its unit (the summary's ``units``);
    ``ranked`` says it is an anomaly score, not a by-product such as a standard error."""

    name: str
    meaning: str
    ranked: bool = True


SCORE_COLUMNS: tuple[ScoreColumn, ...] = (
    ScoreColumn("nll_nats", f"-log p(v) of the data as given, {_NATS} (importance-sampled)"),
    ScoreColumn(
        "nll_stderr_nats",
        "Monte-Carlo standard error of nll_nats (delta method), nats",
        ranked=False,
    ),
    ScoreColumn("neg_elbo_nats", f"-ELBO of the data as given with the same K draws, {_NATS}"),
    ScoreColumn("recon_sq_error", "sum of squared errors of E[x|z=mu(x)] in the data's units"),
    ScoreColumn(
        "complexity_bits",
        "PNG-compressed length of the image (zlib level 9), bits",
        ranked=False,
    ),
    ScoreColumn(
        "complexity_corrected_bits", "-log2 p(v) - complexity_bits (Serra et al. 2020), bits"
    ),
    ScoreColumn("typicality_nats", "|nll_nats - mean nll of in-distribution reference data|, nats"),
    ScoreColumn(
        "most_likely_class",
        "argmax_y p(x|y): the class a conditional model finds likeliest",
        ranked=False,
    ),
)
# Every ``share_NAME_nats`` column of a mixed-type table: one per table column.
SHARE_COLUMN = ScoreColumn(
    "share_NAME_nats",
    "a column's share of the row's score: its cell's -log p(v|z), importance-weighted over "
    "z ~ q(z|x), nats (0 where the cell is missing)",
    ranked=False,
)
_BY_NAME = {c.name: c for c in SCORE_COLUMNS}


def score_column(name: str) -> ScoreColumn:
    """The entry of CSV column ``name``; every column not listed is a table's share column."""
    return _BY_NAME.get(name, SHARE_COLUMN)
