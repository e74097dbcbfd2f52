"""The decoded table and column arrays, and the row/column conversions every protocol shares.

A :class:`Table` maps a column name to its values exactly as the payload sent them;
``column_array`` turns one column into an array without changing a value. The helpers below
turn rows (objects or lists) and columns into a table, and a DataFrame back into JSON-safe
columns, rows or records: each protocol module composes them into its own shape.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from deploykit.errors import PayloadError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Table", "column_array", "jsonable"]

_NONE = type(None)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON-safe Python: numpy scalars and arrays as Python values, NaN and
    infinities as None, pandas NA/NaT as None, dates and times as ISO 8601 strings."""
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if isinstance(value, float):  # also numpy.float64, a float subclass
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):  # also pandas.Timestamp
        return None if kind.__name__ == "NaTType" else value.isoformat()
    name = kind.__name__
    if name in ("NAType", "NaTType"):
        return None
    if name in ("datetime64", "timedelta64"):  # numpy scalars: ISO 8601 in their own precision
        text = str(value)
        return None if text == "NaT" else text
    if name == "ndarray" and value.dtype.kind in "mM":
        return [None if v == "NaT" else v for v in value.astype(str).tolist()]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, pandas Series
    if tolist is not None:
        return jsonable(tolist())
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (set, frozenset)):
        return [jsonable(v) for v in value]
    import decimal

    if isinstance(value, decimal.Decimal):
        return None if not value.is_finite() else float(value)
    return str(value)


def _pd() -> Any:
    import pandas as pd

    return pd


def _np() -> Any:
    import numpy as np

    return np


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Table:
    """Decoded rows held as columns: ``columns`` maps a name to a list or 1-D array of values,
    all ``rows`` long, exactly as the payload sent them (no value cast, no dtype guessed)."""

    __slots__ = ("columns", "index", "rows")

    def __init__(self, columns: dict[str, Any], rows: int, index: list[Any] | None = None) -> None:
        self.columns = columns
        self.rows = rows
        self.index = index

    def __repr__(self) -> str:
        return f"Table({self.rows} rows, columns {list(self.columns)})"

    def __len__(self) -> int:
        return self.rows

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Table:
        """A DataFrame's columns as arrays (numpy dtypes kept; pandas NA becomes None)."""
        if frame.columns.duplicated().any():
            dup = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
            raise PayloadError(f"the table has duplicate columns {dup}; give every column a unique name")
        np = _np()
        cols: dict[str, Any] = {}
        for name in frame.columns:
            series = frame[name]
            dtype = series.dtype
            if isinstance(dtype, np.dtype):
                cols[str(name)] = series.to_numpy()
            elif dtype.kind in "iub":  # Int64 / boolean: the schema check reads the mask
                cols[str(name)] = series.array if series.isna().any() else series.to_numpy(dtype=dtype.numpy_dtype)
            elif dtype.kind == "f":
                cols[str(name)] = series.to_numpy(dtype=np.float64, na_value=np.nan)
            elif dtype.kind == "M":  # tz-aware date-times stay a DatetimeArray
                cols[str(name)] = series.array
            else:  # string, category, ...: plain objects, NA as None
                cols[str(name)] = series.to_numpy(dtype=object, na_value=None)
        index = None if _is_default_index(frame.index) else frame.index.tolist()
        return cls(cols, len(frame), index)

    def to_frame(self) -> pd.DataFrame:
        """The table as a DataFrame, each column in the narrowest dtype that keeps its values
        unchanged: ints -> int64, ints with nulls -> Int64, floats -> float64, bools -> bool,
        strings -> object; a column of mixed kinds stays object (41 and 41.7 are not merged)."""
        pd = _pd()
        frame = pd.DataFrame({name: column_array(values) for name, values in self.columns.items()},
                             copy=False)
        if not self.columns:
            frame = pd.DataFrame(index=range(self.rows))
        if self.index is not None and len(self.index) == self.rows:
            frame.index = self.index
        return frame


def _is_default_index(index: Any) -> bool:
    pd = _pd()
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def column_array(values: Any) -> Any:
    """One column's values as an array without changing any value (see ``Table.to_frame``)."""
    np = _np()
    if not isinstance(values, list):
        return values
    types = set(map(type, values))
    if types == {int}:
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            return _object_array(values)
    if types == {float} or types == {float, _NONE}:
        return np.array([math.nan if v is None else v for v in values] if _NONE in types else values,
                        dtype=np.float64)
    if types == {bool}:
        return np.array(values, dtype=bool)
    if types == {int, _NONE}:
        try:
            return _pd().array(values, dtype="Int64")
        except (OverflowError, TypeError, ValueError):
            return _object_array(values)
    if types == {bool, _NONE}:
        return _pd().array(values, dtype="boolean")
    return _object_array(values)


def _object_array(values: Sequence[Any]) -> Any:
    np = _np()
    out = np.empty(len(values), dtype=object)
    out[:] = values  # never lets numpy turn a list of lists into a 2-D array
    return out


# -- rows and columns to a table ------------------------------------------------------------

def _rows_to_table(rows: Any, columns: Sequence[str] | None, what: str) -> Table:
    """Rows are a list of objects (records) or a list of lists (positional, needs columns)."""
    if not isinstance(rows, list):
        raise PayloadError(f"{what} must be a list of rows, got {type(rows).__name__}: {_short(rows)}; "
                           "send [{\"column\": value, ...}, ...] or [[value, ...], ...] with column names")
    if not rows:
        return Table({str(c): [] for c in columns or []}, 0)
    first = rows[0]
    if type(first) is dict:
        return _records_to_table(rows, what)
    if type(first) is list:
        if not columns:
            raise PayloadError(
                f"{what} holds rows as lists but no column names were given; "
                "send objects (records) or name the columns (dataframe_split 'columns', Watson 'fields')"
            )
        return _lists_to_table(rows, [str(c) for c in columns], what)
    raise PayloadError(f"{what}[0] is {_short(first)} ({type(first).__name__}); "
                       "every row must be an object {\"column\": value} or a list of values")


def _records_to_table(rows: list[Any], what: str) -> Table:
    names = list(rows[0])
    if set(map(type, rows)) == {dict}:
        from operator import itemgetter

        try:  # every row has row 0's keys, and (by the key count) no others: the fast path
            cols = {str(k): list(map(itemgetter(k), rows)) for k in names}
            if sum(map(len, rows)) == len(names) * len(rows):
                return Table(cols, len(rows))
        except KeyError:
            pass
    seen: dict[Any, None] = {}
    for i, row in enumerate(rows):
        if type(row) is not dict:
            raise PayloadError(f"{what}[{i}] is {_short(row)}; every row must be an object like row 0")
        for key in row:
            seen.setdefault(key, None)
    # A key absent from a row becomes None; the schema check reports it as a null.
    return Table({str(k): [r.get(k) for r in rows] for k in seen}, len(rows))


def _lists_to_table(rows: list[Any], names: list[str], what: str) -> Table:
    width = len(names)
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {width}:
        for i, row in enumerate(rows):
            if type(row) is not list or len(row) != width:
                got = f"{len(row)} values" if isinstance(row, list) else _short(row)
                raise PayloadError(f"{what}[{i}] has {got}; expected {width} (columns {names})")
    if len(set(names)) != width:
        raise PayloadError(f"{what}: column names {names} repeat a name; give every column a unique name")
    return Table(dict(zip(names, map(list, zip(*rows)))), len(rows))


def _columns_to_table(cols: Mapping[str, Any], what: str) -> Table:
    """``{"col": [values...]}`` (columnar), or ``{"col": value}`` (one row)."""
    if not cols:
        raise PayloadError(f"{what} is an empty object; send at least one column")
    lists = [type(v) is list for v in cols.values()]
    if not any(lists):
        return Table({str(k): [v] for k, v in cols.items()}, 1)
    if not all(lists):
        scalars = [k for k, v in cols.items() if type(v) is not list]
        raise PayloadError(f"{what} mixes lists and single values (columns {scalars[:5]} are not lists); "
                           "send every column as a list with one value per row")
    lengths = {str(k): len(v) for k, v in cols.items()}
    if len(set(lengths.values())) > 1:
        raise PayloadError(f"{what}: columns have different lengths {lengths}; every column needs one value per row")
    return Table({str(k): v for k, v in cols.items()}, next(iter(lengths.values())))


def _concat_tables(tables: list[Table], what: str) -> Table:
    if len(tables) == 1:
        return tables[0]
    names = list(tables[0].columns)
    for i, t in enumerate(tables[1:], 1):
        if list(t.columns) != names:
            raise PayloadError(f"{what}[{i}] has fields {list(t.columns)} but {what}[0] has {names}; "
                               "send every block with the same fields, or one block")
    cols = {n: [v for t in tables for v in t.columns[n]] for n in names}
    return Table(cols, sum(t.rows for t in tables))


# -- a frame to JSON-safe columns, rows and records -----------------------------------------

def _iso(series: Any) -> list[Any]:
    return [None if v is None or str(v) == "NaT" else v.isoformat() for v in series.astype(object).tolist()]


def _column_values(series: Any) -> list[Any]:
    """A column as JSON-safe Python values (vectorised for numpy dtypes)."""
    np = _np()
    kind = series.dtype.kind
    if kind in "iub" and isinstance(series.dtype, np.dtype):
        return series.tolist()  # type: ignore[no-any-return]
    if kind == "f" and series.dtype == np.float64:
        arr = series.to_numpy()
        values = arr.tolist()
        if np.isfinite(arr).all():
            return values  # type: ignore[no-any-return]
        return [v if math.isfinite(v) else None for v in values]
    if kind == "M":
        return _iso(series)
    values = series.astype(object).tolist() if kind != "O" else series.tolist()
    if set(map(type, values)) <= {str, int, bool, _NONE}:
        return values  # type: ignore[no-any-return]
    return [jsonable(v) for v in values]


def _columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
    return {str(c): _column_values(frame.iloc[:, i]) for i, c in enumerate(frame.columns)}


def _rows(frame: pd.DataFrame) -> list[list[Any]]:
    cols = list(_columns(frame).values())
    return [list(r) for r in zip(*cols)] if cols else [[] for _ in range(len(frame))]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    cols = _columns(frame)
    names = list(cols)
    return [dict(zip(names, r)) for r in zip(*cols.values())] if names else [{} for _ in range(len(frame))]
