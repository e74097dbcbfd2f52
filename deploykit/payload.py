"""Payload codecs: every wire format deploykit knows, to and from one table, plus Predictions.

Request formats (``FORMATS``): ``records`` (one object or a list of objects), MLflow's
``dataframe_split`` / ``dataframe_records`` / ``instances`` / ``inputs``, Watson's
``input_data``, Open Inference Protocol V2 (``v2``: one tensor per column or one 2-D tensor;
``v2_matrix`` encodes the 2-D form) and ``csv`` with a header line.

``decode_table`` turns a payload into a :class:`Table` (column name -> values, exactly as
sent: no value is cast); ``decode`` gives the same as a pandas DataFrame, with each column in
the narrowest dtype that holds its values unchanged (ints stay ints, an int column with nulls
becomes ``Int64``). The schema check (``Schema.check`` / ``Schema.validate``) decides what a
model accepts. ``encode`` is the reverse, and :class:`Predictions` is the one type every
protocol's response decodes into. numpy and pandas are imported on first use, never at import.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deploykit.errors import PayloadError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FORMATS",
    "Format",
    "Predictions",
    "Table",
    "column_array",
    "decode",
    "decode_table",
    "decode_v2_binary",
    "detect_format",
    "encode",
    "jsonable",
    "register",
]

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


# -- the decoded table ---------------------------------------------------------------------

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


# -- formats and the registry --------------------------------------------------------------

@dataclass
class Format:
    """One wire format: a name, a test that recognises a parsed payload, a decoder and an encoder.

    ``decode(obj, columns) -> DataFrame`` and ``encode(frame) -> payload`` are what a plugin
    provides; built-in formats also give ``decode_table`` (a faster path to a :class:`Table`).
    ``media_type`` is what ``encode`` produces (``text/csv`` for CSV).
    """

    name: str
    detect: Callable[[Any], bool]
    decode: Callable[[Any, Sequence[str] | None], pd.DataFrame]
    encode: Callable[[pd.DataFrame], Any]
    description: str = ""
    decode_table: Callable[..., Table] | None = None
    media_type: str = "application/json"


FORMATS: dict[str, Format] = {}

# Formats that match very general shapes; every other format is tried before them.
_FALLBACKS = ("records", "csv")


def register(fmt: Format) -> None:
    """Add (or replace) a format; the ``deploykit_register_formats`` hook calls this for plugins."""
    if not isinstance(fmt, Format):
        raise TypeError(f"register() takes a deploykit.payload.Format, got {type(fmt).__name__}: {_short(fmt)}")
    FORMATS[fmt.name] = fmt


def _detect_order() -> list[Format]:
    return [f for f in FORMATS.values() if f.name not in _FALLBACKS] + \
        [FORMATS[n] for n in _FALLBACKS if n in FORMATS]


# -- decoders ------------------------------------------------------------------------------

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


def _table_records(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    if isinstance(obj, dict):
        return _columns_to_table(obj, "the record")
    return _rows_to_table(obj, columns, "records")


def _table_split(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    split = obj["dataframe_split"]
    if not isinstance(split, dict) or "data" not in split:
        raise PayloadError(
            f"dataframe_split must be an object with 'columns' and 'data', got {_short(split)}; "
            'send {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}'
        )
    cols = split.get("columns") or columns
    if cols is not None and (not isinstance(cols, list) or not all(isinstance(c, (str, int)) for c in cols)):
        raise PayloadError(f"dataframe_split.columns must be a list of names, got {_short(cols)}")
    table = _rows_to_table(split["data"], cols, "dataframe_split.data")
    index = split.get("index")
    if isinstance(index, list) and len(index) == table.rows and all(isinstance(i, (str, int)) for i in index):
        table.index = index
    return table


def _table_df_records(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    return _rows_to_table(obj["dataframe_records"], columns, "dataframe_records")


def _table_instances(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    inst = obj["instances"]
    if isinstance(inst, dict):
        return _columns_to_table(inst, "instances")
    return _rows_to_table(inst, columns, "instances")


def _table_inputs(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    inputs = obj["inputs"]
    if isinstance(inputs, dict):
        return _columns_to_table(inputs, "inputs")
    return _rows_to_table(inputs, columns, "inputs")


def _table_watson(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    data = obj["input_data"]
    if not isinstance(data, list) or not data or not all(isinstance(part, dict) for part in data):
        raise PayloadError(
            f"input_data must be a non-empty list like [{{\"fields\": [...], \"values\": [[...]]}}], got {_short(data)}"
        )
    tables = []
    for i, part in enumerate(data):
        if "values" not in part:
            raise PayloadError(f"input_data[{i}] has no 'values'; add the rows as a list of lists")
        fields = part.get("fields") or columns
        if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)):
            raise PayloadError(f"input_data[{i}].fields must be a list of column names, got {_short(fields)}")
        tables.append(_rows_to_table(part["values"], fields, f"input_data[{i}].values"))
    return _concat_tables(tables, "input_data")


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


# -- Open Inference Protocol V2 ------------------------------------------------------------

_V2_NUMPY = {"BOOL": "bool", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
             "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
             "FP16": "float16", "FP32": "float32", "FP64": "float64", "BYTES": "object"}


def _is_v2(obj: Any) -> bool:
    inputs = obj.get("inputs") if type(obj) is dict else None
    if not isinstance(inputs, list) or not inputs:
        return False
    first = inputs[0]
    return isinstance(first, dict) and "name" in first and "datatype" in first and \
        ("data" in first or "binary_data_size" in (first.get("parameters") or {}))


def _flat(data: Any) -> list[Any]:
    """Row-major values of a nested list (V2 allows nested or flat ``data``)."""
    if not isinstance(data, list):
        return [data]
    if not any(type(v) is list for v in data):
        return data
    out: list[Any] = []
    for v in data:
        out.extend(_flat(v) if type(v) is list else [v])
    return out


def _v2_values(t: Mapping[str, Any], i: int) -> tuple[Any, list[int], str]:
    """A tensor's flat values (a list, or a numpy array for binary data), shape and datatype."""
    name = t.get("name") if isinstance(t, dict) else None
    if not isinstance(t, dict) or not isinstance(name, str) or "datatype" not in t:
        raise PayloadError(f"V2 inputs[{i}] needs 'name', 'shape', 'datatype' and 'data', got {_short(t)}")
    dtype = str(t["datatype"]).upper()
    if dtype not in _V2_NUMPY:
        raise PayloadError(f"V2 input {name!r} has datatype {t['datatype']!r}; use one of {', '.join(_V2_NUMPY)}")
    if "data" not in t:
        raise PayloadError(f"V2 input {name!r} has no 'data'; send the values, or binary data with "
                           "parameters.binary_data_size and the Inference-Header-Content-Length header")
    data = t["data"]
    values = data if type(data).__name__ == "ndarray" else _flat(data)
    shape = t.get("shape")
    if shape is None:
        shape = [len(values)]
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise PayloadError(f"V2 input {name!r} has shape {_short(shape)}; send a list of non-negative sizes like [2, 1]")
    if math.prod(shape) != len(values):
        raise PayloadError(f"V2 input {name!r}: shape {shape} needs {math.prod(shape)} values, got {len(values)}")
    if type(values).__name__ != "ndarray":
        values = _v2_check(values, dtype, name)
    return values, shape, dtype


_V2_ALLOWED: dict[str, tuple[type, ...]] = {"BOOL": (bool,), "INT": (int,), "UINT": (int,), "FP": (int, float),
                                            "BYTES": (str, bytes)}


def _v2_check(values: list[Any], dtype: str, name: str) -> list[Any]:
    """The JSON values of a tensor must be of its datatype (nulls pass to the schema check)."""
    family = "UINT" if dtype.startswith("UINT") else "INT" if dtype.startswith("INT") else \
        "FP" if dtype.startswith("FP") else dtype
    allowed = set(_V2_ALLOWED[family]) | {_NONE}
    if family == "BYTES":
        # Strings (or bytes) by the spec; other JSON scalars are let through to the schema check,
        # so one 2-D BYTES tensor can carry a table of mixed column types.
        return [v.decode("utf-8", "replace") if type(v) is bytes else v for v in values] \
            if bytes in set(map(type, values)) else values
    if set(map(type, values)) <= allowed and \
            (family != "UINT" or all(v is None or v >= 0 for v in values)):
        return values
    for v in values:
        if family == "UINT" and type(v) is int and v < 0:
            raise PayloadError(f"V2 input {name!r} is {dtype} but holds {v}; send whole numbers >= 0, "
                               "or declare INT64")
        if type(v) not in allowed:
            hint = {"BOOL": "true or false", "INT": "whole numbers", "UINT": "whole numbers >= 0",
                    "FP": "numbers"}[family]
            raise PayloadError(f"V2 input {name!r} is {dtype} but holds {_short(v)} ({type(v).__name__}); "
                               f"send {hint}, or declare the datatype that matches the values")
    return values


def _v2_typed(values: Any, dtype: str) -> Any:
    """Typed array of a tensor's values when they are complete; a list when nulls are present."""
    if type(values).__name__ == "ndarray" or dtype == "BYTES":
        return values
    np = _np()
    if _NONE in set(map(type, values)):
        return values
    if dtype.startswith("FP"):
        return np.array(values, dtype=np.float64)
    if dtype.startswith(("INT", "UINT")):
        try:
            return np.array(values, dtype=_V2_NUMPY[dtype])
        except OverflowError:
            return values
    return np.array(values, dtype=bool)


def _table_v2(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    """One tensor per column (shape [n] or [n, 1]), or one 2-D tensor [n, k] with column names."""
    tensors = obj["inputs"]
    if not isinstance(tensors, list) or not tensors:
        raise PayloadError("V2 'inputs' must be a non-empty list of tensors {name, shape, datatype, data}")
    parsed = [_v2_values(t, i) for i, t in enumerate(tensors)]
    if len(tensors) == 1:
        values, shape, dtype = parsed[0]
        t = tensors[0]
        names = (t.get("parameters") or {}).get("columns") or columns
        known = set(columns or [])
        if len(shape) == 2 and (shape[1] > 1 or (t["name"] not in known and names and len(names) == 1)):
            rows, width = shape
            if not names or len(names) != width:
                raise PayloadError(
                    f"V2 input {t['name']!r} is a {rows}x{width} tensor but the column names are unknown "
                    f"(got {_short(names)}); send one tensor per column named after it"
                )
            if type(values).__name__ == "ndarray":
                matrix = values.reshape(rows, width)
                split = {str(n): matrix[:, j] for j, n in enumerate(names)}
            else:
                split = {str(n): values[j::width] for j, n in enumerate(names)}
            return Table({k: _v2_typed(v, dtype) for k, v in split.items()}, rows)
    cols: dict[str, Any] = {}
    for (values, shape, dtype), t in zip(parsed, tensors):
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise PayloadError(f"V2 input {t['name']!r} has shape {shape}; a column tensor has shape [n] or [n, 1]")
        if t["name"] in cols:
            raise PayloadError(f"V2 input {t['name']!r} appears twice; send each column once")
        cols[t["name"]] = _v2_typed(values, dtype)
    lengths = {k: len(v) for k, v in cols.items()}
    if len(set(lengths.values())) > 1:
        raise PayloadError(f"V2 inputs have different lengths {lengths}; every column needs one value per row")
    return Table(cols, next(iter(lengths.values())))


def decode_v2_binary(body: bytes, header_length: int) -> Any:
    """Parse a V2 request that uses the binary tensor extension (what ``tritonclient`` sends by
    default): a JSON header of ``header_length`` bytes, then each input's raw bytes in order."""
    import orjson

    if not 0 < header_length <= len(body):
        raise PayloadError(f"Inference-Header-Content-Length is {header_length} but the body has {len(body)} bytes; "
                           "send the length of the JSON header")
    try:
        header = orjson.loads(body[:header_length])
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"the V2 JSON header is not valid JSON ({exc}); check Inference-Header-Content-Length") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise PayloadError("the V2 JSON header needs an 'inputs' list of tensors")
    np = _np()
    offset = header_length
    for t in header["inputs"]:
        size = (t.get("parameters") or {}).get("binary_data_size") if isinstance(t, dict) else None
        if size is None:
            continue
        name, dtype = t.get("name"), str(t.get("datatype", "")).upper()
        if type(size) is not int or size < 0 or offset + size > len(body):
            raise PayloadError(f"V2 input {name!r}: binary_data_size {size!r} runs past the end of the body "
                               f"({len(body) - offset} bytes left)")
        raw = body[offset:offset + size]
        offset += size
        if dtype == "BYTES":
            t["data"] = _bytes_tensor(raw, name)
        elif dtype in _V2_NUMPY:
            item = np.dtype(_V2_NUMPY[dtype]).newbyteorder("<")
            if size % item.itemsize:
                raise PayloadError(f"V2 input {name!r}: {size} bytes is not a whole number of {dtype} values")
            t["data"] = np.frombuffer(raw, dtype=item).astype(item.newbyteorder("="))
        else:
            raise PayloadError(f"V2 input {name!r} has datatype {t.get('datatype')!r}; use one of {', '.join(_V2_NUMPY)}")
    if offset != len(body):
        raise PayloadError(f"the V2 body has {len(body) - offset} bytes after the last binary input; "
                           "check each input's binary_data_size")
    return header


def _bytes_tensor(raw: bytes, name: Any) -> list[str]:
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise PayloadError(f"V2 input {name!r}: BYTES data ends inside a 4-byte length prefix")
        n = int.from_bytes(raw[pos:pos + 4], "little")
        pos += 4
        if pos + n > len(raw):
            raise PayloadError(f"V2 input {name!r}: a BYTES element of {n} bytes runs past its data")
        out.append(raw[pos:pos + n].decode("utf-8", "replace"))
        pos += n
    return out


# -- CSV -----------------------------------------------------------------------------------

def _table_csv(obj: Any, columns: Sequence[str] | None, types: Mapping[str, str] | None = None) -> Table:
    """CSV with a header line. An empty field is null (CSV cannot tell it from an empty string);
    with ``types``, a string column keeps text such as "NA" or "123" as it is."""
    import csv
    import io
    import warnings

    pd = _pd()
    text = obj.decode("utf-8", "replace") if isinstance(obj, (bytes, bytearray)) else obj
    if not text.strip():
        raise PayloadError("the CSV payload is empty; send a header line and at least one row")
    try:
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as exc:
        raise PayloadError(f"the CSV header line could not be parsed ({exc}); send a header line of "
                           "comma-separated column names") from None
    # With one column, a null field is an empty line: it is a row, not a blank line to skip.
    kwargs: dict[str, Any] = {"skip_blank_lines": len(header) != 1}
    if types:
        try:
            from pandas._libs.parsers import STR_NA_VALUES  # type: ignore[import-untyped, unused-ignore]
        except ImportError:  # a pandas that moved it: its documented default list
            STR_NA_VALUES = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                             "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
        # A string column keeps "NA", "null" or "123" as text; only an empty field is null.
        kwargs["keep_default_na"] = False
        kwargs["na_values"] = {h: ([""] if types.get(h) == "string" else sorted(STR_NA_VALUES)) for h in header}
        kwargs["dtype"] = {h: object for h in header if types.get(h) == "string"}
    try:
        with warnings.catch_warnings():
            # a row longer than the header would silently become the index, or lose values
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.StringIO(text), float_precision="round_trip", index_col=False, **kwargs)
    except Exception as exc:  # pandas raises several parser error types
        raise PayloadError(f"the CSV payload could not be parsed ({type(exc).__name__}: {exc}); "
                           "send a header line and comma-separated rows") from None
    unnamed = [str(c) for c in frame.columns if str(c).startswith("Unnamed: ")]
    if unnamed:
        raise PayloadError(f"the CSV header has empty column names ({unnamed}); name every column in the first line")
    return Table.from_frame(frame)


def _encode_csv(frame: pd.DataFrame) -> str:
    """RFC 4180 CSV (CRLF line ends, so a field holding a line break is quoted)."""
    out = frame.copy()
    for name in out.columns:
        if "\x00" in str(name):
            raise PayloadError(f"column name {str(name)!r} holds a NUL character, which CSV cannot carry; "
                               "rename the column or send a JSON format")
        if out[name].dtype.kind == "M":
            out[name] = _iso(out[name])
        elif out[name].dtype == object and any(isinstance(v, str) and "\x00" in v for v in out[name].tolist()):
            raise PayloadError(f"column {name!r} holds a NUL character, which CSV cannot carry; "
                               "send this table in a JSON format")
    text: str = out.to_csv(index=False, lineterminator="\r\n", na_rep="")
    return text


# -- encoders ------------------------------------------------------------------------------

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


def _v2_type(series: Any) -> str:
    dtype = series.dtype
    kind = dtype.kind
    if kind == "b":
        return "BOOL"
    if kind == "i":
        return "INT64"
    if kind == "u":
        return "UINT64"
    if kind == "f":
        return "FP32" if getattr(dtype, "itemsize", 8) == 4 else "FP64"
    if kind == "O":
        types = set(map(type, series.dropna().tolist()))
        if types and types <= {bool}:
            return "BOOL"
        if types and types <= {int}:
            return "INT64"
        if types and types <= {int, float}:
            return "FP64"
    return "BYTES"


def _encode_v2(frame: pd.DataFrame) -> dict[str, Any]:
    cols = _columns(frame)
    return {"inputs": [
        {"name": name, "shape": [len(frame)], "datatype": _v2_type(frame.iloc[:, i]), "data": values}
        for i, (name, values) in enumerate(cols.items())
    ]}


def _encode_v2_matrix(frame: pd.DataFrame) -> dict[str, Any]:
    kinds = {_v2_type(frame.iloc[:, i]) for i in range(frame.shape[1])}
    dtype = kinds.pop() if len(kinds) == 1 else "FP64" if kinds <= {"INT64", "FP64", "FP32"} else "BYTES"
    rows = _rows(frame)
    return {"inputs": [{"name": "input-0", "shape": [len(frame), frame.shape[1]], "datatype": dtype,
                        "data": [v for row in rows for v in row],
                        "parameters": {"columns": [str(c) for c in frame.columns]}}]}


def _is_mlflow(key: str) -> Callable[[Any], bool]:
    return lambda o: type(o) is dict and key in o


def _scalar_record(obj: dict[str, Any]) -> bool:
    return bool(obj) and all(type(v) not in (dict, list) for v in obj.values())


def _columnar_record(obj: dict[str, Any]) -> bool:
    return bool(obj) and all(type(v) is list for v in obj.values()) and \
        all(type(x) is not dict for v in obj.values() for x in v[:1])


def _frame_decoder(table_decoder: Callable[..., Table]) -> Callable[[Any, Sequence[str] | None], pd.DataFrame]:
    def decode_frame(obj: Any, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return table_decoder(obj, columns).to_frame()
    return decode_frame


def _builtin(name: str, detect: Callable[[Any], bool], table: Callable[..., Table],
             encoder: Callable[[pd.DataFrame], Any], description: str, media_type: str = "application/json") -> Format:
    return Format(name, detect, _frame_decoder(table), encoder, description, table, media_type)


for _fmt in (
    _builtin("dataframe_split", _is_mlflow("dataframe_split"), _table_split,
             lambda f: {"dataframe_split": {"columns": [str(c) for c in f.columns], "data": _rows(f)}},
             "MLflow: {'dataframe_split': {'columns': [...], 'data': [[...]]}}"),
    _builtin("dataframe_records", _is_mlflow("dataframe_records"), _table_df_records,
             lambda f: {"dataframe_records": _records(f)}, "MLflow: {'dataframe_records': [{...}]}"),
    _builtin("instances", _is_mlflow("instances"), _table_instances,
             lambda f: {"instances": _records(f)}, "MLflow/TF-serving: {'instances': [{...}]}"),
    _builtin("v2", _is_v2, _table_v2, _encode_v2,
             "Open Inference Protocol V2: {'inputs': [{name, shape, datatype, data}]}, one tensor per column"),
    _builtin("v2_matrix", lambda o: False, _table_v2, _encode_v2_matrix,
             "Open Inference Protocol V2, one 2-D tensor [rows, columns] (decoded by 'v2')"),
    _builtin("inputs", _is_mlflow("inputs"), _table_inputs, lambda f: {"inputs": _columns(f)},
             "MLflow: {'inputs': {'col': [...]}} (columns) or {'inputs': [{...}]} (rows)"),
    _builtin("input_data", _is_mlflow("input_data"), _table_watson,
             lambda f: {"input_data": [{"fields": [str(c) for c in f.columns], "values": _rows(f)}]},
             "Watson ML: {'input_data': [{'fields': [...], 'values': [[...]]}]}"),
    _builtin("records", lambda o: type(o) is list or (type(o) is dict and (_scalar_record(o) or _columnar_record(o))),
             _table_records, _records, "one object, a list of objects (one per row), or {column: [values]}"),
    _builtin("csv", lambda o: isinstance(o, (str, bytes, bytearray)), _table_csv, _encode_csv,
             "CSV with a header line", "text/csv"),
):
    register(_fmt)

_KNOWN = "records, dataframe_split, dataframe_records, instances, inputs (MLflow), input_data (Watson), " \
         "a V2 'inputs' tensor list, or CSV"


def detect_format(obj: Any) -> str:
    """Name the format of a parsed payload, or raise PayloadError naming what was seen."""
    for fmt in _detect_order():
        try:
            if fmt.detect(obj):
                return fmt.name
        except Exception:  # a plugin's detect() must not break detection of the others
            continue
    if isinstance(obj, dict):
        raise PayloadError(
            f"payload has top-level keys {sorted(map(str, obj))[:10]}, which no known format uses; send {_KNOWN}"
        )
    raise PayloadError(f"payload is a {type(obj).__name__} ({_short(obj)}); send a JSON object or list: {_KNOWN}")


def _is_array(obj: Any) -> bool:
    return type(obj).__module__ == "numpy" and hasattr(obj, "ndim")


def decode_table(obj: Any, columns: Sequence[str] | None = None, fmt: str | None = None, *,
                 types: Mapping[str, str] | None = None) -> Table:
    """Turn any supported payload into a :class:`Table` without casting a value.

    ``obj`` may be a DataFrame, a numpy array (with ``columns``), a parsed JSON payload of any
    known format, or CSV text. ``columns`` names positional values when the payload does not;
    ``types`` (column -> schema type) lets CSV keep string columns as text; ``fmt`` skips detection.
    """
    pd = _pd() if type(obj).__module__.startswith("pandas") else None
    if pd is not None and isinstance(obj, pd.DataFrame):
        return Table.from_frame(obj)
    if _is_array(obj):
        return _array_table(obj, columns)
    name = fmt or detect_format(obj)
    format_ = FORMATS.get(name)
    if format_ is None:
        raise PayloadError(f"unknown payload format {name!r}; known formats: {', '.join(FORMATS)}")
    if format_.decode_table is not None:
        if name == "csv" and not isinstance(obj, (str, bytes, bytearray)):
            raise PayloadError(f"a CSV payload must be text, got {type(obj).__name__}: {_short(obj)}")
        return format_.decode_table(obj, columns, types)
    try:
        frame = format_.decode(obj, columns)
    except PayloadError:
        raise
    except Exception as exc:  # a plugin decoder: name it in the message
        raise PayloadError(f"format {name!r} could not decode the payload ({type(exc).__name__}: {exc})") from None
    return Table.from_frame(frame)


def _array_table(arr: Any, columns: Sequence[str] | None) -> Table:
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise PayloadError(f"a numpy array of shape {arr.shape} is not a table; pass a 2-D array (rows x columns)")
    if not columns or len(columns) != arr.shape[1]:
        raise PayloadError(f"a numpy array of shape {arr.shape} needs {arr.shape[1]} column names, got {columns!r}")
    return Table({str(c): arr[:, j] for j, c in enumerate(columns)}, arr.shape[0])


def decode(obj: Any, columns: Sequence[str] | None = None, fmt: str | None = None, *,
           types: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Turn any supported payload into a DataFrame (no casts; see ``Table.to_frame`` for dtypes).

    ``obj`` may be a DataFrame (returned as is), a numpy array (with ``columns``), a parsed JSON
    payload of any known format, or CSV text. ``columns`` names positional values when the
    payload does not. ``fmt`` skips detection.
    """
    pd = _pd()
    if isinstance(obj, pd.DataFrame):
        return obj
    name = fmt or (None if _is_array(obj) else detect_format(obj))
    if name is not None and name in FORMATS and FORMATS[name].decode_table is None:
        return FORMATS[name].decode(obj, columns)  # a plugin's own DataFrame decoder
    return decode_table(obj, columns, name, types=types).to_frame()


def encode(frame: Any, fmt: str = "records", columns: Sequence[str] | None = None) -> Any:
    """Encode a table (or any payload ``decode`` accepts) into the wire format ``fmt``."""
    if fmt not in FORMATS:
        raise PayloadError(f"unknown payload format {fmt!r}; known formats: {', '.join(FORMATS)}")
    return FORMATS[fmt].encode(decode(frame, columns))


# -- predictions ---------------------------------------------------------------------------

def _plain(values: Any) -> list[Any]:
    """A model output (numpy array, Series or list) as a list of JSON-safe Python values."""
    if type(values).__name__ in ("Series", "Index"):
        values = values.to_numpy()
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        plain = list(values)
        if set(map(type, plain)) <= {str, int, bool, _NONE}:
            return plain
        return jsonable(plain)  # type: ignore[no-any-return]
    kind = dtype.kind
    if kind in "iubUS":
        return values.tolist()  # type: ignore[no-any-return]
    if kind == "f":
        np = _np()
        out = values.tolist()
        if np.isfinite(values).all():
            return out  # type: ignore[no-any-return]
        return jsonable(out)  # type: ignore[no-any-return]
    out = values.tolist()
    flat = out if values.ndim == 1 else [v for row in out for v in row]
    if set(map(type, flat)) <= {str, int, bool, _NONE}:
        return out  # type: ignore[no-any-return]
    return jsonable(out)  # type: ignore[no-any-return]


_PROTOCOLS = ("deploykit", "records", "mlflow", "watson", "v2", "csv")
_PROTOCOL_ALIASES = {"dataframe_split": "mlflow", "dataframe_records": "mlflow", "instances": "mlflow",
                     "inputs": "mlflow", "input_data": "watson", "v2_matrix": "v2"}


def _v2_label_type(labels: list[Any]) -> str:
    types = set(map(type, labels)) - {_NONE}
    if not types:
        return "BYTES"
    if types <= {bool}:
        return "BOOL"
    if types <= {int}:
        return "INT64"
    if types <= {int, float}:
        return "FP64"
    return "BYTES"


@dataclass
class Predictions:
    """What a model answered: one label per row, class probabilities if it gives them (columns
    in the order of ``classes``), and the raw response body it was read from.

    Everything is plain JSON-safe Python (no numpy scalars, NaN as None). ``encode(protocol)``
    writes the response body of any protocol; ``decode(body)`` reads any of them back.
    """

    labels: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None
    raw: Any = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, rows: slice) -> Predictions:
        """The predictions of a range of rows (``preds[2:5]``), with the same classes."""
        if not isinstance(rows, slice):
            raise TypeError(f"Predictions can be sliced by rows (preds[2:5]), not indexed by {type(rows).__name__}")
        proba = None if self.probabilities is None else self.probabilities[rows]
        return Predictions(self.labels[rows], proba, self.classes)

    @property
    def class_names(self) -> list[str]:
        """Names of the probability columns: the classes, or their positions when unknown."""
        width = len(self.probabilities[0]) if self.probabilities else len(self.classes or [])
        names = self.classes if self.classes is not None and len(self.classes) == width else list(range(width))
        return [str(c) for c in names]

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per row: ``{"prediction": label, "probabilities": {class: p}}``."""
        if self.probabilities is None:
            return [{"prediction": label} for label in self.labels]
        names = self.class_names
        return [{"prediction": label, "probabilities": dict(zip(names, p))}
                for label, p in zip(self.labels, self.probabilities)]

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame with a ``prediction`` column and one ``probability_<class>`` column per class."""
        pd = _pd()
        frame = pd.DataFrame({"prediction": column_array(list(self.labels))})
        if self.probabilities is not None:
            for j, name in enumerate(self.class_names):
                frame[f"probability_{name}"] = column_array([p[j] for p in self.probabilities])
        return frame

    def to_dict(self) -> dict[str, Any]:
        """deploykit's own response shape: ``{"predictions": [...], "probabilities": [[...]], "classes": [...]}``."""
        out: dict[str, Any] = {"predictions": self.labels}
        if self.probabilities is not None:
            out["probabilities"] = self.probabilities
            out["classes"] = self.classes
        return out

    @classmethod
    def from_model(cls, labels: Any, probabilities: Any = None, classes: Any = None) -> Predictions:
        """Build from the outputs of ``predict`` / ``predict_proba`` / ``classes_`` (numpy or lists)."""
        return cls(
            _plain(labels),
            None if probabilities is None else _plain(probabilities),
            None if classes is None else _plain(classes),
        )

    def encode(self, protocol: str = "deploykit") -> Any:
        """The response body of ``protocol``: ``deploykit`` (``to_dict``), ``records``
        (``to_records``), ``mlflow`` (``{"predictions": [...]}``), ``watson``, ``v2`` or ``csv``.
        MLflow request format names map to ``mlflow``, ``input_data`` to ``watson``."""
        protocol = _PROTOCOL_ALIASES.get(protocol, protocol)
        if protocol == "deploykit":
            return self.to_dict()
        if protocol == "records":
            return self.to_records()
        if protocol == "mlflow":
            return {"predictions": self.labels}
        if protocol == "watson":
            if self.probabilities is None:
                return {"predictions": [{"fields": ["prediction"], "values": [[v] for v in self.labels]}]}
            return {"predictions": [{"fields": ["prediction", "probability"],
                                     "values": [[v, p] for v, p in zip(self.labels, self.probabilities)]}]}
        if protocol == "v2":
            n = len(self.labels)
            outputs: list[dict[str, Any]] = [
                {"name": "predict", "shape": [n], "datatype": _v2_label_type(self.labels), "data": self.labels}]
            if self.probabilities is not None:
                width = len(self.probabilities[0]) if n else len(self.classes or [])
                proba: dict[str, Any] = {"name": "predict_proba", "shape": [n, width], "datatype": "FP64",
                                         "data": [p for row in self.probabilities for p in row]}
                if self.classes is not None:
                    proba["parameters"] = {"classes": self.classes}
                outputs.append(proba)
            return {"outputs": outputs}
        if protocol == "csv":
            import csv
            import io

            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\r\n")
            names = self.class_names if self.probabilities is not None else []
            writer.writerow(["prediction"] + [f"probability_{c}" for c in names])
            for i, label in enumerate(self.labels):
                writer.writerow([label] + (self.probabilities[i] if self.probabilities is not None else []))
            return out.getvalue()
        raise PayloadError(f"unknown response protocol {protocol!r}; use one of {', '.join(_PROTOCOLS)}")

    @classmethod
    def decode(cls, body: Any) -> Predictions:
        """Read any protocol's response body (deploykit, records, MLflow, Watson, V2, CSV) into Predictions."""
        try:
            return _decode_predictions(cls, body)
        except PayloadError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise PayloadError(f"cannot read predictions from a response of shape {_short(body)}; "
                               "expected a deploykit, MLflow, Watson, V2 or CSV response body") from None


def _decode_predictions(cls: type[Predictions], body: Any) -> Predictions:
    if isinstance(body, (str, bytes, bytearray)):
        return _decode_csv_predictions(cls, body)
    if isinstance(body, dict) and isinstance(body.get("outputs"), list):  # V2
        outs = {o.get("name"): o for o in body["outputs"]}
        first = body["outputs"][0]
        labels = _flat((outs.get("predict") or first)["data"])
        proba = outs.get("predict_proba")
        probabilities = classes = None
        if proba is not None:
            flat = _flat(proba["data"])
            width = proba["shape"][1] if len(proba.get("shape", [])) == 2 else 1
            probabilities = [flat[i * width:(i + 1) * width] for i in range(len(labels))]
            classes = (proba.get("parameters") or {}).get("classes")
        return cls(list(labels), probabilities, classes, raw=body)
    if isinstance(body, dict) and isinstance(body.get("predictions"), list):
        preds = body["predictions"]
        if preds and isinstance(preds[0], dict) and "values" in preds[0]:  # Watson: one block per input block
            labels, probabilities = [], []
            for block in preds:
                fields = block.get("fields") or []
                li = fields.index("prediction") if "prediction" in fields else 0
                pi = fields.index("probability") if "probability" in fields else None
                for row in block["values"]:
                    labels.append(row[li])
                    if pi is not None:
                        probabilities.append(row[pi])
            has_proba = bool(probabilities) or any("probability" in (b.get("fields") or []) for b in preds)
            return cls(labels, probabilities if has_proba else None, body.get("classes"), raw=body)
        if preds and isinstance(preds[0], dict):  # MLflow: a model that returns a DataFrame
            key = "prediction" if "prediction" in preds[0] else next(iter(preds[0]))
            return cls([p.get(key) for p in preds], raw=body)
        return cls(list(preds), body.get("probabilities"), body.get("classes"), raw=body)
    if isinstance(body, dict) and isinstance(body.get("predictions"), dict):  # MLflow: {"predictions": {col: [...]}}
        cols = body["predictions"]
        key = "prediction" if "prediction" in cols else next(iter(cols))
        return cls(list(cols[key]), raw=body)
    if isinstance(body, list):
        if body and isinstance(body[0], dict) and "prediction" in body[0]:  # deploykit records
            labels = [r["prediction"] for r in body]
            if "probabilities" in body[0]:
                classes = list(body[0]["probabilities"])
                return cls(labels, [list(r["probabilities"].values()) for r in body], classes, raw=body)
            return cls(labels, raw=body)
        return cls(list(body), raw=body)
    raise PayloadError(f"cannot read predictions from a response of shape {_short(body)}; "
                       "expected a deploykit, MLflow, Watson, V2 or CSV response body")


def _decode_csv_predictions(cls: type[Predictions], body: str | bytes | bytearray) -> Predictions:
    import csv
    import io

    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else body
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or "prediction" not in rows[0]:
        raise PayloadError(f"a CSV response needs a header with a 'prediction' column, got {_short(text)}")
    header = rows[0]
    li = header.index("prediction")
    proba_cols = [(j, h[len("probability_"):]) for j, h in enumerate(header) if h.startswith("probability_")]
    labels = [_csv_scalar(r[li]) for r in rows[1:]]
    if not proba_cols:
        return cls(labels, raw=body)
    probabilities: list[list[float]] = [[_csv_float(r[j]) for j, _ in proba_cols] for r in rows[1:]]  # type: ignore[misc]
    return cls(labels, probabilities, [_csv_scalar(name) for _, name in proba_cols], raw=body)


def _csv_scalar(text: str) -> Any:
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _csv_float(text: str) -> float | None:
    return None if text == "" else float(text)
