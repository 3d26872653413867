"""Mixed-type tables as text, and the column schema inferred from them.

A CSV (read with the csv module; a first row that is not all numbers is the header) or a
Parquet table (pyarrow) becomes a :class:`TextTable`: per column, each cell's text or None
for a missing cell (empty, ``NA``, ``NaN`` or ``null`` in any case; a Parquet null or NaN).
The schema (:func:`infer_schema`, each column a ``vaekit.settings.TableColumn``):

* binary: exactly two distinct observed values (numbers or words);
* categorical: words, or integers with at most ``MAX_INTEGER_CATEGORIES`` distinct values;
* count: non-negative integers with more distinct values;
* positive: numbers, all > 0, right-skewed (skewness > ``POSITIVE_SKEW``): log-normal;
* real: any other numbers.

``--column-type NAME=TYPE`` (``[data.columns]`` in TOML) replaces an inferred type. Bad
input is a one-line :class:`DataError` naming the file and the column.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaekit.data.errors import DataError
from vaekit.data.files import check_unique_columns, read_parquet_table
from vaekit.settings import TableColumn

MISSING = frozenset({"", "na", "nan", "null"})
MAX_INTEGER_CATEGORIES = 10
MAX_CATEGORIES = 100
POSITIVE_SKEW = 1.0
KINDS = ("real", "positive", "count", "poisson", "binary", "categorical")


@dataclass
class TextTable:
    """A table as text: ``names [C]``, ``cells[j][i]`` the stripped text of row i, column j
    (None where missing), ``raw`` the rows exactly as read (CSV; None for Parquet) and
    ``lines`` the file line of each row (counted from 1, header included); ``clean``: every
    cell observed and a finite number (the plain numeric path reads such a table)."""

    path: Path
    names: list[str]
    cells: list[list[str | None]]
    raw: list[list[str]] | None
    header: list[str] | None
    lines: list[int]
    clean: bool = False

    def __len__(self) -> int:
        return len(self.lines)


def number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _missing(text: str) -> bool:
    return text.strip().lower() in MISSING


def read_text_table(path: Path) -> TextTable:
    """A CSV or Parquet file's cells as text (see the module doc)."""
    if path.suffix.lower() == ".csv":
        return _read_csv_text(path)
    return _read_parquet_text(path)


def _read_csv_text(path: Path) -> TextTable:
    try:  # utf-8-sig: a byte-order mark is not part of the first column's name
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text CSV file ({exc})") from None
    numbered = [(i + 1, r) for i, r in enumerate(rows) if any(cell.strip() for cell in r)]
    if not numbered:
        raise DataError(f"{path}: empty CSV file")
    header = None
    if not all(number(cell) is not None for cell in numbered[0][1]):
        header = numbered[0][1]
        numbered = numbered[1:]
    if not numbered:
        raise DataError(f"{path}: CSV file has a header but no data rows")
    width = len(header) if header else len(numbered[0][1])
    names = [c.strip() for c in header] if header else [str(j + 1) for j in range(width)]
    for line, row in numbered:
        if len(row) != width:
            raise DataError(f"{path}: row {line} has {len(row)} columns, expected {width}")
    cells = [
        [None if _missing(row[j]) else row[j].strip() for _, row in numbered] for j in range(width)
    ]
    raw = [row for _, row in numbered]
    table = TextTable(path, names, cells, raw, header, [line for line, _ in numbered])
    table.clean = all(
        cell is not None and (v := number(cell)) is not None and math.isfinite(v)
        for column in table.cells
        for cell in column
    )
    return table


def _read_parquet_text(path: Path) -> TextTable:
    import pyarrow as pa

    table = read_parquet_table(path)  # one row at least, unique names, one-line errors
    cells, clean = [], True
    for column in table.columns:
        kind = column.type
        numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        clean = clean and (numeric or pa.types.is_boolean(kind)) and not column.null_count
        values = column.to_pylist()
        if pa.types.is_floating(column.type):
            text = [None if v is None or math.isnan(v) else repr(float(v)) for v in values]
        elif pa.types.is_boolean(column.type):
            text = [None if v is None else str(v).lower() for v in values]
        else:
            text = [None if v is None or _missing(str(v)) else str(v).strip() for v in values]
        finite = not numeric or all(t is None or math.isfinite(float(t)) for t in text)
        clean = clean and None not in text and finite
        cells.append(text)
    lines = list(range(1, table.num_rows + 1))
    return TextTable(path, list(table.column_names), cells, None, None, lines, clean)


# --- the schema ----------------------------------------------------------------------------


def _canonical(value: float) -> str:
    """A number category's text: 3 for 3.0, else the shortest float text."""
    return str(int(value)) if math.isfinite(value) and value == int(value) else repr(value)


def _column_error(table: TextTable, j: int, message: str) -> DataError:
    return DataError(f"{table.path}: column {j + 1} ({table.names[j]!r}): {message}")


def _skewness(v: np.ndarray) -> float:
    centred = v - v.mean()
    sd = centred.std()
    return float((centred**3).mean() / sd**3) if sd > 0 else 0.0


def _infer_kind(table: TextTable, j: int, observed: list[str]) -> str:
    numbers = [number(c) for c in observed]
    if None not in numbers and not all(math.isfinite(v) for v in numbers):
        i = next(i for i, c in enumerate(table.cells[j]) if c and not math.isfinite(float(c)))
        raise DataError(
            f"{table.path}: row {table.lines[i]}, column {j + 1} ({table.names[j]!r}): "
            f"{table.cells[j][i]!r} is not finite"
        )
    distinct = set(observed) if None in numbers else {_canonical(v) for v in numbers}
    if len(distinct) == 2:
        return "binary"
    if None in numbers:
        limit = min(MAX_CATEGORIES, max(2, len(observed) // 2))
        if len(distinct) > limit:
            word = next(c for c, v in zip(observed, numbers, strict=True) if v is None)
            raise _column_error(
                table,
                j,
                f"fits no type: {len(distinct)} distinct values in {len(observed)} cells, and "
                f"words such as {word!r} (categories need at most {limit}; free text or an "
                "identifier? leave the column out)",
            )
        return "categorical"
    v = np.asarray(numbers, dtype=np.float64)
    if (v == np.round(v)).all():
        if len(distinct) <= MAX_INTEGER_CATEGORIES:
            return "categorical"
        if v.min() >= 0:
            return "count"
    if v.min() > 0 and _skewness(v) > POSITIVE_SKEW:
        return "positive"
    return "real"


def _check_kind(table: TextTable, j: int, kind: str, observed: list[str]) -> None:
    """An overridden type must fit the column's values."""
    numbers = [number(c) for c in observed]
    if kind in ("real", "positive", "count", "poisson"):
        bad = next((c for c, v in zip(observed, numbers, strict=True) if v is None), None)
        if bad is not None:
            raise _column_error(table, j, f"type {kind}: {bad!r} is not a number")
        v = np.asarray(numbers)
        if not np.isfinite(v).all():
            raise _column_error(table, j, f"type {kind}: it holds infinite values")
        if kind == "positive" and v.min() <= 0:
            raise _column_error(table, j, f"type positive: {v.min():g} is not > 0")
        if kind in ("count", "poisson") and ((v != np.round(v)) | (v < 0)).any():
            bad = v[(v != np.round(v)) | (v < 0)][0]
            raise _column_error(table, j, f"type {kind}: {bad:g} is not an integer >= 0")
    if kind == "binary":
        distinct = set(observed) if None in numbers else {_canonical(v) for v in numbers}
        if len(distinct) != 2:
            raise _column_error(table, j, f"type binary: {len(distinct)} distinct values, not 2")


def _categories(observed: list[str]) -> list[str]:
    numbers = [number(c) for c in observed]
    if None in numbers:
        return sorted(set(observed))
    return [_canonical(v) for v in sorted(set(numbers))]


def category_key(text: str, numeric: bool) -> str:
    if numeric:
        value = number(text)
        if value is not None and math.isfinite(value):
            return _canonical(value)
    return text


def infer_schema(table: TextTable, overrides: dict[str, str] | None = None) -> list[TableColumn]:
    """Each column's type, categories and standardisation (the module doc); ``overrides``
    (name -> type) replace inferred types."""
    overrides = dict(overrides or {})
    check_unique_columns(Path(table.path), list(table.names))  # one message for every reader
    for name, kind in overrides.items():
        if name not in table.names:
            raise DataError(
                f"{table.path}: --column-type names column {name!r}, which the table does not "
                f"have; its columns are {', '.join(map(repr, table.names))}"
            )
        if kind not in KINDS:
            raise DataError(
                f"{table.path}: --column-type {name}={kind}: unknown type; choose one of "
                f"{', '.join(KINDS)}"
            )
    schema = []
    for j, name in enumerate(table.names):
        observed = [c for c in table.cells[j] if c is not None]
        if not observed:
            raise _column_error(table, j, "every cell is missing")
        if len(set(observed)) == 1 or len({category_key(c, True) for c in observed}) == 1:
            raise _column_error(
                table, j, f"a single observed value ({observed[0]!r}): nothing to model"
            )
        if name in overrides:
            kind = overrides[name]
            _check_kind(table, j, kind, observed)
        else:
            kind = _infer_kind(table, j, observed)
        column = TableColumn(name=name, kind=kind)
        if kind in ("binary", "categorical"):
            column.categories = _categories(observed)
        elif kind in ("real", "positive"):
            v = np.asarray([float(c) for c in observed])
            v = np.log(v) if kind == "positive" else v
            column.loc, column.scale = float(v.mean()), float(v.std()) or 1.0
        schema.append(column)
    return schema


def schema_lines(schema: list[TableColumn]) -> list[str]:
    """The schema as a small text table: column, type, likelihood, what it holds."""
    heads = {
        "real": "Gaussian, learned scale",
        "positive": "log-normal",
        "count": "negative binomial",
        "poisson": "Poisson",
        "binary": "Bernoulli",
        "categorical": "categorical",
    }
    rows = [("column", "type", "likelihood", "values")]
    for c in schema:
        if c.categories:
            shown = ", ".join(c.categories[:6]) + (", ..." if len(c.categories) > 6 else "")
            values = f"{len(c.categories)} categories: {shown}"
        elif c.kind == "positive":
            values = f"log: mean {c.loc:.4g}, sd {c.scale:.4g}"
        elif c.kind == "real":
            values = f"mean {c.loc:.4g}, sd {c.scale:.4g}"
        else:
            values = "integers >= 0"
        rows.append((c.name, c.kind, heads[c.kind], values))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return ["  " + "  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
