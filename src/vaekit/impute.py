"""Missing cells of a mixed-type table filled from a trained model, and synthetic rows.

Imputation is MIWAE's (Mattei & Frellsen 2019, §3): the encoder sees a row's observed cells
(and its mask), K draws z_k ~ q(z|x_obs) get self-normalised importance weights
w_k proportional to p(x_obs|z_k) p(z_k) / q(z_k|x_obs), and a missing cell gets

* real, positive, zero-inflated, count: the posterior-predictive mean sum_k w_k E[v|z_k]
  (zero-inflated: E[v|z_k] = (1 - P(0)) times the log-normal's mean; a count rounded to
  the nearest integer, its column's type), each E[v|z_k] held to the range of the column's
  training values [low, high] (the schema's). The mean is what minimises the expected
  squared error, but where the observed cells say little about a column, q(z|x_obs) spreads
  over codes the training rows never took, and there the decoder extrapolates: a count's
  log-mean, linear in z, gave means of 50,000 for a column whose largest value was 7,300,
  and among K = 100 draws one such z_k decided the sum. Held to the values training saw,
  the terms keep the estimate inside them and the sum loses that heavy tail;
* ordinal: the level nearest that posterior-predictive mean sum_k w_k E[v|z_k]
  (E[v|z_k] = sum_l P(level l|z_k) times level l's value): a cell gets one of the column's
  levels, as a count gets an integer;
* binary, categorical: the category of largest sum_k w_k p(category|z_k).

A self-masking model (``vaekit.distributions.missingness``) draws a real or positive
column's missing cells from p(x_mis|z_k), puts p(s|x) at that draw into w_k, and imputes
sum_k w_k v_k of the draws in place of the mean.

``draws`` multiple imputations are sampling-importance-resampling draws instead: z_k picked
with probability w_k, then v ~ p(v|z_k). Observed cells are copied from the input as they
were read (their text), never rewritten; the column names and order and the category strings
are the training table's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaekit.data.errors import DataError
from vaekit.data.tables import (
    TextTable,
    cell_text,
    nearest_level,
    read_new_table,
    write_csv_rows,
)
from vaekit.distributions import table_values
from vaekit.distributions.tabular import TabularDistribution, as_columns
from vaekit.models.base import Model
from vaekit.settings import TableColumn


@dataclass
class Imputations:
    """Per modelled column, ``means[j] [N]``: the imputed value (category index for binary
    and categorical columns) for every row, missing or not; ``draws[d][j] [N]``: the d-th
    multiple imputation."""

    means: list[np.ndarray]
    draws: list[list[np.ndarray]]


def check_table_model(model: Model, run: str | Path) -> list:
    """The run's table schema; a model that is not of a mixed-type table, or has no
    posterior q(z|x) and prior p(z) over the code that ``decode`` takes, is refused."""
    if not model.config.columns:
        raise ValueError(f"{run}: this model was not trained on a mixed-type table")
    if not (model.has_likelihood and model.has_posterior) or model.takes_labels:
        raise ValueError(
            f"{run}: impute and sample of a table need an unconditional model with a "
            f"posterior q(z|x) and a likelihood (--model vae); {model.name!r} is not one"
        )
    return as_columns(model.config.columns)


def importance_draws(
    model: Model, x: torch.Tensor, num_samples: int, y: torch.Tensor | None = None
) -> tuple[torch.Tensor, TabularDistribution, torch.Tensor | None]:
    """K = ``num_samples`` draws z_k ~ q(z|x) for encoded rows ``x [B, F + C]``: their
    self-normalised importance weights w ``[K, B]`` (float64), w_k proportional to
    p(x_obs|z_k) p(z_k) / q(z_k|x_obs), p(x|z_k), the decoder outputs ``[K, B, F]``, and
    with a self-masking model the real and positive columns' standardised values with the
    missing ones drawn from p(x_mis|z_k) ``[K, B, G]`` (None at random); w_k then also holds
    p(s|x_obs, x_mis) at them. A conditional model's draws are given its class labels
    ``y [B]``: q(z|x,y), p(x|z,y) and its prior p(z|y)."""
    q = model.encode(x, y=y)
    z = q.rsample((num_samples,))  # [K, B, m]; rsample: a flow posterior's log_prob needs it
    p = model.decode(z, y=y)
    likelihood, out = p.likelihood, p.decoder_output
    filled = likelihood.filled(out, x) if likelihood.missing == "self-masking" else None
    prior = model.prior_given(y) if model.takes_labels else model.prior
    log_w = likelihood.log_density(out, x, filled) + prior.log_prob(z) - q.log_prob(z)  # [K, B]
    return torch.softmax(log_w.double(), dim=0), p, filled


def in_range(column: TableColumn, means: torch.Tensor) -> torch.Tensor:
    """A number column's E[v|z] ``[*]`` held to its training values' range [low, high]
    (unchanged where the schema records none)."""
    if column.low is None or column.high is None:
        return means
    return means.clamp(column.low, column.high)


def drawn_means(
    likelihood, columns: list[TableColumn], filled: torch.Tensor, means: list[torch.Tensor]
) -> list[torch.Tensor]:
    """``means`` with each real and positive column's E[v|z_k] ``[K, B]`` replaced by the
    drawn value v_k in its units: under self-masking the weights w_k judge each z_k's draw
    of the missing cells by how well it explains their being missing, so sum_k w_k v_k
    leans toward the values that explain it (within one z_k, too, which E[v|z_k] would
    not)."""
    means = list(means)
    for i, j in enumerate(likelihood.gauss_columns.tolist()):
        column = columns[j]
        v = column.loc + column.scale * filled[..., i].double()
        means[j] = v.exp() if column.kind == "positive" else v
    return means


@torch.no_grad()
def impute(
    model: Model,
    x: torch.Tensor,
    num_samples: int = 100,
    draws: int = 0,
    batch_size: int = 256,
) -> Imputations:
    """MIWAE imputations (module doc) for encoded rows ``x [N, F + C]``; draws come from
    torch's global generator (seed it for reproducible draws)."""
    model.eval()
    columns = as_columns(model.config.columns)
    means: list[list[np.ndarray]] = [[] for _ in columns]
    drawn: list[list[list[np.ndarray]]] = [[[] for _ in columns] for _ in range(draws)]
    dtype = next(model.parameters()).dtype
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size].to(dtype)
        w, p, filled = importance_draws(model, xb, num_samples)
        likelihood, out = p.likelihood, p.decoder_output
        column_means = table_values.column_means(likelihood, out, xb)
        if filled is not None:  # self-masking: the drawn values, which p(s|x) weighed
            column_means = drawn_means(likelihood, columns, filled, column_means)
        for j, m in enumerate(column_means):
            if m.dim() == 3:  # category probabilities [K, B, categories]
                value = (w[..., None] * m).sum(0).argmax(-1).double()
            else:
                value = (w * in_range(columns[j], m)).sum(0)
            if columns[j].kind == "ordinal":
                value = torch.from_numpy(nearest_level(columns[j], value.numpy()))
            means[j].append(value.numpy())
        for d in range(draws):
            pick = torch.multinomial(w.T, 1)[:, 0]  # [B]: z_k with probability w_k
            chosen = out[pick, torch.arange(xb.shape[0])]  # [B, F]
            for j, v in enumerate(table_values.column_draws(likelihood, chosen, xb)):
                drawn[d][j].append(v.double().numpy())
    return Imputations(
        [np.concatenate(m) for m in means],
        [[np.concatenate(v) for v in per_column] for per_column in drawn],
    )


@torch.no_grad()
def column_shares(
    model: Model,
    x: torch.Tensor,
    num_samples: int = 100,
    batch_size: int = 256,
    y: torch.Tensor | None = None,
) -> np.ndarray:
    """Each column's share of a row's score, ``[N, C]`` nats: the cell's -log p(v_j|z)
    averaged over z_k ~ q(z|x) with the self-normalised importance weights w_k (0 where the
    cell is missing). A row's shares sum to -sum_k w_k log p(x|z_k), the likelihood part of
    its score (not exactly its nll, which also holds log p(z) / q(z|x)); the largest share
    names the column that made the row unusual. A conditional model's shares are given the
    class labels ``y [N]``."""
    model.eval()
    dtype = next(model.parameters()).dtype
    shares = []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size].to(dtype)
        yb = None if y is None else y[start : start + batch_size]
        w, p, _ = importance_draws(model, xb, num_samples, yb)
        cells = p.likelihood.cell_log_probs(p.decoder_output, xb)  # [K, B, C]
        # + 0.0: a missing cell's share is written 0, not -0
        shares.append(-(w[..., None] * cells.double()).sum(0).numpy() + 0.0)
    return np.concatenate(shares)


def filled_rows(table: TextTable, columns: list, x: torch.Tensor, values: list) -> list[list[str]]:
    """The table's rows as cell texts, the missing cells of modelled columns filled with
    ``values[j][i]`` in the column's type; every other cell as it was read."""
    where = {name: j for j, name in enumerate(table.names)}
    mask = x[:, -len(columns) :].numpy()
    rows = []
    for i in range(len(table)):
        if table.raw is not None:
            row = list(table.raw[i])
        else:
            row = [c if c is not None else "" for c in (col[i] for col in table.cells)]
        for k, column in enumerate(columns):
            if mask[i, k] == 0:
                row[where[column.name]] = cell_text(column, values[k][i])
        rows.append(row)
    return rows


def _header(table: TextTable) -> list[str] | None:
    return table.header if table.raw is not None else list(table.names)


def impute_run(
    run: str | Path,
    data: str | Path,
    output: str | Path,
    num_samples: int = 100,
    draws: int | None = None,
    seed: int = 0,
    unknown_categories: str = "error",
) -> list[Path]:
    """Fill the missing cells of the table ``data`` with the run's model; write ``output``
    (``.csv``), or with ``draws`` N the files OUTPUT-1.csv ... OUTPUT-N.csv, each one
    multiple imputation. Returns the paths written. ``unknown_categories`` "missing": a
    category training never saw is a missing cell, and filled as one."""
    from vaekit.checkpoint import load

    output, data = Path(output), Path(data)
    if output.suffix.lower() != ".csv":
        raise DataError(f"-o {output}: the filled table is written as .csv")
    if draws is not None and draws < 1:
        raise ValueError(f"--draws must be >= 1, got {draws}")
    model = load(run)
    columns = check_table_model(model, run)
    table, x = read_new_table(data, model.config.columns, unknown_categories)
    x = torch.from_numpy(x)
    torch.manual_seed(seed)
    result = impute(model, x, num_samples, draws or 0)
    if draws is None:
        targets = [(output, result.means)]
    else:
        targets = [
            (output.with_name(f"{output.stem}-{d + 1}{output.suffix}"), result.draws[d])
            for d in range(draws)
        ]
    for path, _ in targets:
        if path.resolve() == data.resolve():
            raise ValueError(f"-o {path}: that is the input table; write the filled one elsewhere")
    return [
        write_csv_rows(path, _header(table), filled_rows(table, columns, x, values))
        for path, values in targets
    ]


@torch.no_grad()
def decoded_values(
    model: Model, z: torch.Tensor, batch_size: int = 1000, y: torch.Tensor | None = None
) -> list[np.ndarray]:
    """E[v|z] of codes ``z [N, m]`` (a conditional model's E[v|z,y], labels ``y [N]``), per
    column ``[N]``: the mean of a number column, the index of the most
    probable category of a binary or categorical one."""
    model.eval()
    columns = as_columns(model.config.columns)
    values: list[list[np.ndarray]] = [[] for _ in columns]
    for start in range(0, z.shape[0], batch_size):
        yb = None if y is None else y[start : start + batch_size]
        p = model.decode(z[start : start + batch_size], y=yb)
        for j, m in enumerate(table_values.column_means(p.likelihood, p.decoder_output)):
            values[j].append((m.argmax(-1) if m.dim() == 2 else m).double().numpy())
    return [np.concatenate(v) for v in values]


def write_decoded_rows(
    model: Model,
    z: torch.Tensor,
    output: str | Path,
    batch_size: int = 1000,
    y: torch.Tensor | None = None,
) -> Path:
    """:func:`decoded_values` as rows of the run's table (``.csv``), a count rounded; what
    ``decode`` and ``reconstruct`` write for a table model."""
    columns = as_columns(model.config.columns)
    flat = decoded_values(model, z, batch_size, y)
    rows = [[cell_text(c, v[i]) for c, v in zip(columns, flat, strict=True)] for i in range(len(z))]
    return write_csv_rows(output, [c.name for c in columns], rows)


@torch.no_grad()
def sample_values(model: Model, n: int) -> list[np.ndarray]:
    """``n`` synthetic rows, per column ``[n]`` in its units (a category index for binary and
    categorical columns): z ~ p(z), then every cell drawn from p(v|z) (torch's global
    generator)."""
    model.eval()
    p = model.decode(model.prior.sample(n))
    return [v.double().numpy() for v in table_values.column_draws(p.likelihood, p.decoder_output)]


def sample_rows(model: Model, n: int) -> list[list[str]]:
    """:func:`sample_values` as cell texts in the training table's columns."""
    columns = as_columns(model.config.columns)
    values = sample_values(model, n)
    return [
        [cell_text(c, v[i].item()) for c, v in zip(columns, values, strict=True)] for i in range(n)
    ]


def sample_run(run: str | Path, n: int, output: str | Path, seed: int = 0) -> Path:
    """``n`` synthetic rows of the run's table written to ``output`` (``.csv``)."""
    from vaekit.checkpoint import load

    model = load(run)
    columns = check_table_model(model, run)
    torch.manual_seed(seed)
    return write_csv_rows(output, [c.name for c in columns], sample_rows(model, n))
