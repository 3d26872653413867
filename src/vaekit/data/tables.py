"""Mixed-type tables encoded for the tabular likelihood (``vaekit.distributions.tabular``),
as a training Dataset or as the rows of new data for a trained run, and values written back
as cells.

The text and the schema come from :mod:`vaekit.data.table_schema`; the encoded layout is the
likelihood's: per column its features (0 where missing), then the observed mask.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from vaekit.data.errors import DataError
from vaekit.data.stored import Stored, make_dataset
from vaekit.data.table_schema import (
    TextTable,
    category_key,
    infer_schema,
    number,
    parse_numbers,
    read_text_table,
)
from vaekit.data.transforms import TableEncoding
from vaekit.distributions.tabular import as_columns, feature_width
from vaekit.rundir import atomic_write_bytes
from vaekit.settings import TableColumn
from vaekit.support.spelling import arg, on_command_line

# --- encoding ------------------------------------------------------------------------------

# What new data's cell of a category training never saw becomes: an error naming it (the
# default), or a missing cell, marginalised like a blank one.
UNKNOWN_CATEGORIES = ("error", "missing")


def encode(
    table: TextTable, schema: list[TableColumn], unknown_categories: str = "error"
) -> np.ndarray:
    """Rows as the model's input ``[N, F + C]`` float64 (``vaekit.distributions.tabular``):
    features (0 where missing), then the observed mask. ``table`` must hold the schema's
    columns (matched by name, in any order); a value the schema cannot hold (an unseen
    category, a word in a number column) is a DataError naming row and column, except an
    unseen category with ``unknown_categories`` "missing": that cell is encoded as missing,
    and :func:`note_unknown` says how many were."""
    if unknown_categories not in UNKNOWN_CATEGORIES:
        raise ValueError(
            f"{arg('unknown_categories')} must be one of {', '.join(UNKNOWN_CATEGORIES)}, "
            f"got {unknown_categories!r}"
        )
    where = {name: j for j, name in enumerate(table.names)}
    missing = [c.name for c in schema if c.name not in where]
    if missing:
        raise DataError(
            f"{table.path}: no column {', '.join(map(repr, missing))} (the training table's "
            f"columns are {', '.join(repr(c.name) for c in schema)})"
        )
    n = len(table)
    widths = [feature_width(c) for c in schema]
    x = np.zeros((n, sum(widths) + len(schema)), dtype=np.float64)
    start, unseen = 0, {}
    for k, column in enumerate(schema):
        cells = table.cells[where[column.name]]
        rows = np.array([i for i, c in enumerate(cells) if c is not None], dtype=np.int64)
        texts = [cells[i] for i in rows]
        if column.kind in ("binary", "categorical", "ordinal"):
            find = _level_indices if column.kind == "ordinal" else _category_indices
            index = find(table, column, rows, texts, unknown_categories)
            unknown = index < 0
            unseen[column.name] = int(unknown.sum())
            rows, index = rows[~unknown], index[~unknown]
        x[rows, sum(widths) + k] = 1.0
        if column.kind in ("binary", "categorical"):
            if column.kind == "binary":
                x[rows, start] = index
            else:
                x[rows, start + index] = 1.0
        elif column.kind == "ordinal":  # the standardised level index
            x[rows, start] = (index - column.loc) / column.scale
        else:
            features = _encode_numbers(table, column, rows, texts)
            x[rows, start : start + widths[k]] = features.reshape(len(rows), widths[k])
        start += widths[k]
    _check_counts(table, schema, x, widths)
    if unknown_categories == "missing":
        note_unknown(table.path, unseen)
    return x


def note_unknown(path: Path | str, unseen: dict[str, int]) -> None:
    """Say how many cells held a category training never saw and were read as missing
    (``unseen``: column name -> cells): a line ``vaekit: note: ...`` on stderr on the
    command line, a warning in Python; nothing where there were none."""
    total = sum(unseen.values())
    if not total:
        return
    where = ", ".join(f"{name!r} {n}" for name, n in unseen.items() if n)
    note = (
        f"{path}: {total} cell{'s' if total > 1 else ''} held a category training never saw "
        f"({where}), read as missing ({arg('unknown_categories', 'missing')})"
    )
    if on_command_line():
        print(f"vaekit: note: {note}", file=sys.stderr)
    else:
        warnings.warn(note, stacklevel=3)


def _cell_error(table: TextTable, i: int, column: TableColumn, cell: str, message: str):
    return DataError(
        f"{table.path}: row {table.lines[i]}, column {column.name!r}: {cell!r} {message}"
    )


def _category_indices(
    table: TextTable,
    column: TableColumn,
    rows: np.ndarray,
    texts: list[str],
    unknown_categories: str = "error",
) -> np.ndarray:
    """Each observed cell's category index ``[M]`` int64 (``rows`` its rows in the table);
    a category training never saw is a DataError naming the first such row, or with
    ``unknown_categories`` "missing" the index -1."""
    numeric = all(number(c) is not None for c in column.categories)
    position = {c: i for i, c in enumerate(column.categories)}
    lookup = {t: position.get(category_key(t, numeric), -1) for t in set(texts)}
    index = np.array([lookup[t] for t in texts], dtype=np.int64)
    if unknown_categories == "error":
        shown = ", ".join(column.categories[:10])
        _refuse_unknown(
            table, column, rows, texts, index, f"a category training never saw (it saw: {shown})"
        )
    return index


def _refuse_unknown(
    table: TextTable,
    column: TableColumn,
    rows: np.ndarray,
    texts: list[str],
    index: np.ndarray,
    what: str,
) -> None:
    """A DataError naming the first cell whose ``index`` is -1 (a value training never saw,
    ``what`` says which kind), if there is one."""
    if (index < 0).any():
        m = int(np.argmin(index >= 0))
        raise _cell_error(
            table,
            rows[m],
            column,
            texts[m],
            f"is {what}; {arg('unknown_categories', 'missing')} reads such cells as missing",
        )


def _level_indices(
    table: TextTable,
    column: TableColumn,
    rows: np.ndarray,
    texts: list[str],
    unknown_categories: str = "error",
) -> np.ndarray:
    """Each observed cell's ordinal level index ``[M]`` int64 (its value among the column's
    ``levels``); a value that is not one of them is a DataError naming the first such row,
    or with ``unknown_categories`` "missing" the index -1."""
    values, is_number = parse_numbers(texts)
    levels = np.asarray(column.levels, dtype=np.float64)
    index = np.searchsorted(levels, np.where(is_number, values, np.inf))
    index = np.minimum(index, len(levels) - 1)
    index = np.where(is_number & (levels[index] == values), index, -1)
    if unknown_categories == "error":
        shown = ", ".join(f"{v:g}" for v in column.levels[:10])
        more = ", ..." if len(column.levels) > 10 else ""
        what = f"not one of the levels training saw (column type ordinal: {shown}{more})"
        _refuse_unknown(table, column, rows, texts, index, what)
    return index


def _encode_numbers(
    table: TextTable, column: TableColumn, rows: np.ndarray, texts: list[str]
) -> np.ndarray:
    """A number column's observed cells as features ``[M]`` float64: standardised reals,
    standardised logs of positive reals, log1p of counts; ``[M, 2]`` for a zero-inflated
    column: [v == 0] and the standardised log of v > 0 (0 for a zero). A value the type
    cannot hold is a DataError naming the first such row."""
    values, is_number = parse_numbers(texts)

    def first(bad: np.ndarray, message: str) -> None:
        if bad.any():
            m = int(np.argmax(bad))
            raise _cell_error(table, rows[m], column, texts[m], message)

    first(~is_number | ~np.isfinite(values), f"is not a finite number (column type {column.kind})")
    if column.kind == "real":
        return (values - column.loc) / column.scale
    if column.kind == "positive":
        first(values <= 0, "is not > 0 (column type positive, log-normal)")
        return (np.log(values) - column.loc) / column.scale
    if column.kind == "zero-inflated":
        first(values < 0, "is not >= 0 (column type zero-inflated: 0, or log-normal above 0)")
        zero = values == 0
        logs = np.log(np.where(zero, 1.0, values))
        return np.stack([zero, np.where(zero, 0.0, (logs - column.loc) / column.scale)], -1)
    first(
        (values < 0) | (values != np.round(values)),
        f"is not an integer >= 0 (column type {column.kind})",
    )
    return np.log1p(values)


def _check_counts(
    table: TextTable, schema: list[TableColumn], x: np.ndarray, widths: list[int]
) -> None:
    """Counts travel as log1p(v) in the training dtype: refuse a count whose round trip
    through that dtype would not give back the same integer."""
    dtype = torch.get_default_dtype()
    for k, column in enumerate(schema):
        if column.kind not in ("count", "poisson"):
            continue
        start = sum(widths[:k])
        features = torch.from_numpy(x[:, start])
        back = torch.expm1(features.to(dtype)).double().round()
        exact = torch.expm1(features).round()
        bad = torch.nonzero(back != exact)
        if bad.numel():
            i = int(bad[0, 0])
            raise DataError(
                f"{table.path}: row {table.lines[i]}, column {column.name!r}: the count "
                f"{exact[i]:.0f} is too large to keep exactly in {str(dtype)[6:]}; give it "
                f"--column-type {column.name}=real"
            )


# --- class labels ----------------------------------------------------------------------------


def _flag() -> str:
    from vaekit.support.spelling import spell

    return spell("--label-column", "label_column")


def take_label_cells(
    table: TextTable, name: str
) -> tuple[TextTable, torch.Tensor, list[str] | None]:
    """The column ``name`` as class labels ``y [N]`` (int64) and the table without it.
    Integers >= 0 are the labels as given (``classes`` None, as for a numeric table);
    other values (words, say) are categories, sorted, each label its index in ``classes``.
    A missing label is an error naming its row."""
    if name not in table.names:
        raise DataError(
            f"{table.path}: no column {name!r} for {_flag()}; the columns are "
            f"{', '.join(map(repr, table.names))}"
        )
    if len(table.names) < 2:
        raise DataError(f"{table.path}: {_flag()} {name!r} leaves no feature columns")
    j = table.names.index(name)
    cells = table.cells[j]
    gap = next((i for i, c in enumerate(cells) if c is None), None)
    if gap is not None:
        raise DataError(
            f"{table.path}: row {table.lines[gap]}, column {name!r}: the class label is missing"
        )
    values = [number(c) for c in cells]
    if all(v is not None and v == round(v) and v >= 0 for v in values):
        classes, labels = None, [int(v) for v in values]
    else:
        numeric = None not in values
        classes = sorted({category_key(c, numeric) for c in cells})
        if numeric:
            classes.sort(key=float)
        labels = [classes.index(category_key(c, numeric)) for c in cells]
    rest = dataclasses.replace(
        table,
        names=table.names[:j] + table.names[j + 1 :],
        cells=table.cells[:j] + table.cells[j + 1 :],
        raw=None if table.raw is None else [r[:j] + r[j + 1 :] for r in table.raw],
        header=None if table.header is None else table.header[:j] + table.header[j + 1 :],
    )
    return rest, torch.tensor(labels, dtype=torch.int64), classes


def label_cells(table: TextTable, name: str, classes: list[str] | None) -> torch.Tensor:
    """New data's class labels ``[N]`` in the training table's label column ``name`` (its
    ``classes``, or integers as given); a label training never saw is an error."""
    j = table.names.index(name)
    labels = []
    for i, cell in enumerate(table.cells[j]):
        value = None if cell is None else number(cell)
        if classes is None:
            ok = value is not None and value == round(value) and value >= 0
            label = int(value) if ok else None
        else:
            key = None if cell is None else category_key(cell, value is not None)
            label = classes.index(key) if key in classes else None
        if label is None:
            raise DataError(
                f"{table.path}: row {table.lines[i]}, column {name!r}: {cell!r} is not a class "
                f"label the model knows"
                + ("" if classes is None else f" ({', '.join(classes[:10])})")
            )
        labels.append(label)
    return torch.tensor(labels, dtype=torch.int64)


# --- a training dataset ----------------------------------------------------------------------


def load_table(
    path: Path,
    overrides: dict[str, str] | None,
    val_fraction: float,
    split_seed: int,
    label_column: str | None = None,
):
    """A Dataset of a mixed-type table's encoded rows (``support`` "table", likelihood
    tabular, ``schema`` its columns), or None for a table of complete finite numbers with no
    type overrides: the plain numeric path (``vaekit.data.files``) reads that one."""
    table = read_text_table(path)
    if not overrides and table.clean:
        return None
    labels, extra = None, {}
    if label_column is not None:
        table, labels, classes = take_label_cells(table, label_column)
        extra = {"label_column": label_column, "label_classes": classes}
    schema = infer_schema(table, overrides)
    x = encode(table, schema)
    stored = Stored(
        torch.from_numpy(x),
        labels,
        f"mixed-type table, {len(schema)} columns, {int(x[:, -len(schema) :].sum())} of "
        f"{x.shape[0] * len(schema)} cells observed"
        + ("" if label_column is None else f", labels {label_column!r}"),
        {"columns": list(table.names), **extra},
    )
    dataset = make_dataset(path, stored, val_fraction, split_seed, in_memory=True)
    return dataclasses.replace(
        dataset,
        transform=TableEncoding(),
        support="table",
        default_likelihood="tabular",
        num_levels=None,
        schema=schema,
    )


# --- new data and the cells written back ------------------------------------------------------


def read_new_table(
    path: str | Path, schema: list, unknown_categories: str = "error"
) -> tuple[TextTable, np.ndarray]:
    """A table for a trained model of a mixed-type table: its text and its encoded rows
    ``[N, F + C]`` under the run's ``schema`` (the model config's ``columns``); the
    columns are matched by name, other columns are kept as they are and not modelled.
    ``unknown_categories``: :func:`encode`'s."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise DataError(f"{path}: a model of a table reads .csv or .parquet tables")
    table = read_text_table(path)
    duplicate = next((n for i, n in enumerate(table.names) if n in table.names[:i]), None)
    if duplicate is not None:
        raise DataError(f"{path}: duplicate column name {duplicate!r}")
    return table, encode(table, as_columns(schema), unknown_categories)


def encoded_cells(x: np.ndarray, schema: list[TableColumn]) -> list[list[str]]:
    """Encoded rows ``x [N, F + C]`` back as cell texts in the table's types (the inverse of
    :func:`encode`; "" for a missing cell; a real number to 7 significant digits, which is
    what float32 holds of it): how the report and the explorer show a split's rows."""
    widths = [feature_width(c) for c in schema]
    starts = np.cumsum([0, *widths])
    mask = x[:, starts[-1] :]
    rows = []
    for i in range(x.shape[0]):
        row = []
        for k, column in enumerate(schema):
            v = x[i, starts[k] : starts[k + 1]]
            if mask[i, k] == 0:
                row.append("")
            elif column.kind == "categorical":
                row.append(cell_text(column, int(np.argmax(v))))
            elif column.kind in ("count", "poisson"):
                row.append(cell_text(column, np.expm1(v[0])))
            elif column.kind in ("real", "positive"):
                value = column.loc + column.scale * v[0]
                row.append(f"{np.exp(value) if column.kind == 'positive' else value:.7g}")
            elif column.kind == "zero-inflated":
                value = 0.0 if v[0] == 1 else np.exp(column.loc + column.scale * v[1])
                row.append(f"{value:.7g}")
            elif column.kind == "ordinal":
                index = int(np.rint(column.loc + column.scale * v[0]))
                row.append(cell_text(column, column.levels[index]))
            else:
                row.append(cell_text(column, round(v[0])))
        rows.append(row)
    return rows


def cell_text(column: TableColumn, value: float) -> str:
    """A value in a column's type as the cell text written out: a category's own text
    (``value`` its index), a count as an integer, an ordinal's level nearest ``value``, a
    real number with 10 significant digits."""
    if column.kind in ("binary", "categorical"):
        return column.categories[int(value)]
    if column.kind == "ordinal":
        value = nearest_level(column, np.asarray(value)).item()
    if column.kind in ("count", "poisson"):
        return str(int(np.rint(value)))
    return f"{value:.10g}"


def nearest_level(column: TableColumn, values: np.ndarray) -> np.ndarray:
    """An ordinal column's level nearest each of ``values [*]`` (the lower one at a tie):
    where a predicted mean, which may fall between levels, becomes a cell."""
    levels = np.asarray(column.levels, dtype=np.float64)
    above = np.clip(np.searchsorted(levels, values), 1, len(levels) - 1)
    below = above - 1
    pick = np.where(values - levels[below] <= levels[above] - values, below, above)
    return levels[pick]


def write_csv_rows(path: str | Path, header: list[str] | None, rows: list[list[str]]) -> Path:
    """Rows of cell texts as a CSV file (the csv module's quoting), written atomically."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise DataError(f"-o {path}: tables are written as .csv")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())
    return path
