"""pandas DataFrames as mixed-type tables, and model values back in a DataFrame's own types.

A DataFrame becomes the same :class:`~vaekit.data.table_schema.TextTable` a CSV file
becomes (:func:`frame_table`), so the schema inference, the encoding and their errors are the
command line's. A missing cell is what ``pandas.isna`` calls missing (None, NaN, NaT, NA); a
number's text is its shortest exact form, a boolean's ``True``/``False``, anything else its
``str`` (stripped, as the CSV reader strips cells).

:class:`FrameTypes` records what a training DataFrame held, per modelled column: its dtype,
and for a binary or categorical column the user's own value behind each category (the
integer 3, the string ``"a"``, the boolean True), so that decoded, sampled and imputed values
come back as those values in that dtype. pandas is imported by the caller: this module only
touches the objects it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.data.errors import DataError
from vaekit.data.table_schema import TextTable, category_key, infer_schema, number
from vaekit.data.tables import encode, nearest_level
from vaekit.settings import TableColumn

FRAME_NAME = "DataFrame"  # what errors call the table (no file behind it)


def is_frame(X: Any) -> bool:
    """Whether ``X`` is a pandas DataFrame (without importing pandas)."""
    return type(X).__name__ == "DataFrame" and hasattr(X, "columns") and hasattr(X, "iloc")


def numbers_only(frame: Any) -> bool:
    """Whether every column is of a numeric (not boolean) dtype and every cell finite: such
    a frame is clean without reading it cell by cell."""
    import pandas as pd

    kinds = [
        pd.api.types.is_numeric_dtype(d) and not pd.api.types.is_bool_dtype(d) for d in frame.dtypes
    ]
    return all(kinds) and bool(np.isfinite(frame.to_numpy(dtype=np.float64, na_value=np.nan)).all())


def _text(value: Any) -> str | None:
    import pandas as pd

    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value).strip()


def frame_table(frame: Any, name: str = FRAME_NAME) -> TextTable:
    """A DataFrame's cells as text, ``cells[j][i]`` (None where missing), as the CSV reader
    gives them; ``clean``: every cell observed and a finite number."""
    names = [str(c) for c in frame.columns]
    if len(frame) == 0 or not names:
        raise DataError(f"{name}: the table is empty ({len(frame)} rows, {len(names)} columns)")
    cells = [[_text(v) for v in frame.iloc[:, j].tolist()] for j in range(len(names))]
    lines = list(range(1, len(frame) + 1))
    table = TextTable(Path(name), names, cells, None, None, lines)
    table.clean = all(
        cell is not None and (v := number(cell)) is not None and math.isfinite(v)
        for column in cells
        for cell in column
    )
    return table


@dataclass
class FrameTypes:
    """Per modelled column (by name): ``dtypes`` the training column's dtype,
    ``values`` for binary and categorical columns the user's value behind each category text;
    ``labels`` the DataFrame's own column labels, in the schema's order."""

    dtypes: dict[str, Any]
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: list[Any] = field(default_factory=list)

    @classmethod
    def of(cls, frame: Any, schema: list[TableColumn]) -> FrameTypes:
        where = {str(c): c for c in frame.columns}
        dtypes, values = {}, {}
        for column in schema:
            series = frame[where[column.name]]
            dtypes[column.name] = series.dtype
            if column.categories:
                numeric = all(number(c) is not None for c in column.categories)
                seen: dict[str, Any] = {}
                for v in series.tolist():
                    text = _text(v)
                    if text is not None:
                        seen.setdefault(category_key(text, numeric), _plain(v))
                values[column.name] = seen
        return cls(dtypes, values, [where[c.name] for c in schema])

    @classmethod
    def of_schema(cls, schema: list[TableColumn]) -> FrameTypes:
        """The types a table read from a file has: float64 reals, int64 counts, category
        texts as strings."""
        kinds = {"count": "int64", "poisson": "int64"}
        kinds |= dict.fromkeys(("real", "positive", "zero-inflated", "ordinal"), "float64")
        return cls(
            {c.name: kinds.get(c.kind, "object") for c in schema}, {}, [c.name for c in schema]
        )

    def to_dict(self) -> dict[str, Any]:
        """As JSON holds it (:meth:`from_dict` reads it back)."""
        dtypes = {
            name: {"categories": [_plain(c) for c in d.categories], "ordered": bool(d.ordered)}
            if hasattr(d, "categories")
            else str(d)
            for name, d in self.dtypes.items()
        }
        return {"dtypes": dtypes, "values": self.values, "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameTypes:
        import pandas as pd

        dtypes = {
            name: pd.CategoricalDtype(d["categories"], d["ordered"])
            if isinstance(d, dict)
            else pd.api.types.pandas_dtype(d)
            for name, d in data["dtypes"].items()
        }
        return cls(dtypes, data.get("values") or {}, list(data.get("labels") or dtypes))

    def series(self, column: TableColumn, values: np.ndarray) -> Any:
        """``values [N]`` of one column (a category index for binary and categorical
        columns, else a number in the column's units) as a pandas Series of the training
        column's dtype: the user's own category values, integers rounded for an integer
        dtype."""
        import pandas as pd

        dtype = pd.api.types.pandas_dtype(self.dtypes[column.name])  # a name, or a dtype
        if column.categories:
            own = self.values.get(column.name, {})
            cells = [own.get(t, t) for t in (column.categories[int(i)] for i in values)]
            return pd.Series(cells, dtype=object).astype(dtype)
        numbers = np.asarray(values, dtype=np.float64)
        if column.kind == "ordinal":  # a predicted mean may fall between two levels
            numbers = nearest_level(column, numbers)
        if column.kind in ("count", "poisson") or pd.api.types.is_integer_dtype(dtype):
            numbers = np.rint(numbers)
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            return pd.Series(numbers).astype(dtype)
        return pd.Series(numbers, dtype=object)

    def frame(self, schema: list[TableColumn], values: list[np.ndarray]) -> Any:
        """Per-column values (as :meth:`series` takes them) as a DataFrame with the training
        columns, in order, and their dtypes."""
        import pandas as pd

        return pd.DataFrame(
            {
                label: self.series(c, v)
                for label, c, v in zip(self.labels, schema, values, strict=True)
            }
        )

    def fill(
        self, frame: Any, schema: list[TableColumn], mask: np.ndarray, values: list[np.ndarray]
    ) -> Any:
        """A copy of ``frame`` whose modelled cells with ``mask [N, C]`` 0 (missing) hold
        ``values[j]``; every other cell is the frame's own, untouched."""
        import pandas as pd

        out = frame.copy()
        where = {str(c): c for c in frame.columns}
        for j, column in enumerate(schema):
            rows = np.flatnonzero(mask[:, j] == 0)
            if rows.size == 0:
                continue
            label = where[column.name]
            filled = self.series(column, np.asarray(values[j])[rows]).to_numpy()
            series = out[label]
            if isinstance(series.dtype, pd.CategoricalDtype):  # set through its values
                new = series.astype(object)
                new.iloc[rows] = filled
                out[label] = new.astype(series.dtype)
            else:  # a column with missing cells holds NaN: float, object or nullable
                new = series.copy()
                new.iloc[rows] = filled
                out[label] = new
        return out


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON can hold."""
    return value.item() if isinstance(value, np.generic) else value


def frame_schema(
    frame: Any, column_types: dict[str, str] | None = None
) -> tuple[TextTable, list[TableColumn]] | None:
    """The mixed-type table a DataFrame holds and its schema (``column_types`` override
    inferred types, as ``--column-type`` does), or None where the frame takes the numeric
    path: every cell a finite number and no column types given, as for a clean CSV file."""
    if not is_frame(frame) or (not column_types and numbers_only(frame)):
        return None
    table = frame_table(frame)
    if table.clean and not column_types:
        return None
    check_frame_columns(frame)
    return table, infer_schema(table, column_types)


def encode_frame(
    frame: Any, schema: list[TableColumn], unknown_categories: str = "error"
) -> np.ndarray:
    """A DataFrame's rows encoded under a trained ``schema``, ``[N, F + C]`` float64
    (features, then the observed mask; ``vaekit.data.tables.encode``, with its
    ``unknown_categories``): its columns are matched by name and other columns ignored."""
    if not is_frame(frame):
        raise ValueError(
            "this estimator models a mixed-type table: give a pandas DataFrame with the "
            f"columns {', '.join(repr(c.name) for c in schema)}"
        )
    check_frame_columns(frame)
    return encode(frame_table(frame), schema, unknown_categories)


def check_frame_columns(frame: Any, name: str = FRAME_NAME) -> None:
    """Column labels must stay distinct as text: the schema matches columns by name."""
    names = [str(c) for c in frame.columns]
    duplicate = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if duplicate is not None:
        raise DataError(f"{name}: duplicate column name {duplicate!r}")
