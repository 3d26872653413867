"""Mixed-type tables as text, and the column schema inferred from them.

A CSV (read with the csv module; a first row that is not all numbers is the header) or a
Parquet table (pyarrow) becomes a :class:`TextTable`: per column, each cell's text or None
for a missing cell (empty, ``NA``, ``NaN`` or ``null`` in any case; a Parquet null or NaN).
The schema (:func:`infer_schema`, each column a ``vaekit.settings.TableColumn``):

* binary: exactly two distinct observed values (numbers or words);
* categorical: words, or numbers with at most ``MAX_INTEGER_CATEGORIES`` distinct values;
* count: non-negative integers with more distinct values whose smallest value is within one
  standard deviation of zero, not leaning left (:func:`counts_like`);
* zero-inflated: numbers >= 0, not all integers, at least ``ZERO_SHARE`` of them exactly 0: a
  point mass at 0 plus a log-normal on v > 0 (:func:`zero_inflated_like`);
* positive: numbers, all > 0, right-skewed (skewness > ``POSITIVE_SKEW``): log-normal;
* real: any other numbers.

Inference never picks ordinal: ``--column-type NAME=ordinal`` asks for it, on a column of
numbers, whose sorted distinct values become its levels (a column of words is refused:
write its levels as numbers in their order).

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
COUNT_SKEW = -0.5
ZERO_SHARE = 0.1
KINDS = (
    "real",
    "positive",
    "zero-inflated",
    "count",
    "poisson",
    "ordinal",
    "binary",
    "categorical",
)


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


def parse_numbers(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each text as a number, ``float`` semantics: ``values [N]`` float64 (NaN where the text
    is no number) and ``is_number [N]`` bool. One C-level pass when every text is a number
    (numpy parses with Python's ``float``); a Python pass only for columns of words."""
    try:
        return np.array(texts, dtype=np.float64), np.ones(len(texts), dtype=bool)
    except ValueError:
        known = {t: number(t) for t in set(texts)}  # words repeat: parse each text once
        parsed = [known[t] for t in texts]
        is_number = np.array([v is not None for v in parsed], dtype=bool)
        values = np.array([math.nan if v is None else v for v in parsed], dtype=np.float64)
        return values, is_number


def _missing(text: str) -> bool:
    return text.strip().lower() in MISSING


def _cell(text: str) -> str | None:
    """A CSV cell's stripped text, None where it is missing."""
    text = text.strip()
    return None if len(text) <= 4 and text.lower() in MISSING else text


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
    raw = [row for _, row in numbered]
    cells = [[_cell(row[j]) for row in raw] for j in range(width)]
    table = TextTable(path, names, cells, raw, header, [line for line, _ in numbered])
    table.clean = all(None not in column and _finite_numbers(column) for column in cells)
    return table


def _finite_numbers(texts: list[str]) -> bool:
    try:
        return bool(np.isfinite(np.array(texts, dtype=np.float64)).all())
    except ValueError:
        return False


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


@dataclass
class _Observed:
    """A column's observed cells: ``texts [M]``, ``values [M]`` float64 (NaN where no
    number), ``is_number [M]``, and the distinct texts. Parsed once per column."""

    texts: list[str]
    values: np.ndarray
    is_number: np.ndarray
    distinct_texts: set[str]

    @classmethod
    def of(cls, cells: list[str | None]) -> _Observed:
        texts = [c for c in cells if c is not None]
        values, is_number = parse_numbers(texts)
        return cls(texts, values, is_number, set(texts))

    @property
    def numeric(self) -> bool:
        return bool(self.is_number.all())

    def first_word(self) -> str:
        return self.texts[int(np.argmin(self.is_number))]

    def n_distinct(self) -> int:
        """How many values :meth:`distinct` lists (without writing each as text)."""
        return len(np.unique(self.values)) if self.numeric else len(self.distinct_texts)

    def distinct(self) -> list[str]:
        """The distinct values as category texts, sorted: numbers by value (3 and 3.0 are
        one), words as text."""
        if not self.numeric:
            return sorted(self.distinct_texts)
        return [_canonical(float(v)) for v in np.unique(self.values)]


def counts_like(v: np.ndarray) -> bool:
    """Whether integers ``v [M]`` (more distinct values than a category's) read as counts:
    non-negative, and reaching down to within one standard deviation of zero, as event
    counts do (visits, population, bills passed). Integers far from zero for their spread
    are measurements in whole units (ages, years, mg/dL, test scores): their spread given
    the other columns is often smaller than a count's sqrt(mean), which a Poisson or
    negative binomial cannot fit, so they are real or positive columns. Nor is a column
    that leans left (skewness below ``COUNT_SKEW``: the mass near the top of its range, the
    tail toward zero, as an income bracket code 1-24 with most rows at 15-24): a Poisson or
    negative binomial is never left-skewed, and fitted to such a column its imputations
    sit too high; -0.5 leaves room for the sampling noise of a flat column's 0."""
    return bool(v.min() >= 0 and v.min() <= v.std() and _skewness(v) >= COUNT_SKEW)


def zero_inflated_like(v: np.ndarray) -> bool:
    """Whether non-integer numbers ``v [M]`` (more distinct values than a category's) read as
    zero-inflated: none negative and at least ``ZERO_SHARE`` of them exactly 0 (hours of
    overtime, spend, rainfall, a lab value below detection). A density puts no mass on a
    single value, so a Gaussian on such a column either spreads over the zeros and the
    positive values alike or, in a mixture, collapses onto the zeros; a point mass at 0 is
    what the data hold. A tenth is where the zeros are a feature of the column rather than
    a few readings rounded down (breast cancer's concavity: 13 zeros in 569 rows, 2.3 %),
    which stay the real column they were."""
    return bool(v.min() == 0 and (v == 0).mean() >= ZERO_SHARE)


def _infer_kind(table: TextTable, j: int, seen: _Observed) -> str:
    if seen.numeric and not np.isfinite(seen.values).all():
        i = next(i for i, c in enumerate(table.cells[j]) if c and not math.isfinite(float(c)))
        raise DataError(
            f"{table.path}: row {table.lines[i]}, column {j + 1} ({table.names[j]!r}): "
            f"{table.cells[j][i]!r} is not finite"
        )
    distinct = seen.n_distinct()
    if distinct == 2:
        return "binary"
    if not seen.numeric:
        limit = min(MAX_CATEGORIES, max(2, len(seen.texts) // 2))
        if distinct > limit:
            raise _column_error(
                table,
                j,
                f"fits no type: {distinct} distinct values in {len(seen.texts)} cells, "
                f"and words such as {seen.first_word()!r} (categories need at most {limit}; "
                "free text or an identifier? leave the column out)",
            )
        return "categorical"
    v = seen.values
    if distinct <= MAX_INTEGER_CATEGORIES:
        # Few distinct numbers, integers or not (17.5, 22, 27 years: coded brackets), are
        # codes: a density on them would be spikes of ever smaller width.
        return "categorical"
    if (v == np.round(v)).all() and counts_like(v):
        return "count"
    if zero_inflated_like(v):
        return "zero-inflated"
    if v.min() > 0 and _skewness(v) > POSITIVE_SKEW:
        return "positive"
    return "real"


def _check_kind(table: TextTable, j: int, kind: str, seen: _Observed) -> None:
    """An overridden type must fit the column's values."""
    if kind in ("real", "positive", "zero-inflated", "count", "poisson", "ordinal"):
        if not seen.numeric:
            hint = " (an ordinal's levels are numbers: write the words as numbers in their order)"
            raise _column_error(
                table,
                j,
                f"type {kind}: {seen.first_word()!r} is not a number"
                + (hint if kind == "ordinal" else ""),
            )
        v = seen.values
        if not np.isfinite(v).all():
            raise _column_error(table, j, f"type {kind}: it holds infinite values")
        if kind == "positive" and v.min() <= 0:
            raise _column_error(
                table, j, f"type positive: {v.min():g} is not > 0 (zero-inflated allows zeros)"
            )
        if kind == "zero-inflated" and v.min() < 0:
            raise _column_error(table, j, f"type zero-inflated: {v.min():g} is not >= 0")
        if kind in ("count", "poisson") and ((v != np.round(v)) | (v < 0)).any():
            bad = v[(v != np.round(v)) | (v < 0)][0]
            raise _column_error(table, j, f"type {kind}: {bad:g} is not an integer >= 0")
        if kind == "ordinal" and seen.n_distinct() > MAX_CATEGORIES:
            raise _column_error(
                table,
                j,
                f"type ordinal: {seen.n_distinct()} distinct values, more than the "
                f"{MAX_CATEGORIES} levels an ordinal column may have",
            )
    if kind == "binary":
        distinct = seen.n_distinct()
        if distinct != 2:
            raise _column_error(table, j, f"type binary: {distinct} distinct values, not 2")


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
        seen = _Observed.of(table.cells[j])
        if not seen.texts:
            raise _column_error(table, j, "every cell is missing")
        texts = iter(seen.distinct_texts)
        key = category_key(next(texts), True)
        if all(category_key(t, True) == key for t in texts):  # stops at the first other value
            raise _column_error(
                table, j, f"a single observed value ({seen.texts[0]!r}): nothing to model"
            )
        if name in overrides:
            kind = overrides[name]
            _check_kind(table, j, kind, seen)
        else:
            kind = _infer_kind(table, j, seen)
        column = TableColumn(name=name, kind=kind)
        if kind in ("binary", "categorical"):
            column.categories = seen.distinct()
        elif kind == "ordinal":
            levels, index = np.unique(seen.values, return_inverse=True)
            column.levels = [float(v) for v in levels]
            column.low, column.high = column.levels[0], column.levels[-1]
            column.loc, column.scale = float(index.mean()), float(index.std()) or 1.0
        else:
            column.low, column.high = float(seen.values.min()), float(seen.values.max())
        if kind in ("real", "positive", "zero-inflated"):
            v = seen.values
            if kind != "real":  # the log of the positive values (a zero has its own mass)
                v = np.log(v[v > 0]) if (v > 0).any() else np.zeros(1)
            column.loc, column.scale = float(v.mean()), float(v.std()) or 1.0
        schema.append(column)
    return schema


def schema_lines(schema: list[TableColumn]) -> list[str]:
    """The schema as a small text table: column, type, likelihood, what it holds."""
    heads = {
        "real": "Gaussian, learned scale",
        "positive": "log-normal",
        "zero-inflated": "mass at 0 + log-normal",
        "count": "negative binomial",
        "poisson": "Poisson",
        "ordinal": "ordered logit",
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
        elif c.kind == "zero-inflated":
            values = f"0, or v > 0 with log: mean {c.loc:.4g}, sd {c.scale:.4g}"
        elif c.kind == "ordinal":
            shown = ", ".join(f"{v:g}" for v in c.levels[:6]) + (
                ", ..." if len(c.levels) > 6 else ""
            )
            values = f"{len(c.levels)} ordered levels: {shown}"
        elif c.kind == "real":
            values = f"mean {c.loc:.4g}, sd {c.scale:.4g}"
        else:
            values = "integers >= 0"
        rows.append((c.name, c.kind, heads[c.kind], values))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  " + "  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    if any(c.kind == "zero-inflated" for c in schema):
        lines.append(
            "  zero-inflated: a cell of 0 counts log P(0), a probability; a cell v > 0 counts "
            "log(1 - P(0)) + the log-normal's log-density, per unit of v"
        )
    return lines
