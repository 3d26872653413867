"""A mixed-type table's rows for the report, in the table's own types: test rows beside their
reconstructions, and synthetic rows. A table has no pictures of its examples; these rows are
its reconstructions and samples (each cell as ``vaekit reconstruct`` and ``vaekit sample``
write it: a count as an integer, an ordinal as a level, a category by its name; a real
number to 6 significant digits, where the files keep 10)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaekit.data.tables import cell_text, encoded_cells
from vaekit.distributions.table_values import column_draws, column_means
from vaekit.distributions.tabular import as_columns


@dataclass
class TableRows:
    """``names [C]``; ``pairs``: per test row, its cells ("" where missing) and its
    reconstruction's; ``samples``: synthetic rows (empty where the model draws none)."""

    names: list[str]
    pairs: list[tuple[list[str], list[str]]]
    samples: list[list[str]]


def _texts(columns, values: list[torch.Tensor]) -> list[list[str]]:
    """Per-column values ``[N]`` (a category index, or ``[N, K]`` probabilities: the most
    probable) as rows of cell texts."""
    flat = [(v.argmax(-1) if v.dim() == 2 else v).double().numpy() for v in values]
    n = len(flat[0]) if flat else 0
    return [[_shown(c, float(v[i])) for c, v in zip(columns, flat, strict=True)] for i in range(n)]


def _shown(column, value: float) -> str:
    """A cell as the page shows it: a real number to 6 significant digits (as the explorer
    does; the CSV files keep 10, to be read back), anything else as written out."""
    if column.kind in ("real", "positive", "zero-inflated"):
        return f"{value:.6g}"
    return cell_text(column, value)


@torch.no_grad()
def table_rows(
    model, x: torch.Tensor, y: torch.Tensor | None = None, count: int = 8, seed: int = 0
) -> TableRows | None:
    """The first ``count`` encoded test rows ``x [N, F + C]`` (labels ``y [N]`` for a
    conditional model) beside E[v|z = mu(x)], and ``count`` rows drawn as ``vaekit sample``
    draws them (z ~ p(z), every cell from p(v|z); an unconditional model only). None for a
    model that is not of a mixed table or has no posterior and likelihood."""
    if not model.config.columns or not (model.has_posterior and model.has_likelihood):
        return None
    columns = as_columns(model.config.columns)
    inputs = encoded_cells(x[:count].double().numpy(), columns)  # as stored (float64)
    x = x[:count].to(next(model.parameters()).dtype)
    y = y[:count] if y is not None and model.takes_labels else None
    p = model.decode(model.encode(x, y=y).mean, y=y)
    recon = _texts(columns, column_means(p.likelihood, p.decoder_output))
    samples: list[list[str]] = []
    if not model.takes_labels:
        with torch.random.fork_rng(devices=[]):  # the report's draws leave no trace
            torch.manual_seed(seed)
            p = model.decode(model.prior.sample(count))
            samples = _texts(columns, column_draws(p.likelihood, p.decoder_output))
    return TableRows([c.name for c in columns], list(zip(inputs, recon, strict=True)), samples)
