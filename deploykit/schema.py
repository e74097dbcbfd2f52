"""A model's input schema: named, typed columns, and the strict check of a table against it.

The check never casts a value silently. Each column type accepts:

    integer   whole numbers from -2**63 to 2**63-1 (41, and 41.0, which JSON Schema also counts
              as an integer, but a number with a fraction or exponent only within +-2**53,
              where it is exactly the whole number written); not 41.7, not true/false, not "41"
    float     finite numbers (an integer such as 1500 is a float too); not +-inf, not
              booleans, not strings
    string    text only (job: 5 is refused); not text holding a lone surrogate, which no
              UTF-8 encoder can write (NUL characters are text and pass)
    boolean   true/false only (not 0/1, not "yes")
    datetime  ISO 8601 text ("2024-05-01T12:00:00") or date-time objects
    any       anything

A null (None, or NaN, which counts as null) is refused unless the column is ``nullable``.
Every offending field is reported at once, bounded: up to ``MAX_PROBLEMS_PER_COLUMN`` rows per
column then a count of the rest, at most ``MAX_PROBLEMS`` entries in ``SchemaError.problems``
then one entry counting the rest, and the message names the first ``MESSAGE_PROBLEMS``.

A schema file is refused when a column is named twice, a type is unknown (the message lists
``TYPES``), or ``nullable`` / ``allow_extra_columns`` is anything but true or false.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.errors import ArtifactError, Problem, SchemaError

if TYPE_CHECKING:
    import pandas as pd

    from deploykit.payload import Table

__all__ = ["MAX_PROBLEMS", "MAX_PROBLEMS_PER_COLUMN", "MESSAGE_PROBLEMS", "TYPES", "Column", "Schema",
           "describe_problems"]

#: The column types a schema may name, and what JSON values each accepts.
TYPES = ("integer", "float", "string", "boolean", "datetime", "any")

# Aliases seen in pandas dtypes, MLflow signatures and hand-written schema files.
_ALIASES = {
    "int": "integer", "int8": "integer", "int16": "integer", "int32": "integer",
    "int64": "integer", "long": "integer", "uint8": "integer", "uint16": "integer",
    "uint32": "integer", "uint64": "integer",
    "double": "float", "float16": "float", "float32": "float", "float64": "float",
    "number": "float",
    "str": "string", "object": "string", "category": "string", "bytes": "string",
    "bool": "boolean",
    "datetime64[ns]": "datetime", "timestamp": "datetime", "date": "datetime",
}

#: Offending rows reported per column; the rest are counted in one more problem.
MAX_PROBLEMS_PER_COLUMN = 10
#: Entries kept in ``SchemaError.problems``; the rest are counted in one ``more problems`` entry.
MAX_PROBLEMS = 100
#: Problems the SchemaError message spells out; the rest are counted.
MESSAGE_PROBLEMS = 10


def _normal_type(name: Any, column: str) -> str:
    if not isinstance(name, str):
        raise ArtifactError(
            f"schema column {column!r} has type {name!r}, which is not a type name; use one of {', '.join(TYPES)}"
        )
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in TYPES:
        raise ArtifactError(
            f"schema column {column!r} has type {name!r}, which deploykit does not know; "
            f"use one of {', '.join(TYPES)}"
        )
    return key


@dataclass(frozen=True)
class Column:
    """One input column: its name, its type (one of ``TYPES``) and whether null is allowed."""

    name: str
    type: str = "any"
    nullable: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The column as it is written in schema.json."""
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.nullable:
            out["nullable"] = True
        return out


@dataclass
class Schema:
    """The columns a model takes, one example row, and whether extra columns are dropped."""

    columns: list[Column]
    example: dict[str, Any] = field(default_factory=dict)
    allow_extra_columns: bool = False

    @property
    def names(self) -> list[str]:
        """Column names in the order the model expects them."""
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        """The schema in the schema.json format."""
        return {
            "columns": [c.to_dict() for c in self.columns],
            "example": self.example,
            "allow_extra_columns": self.allow_extra_columns,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "schema") -> Schema:
        """Read the schema.json format: ``{"columns": [{"name", "type"}], "example": {...}}``."""
        if not isinstance(data, dict) or not isinstance(data.get("columns"), list):
            raise ArtifactError(
                f"{source} must be a JSON object with a 'columns' list, got {type(data).__name__}; "
                'write it as {"columns": [{"name": "age", "type": "integer"}], "example": {"age": 41}}'
            )
        columns = []
        seen: dict[str, int] = {}
        for i, col in enumerate(data["columns"]):
            if isinstance(col, str):
                col = {"name": col}
            if not isinstance(col, dict) or "name" not in col:
                raise ArtifactError(
                    f"{source}: columns[{i}] is {col!r}; each column needs at least a 'name'"
                )
            name = col["name"]
            if not isinstance(name, str) or not name:
                raise ArtifactError(f"{source}: columns[{i}] has name {name!r}; a column name is non-empty text")
            if name in seen:
                raise ArtifactError(
                    f"{source}: column {name!r} is named twice (columns[{seen[name]}] and columns[{i}]); "
                    "keep one of them"
                )
            seen[name] = i
            nullable = col.get("nullable", False)
            if not isinstance(nullable, bool):
                raise ArtifactError(
                    f"{source}: columns[{i}] ({name!r}) has nullable {nullable!r}; write true or false"
                )
            columns.append(Column(name, _normal_type(col.get("type", "any"), name), nullable))
        example = data.get("example") or {}
        if not isinstance(example, dict):
            raise ArtifactError(f"{source}: 'example' must be one row as an object, got {example!r}")
        unknown = sorted(set(example) - {c.name for c in columns})
        if unknown:
            raise ArtifactError(f"{source}: the example row has columns {unknown} that the schema lacks")
        allow_extra = data.get("allow_extra_columns", False)
        if not isinstance(allow_extra, bool):
            raise ArtifactError(f"{source}: allow_extra_columns is {allow_extra!r}; write true or false")
        return cls(columns, example, allow_extra)

    @classmethod
    def read(cls, path: str | Path) -> Schema:
        """Load a schema.json file, with a clear error for a missing file or bad JSON."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ArtifactError(f"schema file {str(path)!r} does not exist; pass an existing schema.json") from None
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"schema file {str(path)!r} is not valid JSON ({exc}); fix or remove it") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, example_rows: int = 1) -> Schema:
        """Infer a schema from a training DataFrame's dtypes, with its first row as example."""
        import pandas as pd

        columns = []
        for name, dtype in frame.dtypes.items():
            if pd.api.types.is_bool_dtype(dtype):
                kind = "boolean"
            elif pd.api.types.is_integer_dtype(dtype):
                kind = "integer"
            elif pd.api.types.is_float_dtype(dtype):
                kind = "float"
            elif pd.api.types.is_datetime64_any_dtype(dtype):
                kind = "datetime"
            elif pd.api.types.infer_dtype(frame[name], skipna=True) == "string":
                kind = "string"
            else:
                kind = "any"
            columns.append(Column(str(name), kind, bool(frame[name].isna().any())))
        example = {}
        if len(frame) >= example_rows:
            from deploykit.payload import jsonable

            example = jsonable(frame.iloc[0].to_dict())
        return cls(columns, example)

    def check(self, table: Table, *, allow_extra_columns: bool | None = None) -> dict[str, Any]:
        """Check a decoded :class:`~deploykit.payload.Table`; return the model's columns, in its
        order, as typed arrays (``int64``, ``float64``, ``bool``, ``object`` strings,
        ``datetime64``; ``Int64``/``boolean`` when nulls are allowed and present).

        Raises SchemaError listing every missing or extra column and every value of the wrong
        type or null where null is not allowed. ``allow_extra_columns`` overrides the schema's
        own setting (extra columns are then dropped).
        """
        allow_extra = self.allow_extra_columns if allow_extra_columns is None else allow_extra_columns
        problems = _Problems()
        present = table.columns
        out: dict[str, Any] = {}
        missing = [c for c in self.columns if c.name not in present]
        if len(present) != len(self.columns) - len(missing) and not allow_extra:
            known = {c.name for c in self.columns}
            for name in present:
                if name not in known:
                    problems.add_lazily(lambda name=name: _problem_extra(name, [c.name for c in missing]))
        for col in missing:
            problems.add({"column": col.name, "row": None, "value": None, "expected": col.type,
                          "error": "missing column",
                          "message": f"column {col.name!r} is missing (expected {col.type}); add it to every row"})
        for col in self.columns:
            values = present.get(col.name)
            if values is None:
                continue
            if problems.full:  # bounded work: the rest of the columns are not checked one by one
                problems.count_unchecked(col.name)
                continue
            array, bad = _check_column(values, col, self.example.get(col.name))
            if bad:
                problems.extend(bad)
            else:
                out[col.name] = array
        if problems:
            listed = problems.done()
            raise SchemaError(describe_problems(listed), listed)
        return out

    def validate(self, frame: pd.DataFrame, *, allow_extra_columns: bool | None = None) -> pd.DataFrame:
        """Check ``frame`` against the schema and return it with the model's column order and
        exact dtypes (see ``check``); raises SchemaError naming every offending field."""
        import pandas as pd

        from deploykit.payload import Table

        columns = self.check(Table.from_frame(frame), allow_extra_columns=allow_extra_columns)
        return pd.DataFrame(columns, index=frame.index, copy=False)


class _Problems:
    """All of one check's problems, bounded: at most MAX_PROBLEMS entries, the rest counted."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        self.more = 0
        self.unchecked: list[str] = []

    @property
    def full(self) -> bool:
        return len(self.items) >= MAX_PROBLEMS

    def __bool__(self) -> bool:
        return bool(self.items or self.more or self.unchecked)

    def add(self, problem: Problem) -> None:
        if self.full:
            self.more += problem.get("count", 1)
        else:
            self.items.append(problem)

    def add_lazily(self, make: Any) -> None:
        if self.full:
            self.more += 1
        else:
            self.items.append(make())

    def extend(self, problems: list[Problem]) -> None:
        for p in problems:
            self.add(p)

    def count_unchecked(self, column: str) -> None:
        self.unchecked.append(column)

    def done(self) -> list[Problem]:
        if not (self.more or self.unchecked):
            return self.items
        parts = []
        if self.more:
            parts.append(f"{self.more} more problems are not listed")
        if self.unchecked:
            names = ", ".join(map(repr, self.unchecked[:5])) + (", ..." if len(self.unchecked) > 5 else "")
            parts.append(f"{len(self.unchecked)} more columns were not checked ({names})")
        return [*self.items, {"column": None, "row": None, "value": None, "expected": None, "error": "more problems",
                              "count": self.more, "message": "; ".join(parts) + ": fix the problems listed first"}]


def _count(p: Problem) -> int:
    return p.get("count", 0) if p.get("error") in ("more rows", "more problems") else 1


def describe_problems(problems: list[Problem]) -> str:
    """The SchemaError message: one clause for each of the first ``MESSAGE_PROBLEMS`` problems,
    each naming the column, the row, the value seen, the type expected and the fix; then how
    many more there are."""
    count = sum(_count(p) for p in problems)
    noun = "problem" if count == 1 else "problems"
    shown = [p for p in problems if p.get("error") not in ("more rows", "more problems")][:MESSAGE_PROBLEMS]
    lines = [p.get("message") or _message(p) for p in shown]
    if len(shown) < count:
        lines.append(f"and {count - len(shown)} more (see the list of problems)")
    return f"payload does not fit the model's schema ({count} {noun}): " + "; ".join(lines)


def _message(p: Problem) -> str:
    where = f"column {p['column']!r}" + (f" row {p['row']}" if p.get("row") is not None else "")
    return f"{where}: {p.get('error')}, got {p.get('value')!r}, expected {p.get('expected')}"


def _problem_extra(name: str, missing: list[str]) -> Problem:
    import difflib

    close = difflib.get_close_matches(name, missing, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return {"column": name, "row": None, "value": None, "expected": None, "error": "unexpected column",
            "message": f"column {_clip(name)!r} is not in the model's schema{hint}; remove it, or allow extra "
                       "columns (local.allow_extra_columns: true) to have them dropped"}


# -- the column check ----------------------------------------------------------------------

_NONE = type(None)
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
#: Beyond this a float is not known to be the whole number the sender wrote (JSON parsers read
#: -9223372036854775809 as the float -2**63, for instance).
_EXACT = 2**53
_FIX = {
    "too large to be an exact whole number":
        f"send it as a whole number between {_INT_MIN} and {_INT_MAX}, without a decimal point or exponent",
    "not a finite number": "send a finite number",
    "integer": "send a whole number",
    "float": "send a number",
    "string": "send text",
    "boolean": "send true or false",
    "datetime": "send an ISO 8601 date-time such as '2024-05-01T12:00:00'",
}


class _Report:
    """Collects one column's problems, keeping the first MAX_PROBLEMS_PER_COLUMN and a count."""

    __slots__ = ("col", "example", "extra", "problems")

    def __init__(self, col: Column, example: Any) -> None:
        self.col = col
        self.example = example
        self.problems: list[Problem] = []
        self.extra = 0

    def add(self, row: int, value: Any, error: str) -> None:
        if len(self.problems) >= MAX_PROBLEMS_PER_COLUMN:
            self.extra += 1
            return
        from deploykit.payload import jsonable

        col = self.col
        shown = _shown(value)
        if error == "null is not allowed":
            message = f"column {col.name!r} row {row}: expected {col.type}, got no value (null or absent); send a value"
        else:
            fix = _FIX.get(error, _FIX.get(col.type, "send a valid value"))
            if self.example is not None and col.type in ("string", "boolean", "integer", "float") \
                    and error == "wrong type":
                fix += f" such as {self.example!r}"
            detail = _type_name(value) if error == "wrong type" else error
            message = f"column {col.name!r} row {row}: expected {col.type}, got {shown} ({detail}); {fix}"
        self.problems.append({"column": col.name, "row": row, "value": jsonable(_clip(value)),
                              "expected": col.type, "error": error, "message": message})

    def done(self) -> list[Problem]:
        if self.extra:
            self.problems.append({
                "column": self.col.name, "row": None, "value": None, "expected": self.col.type,
                "error": "more rows", "count": self.extra,
                "message": f"column {self.col.name!r}: {self.extra} more rows have problems like these"})
        return self.problems


_REPR = None


def _short_repr(value: Any) -> str:
    global _REPR
    if _REPR is None:
        import reprlib

        _REPR = reprlib.Repr()
        _REPR.maxstring = _REPR.maxother = 80
        _REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = _REPR.maxset = 6
        _REPR.maxlevel = 3
    return _REPR.repr(value)


def _clip(value: Any) -> Any:
    """``value`` as a problem shows it: text cut to 80 characters (lone surrogates escaped, so the
    answer can be encoded), a large or deep container as a short text; scalars as they are."""
    if isinstance(value, str):
        if len(value) > 80:
            value = value[:77] + "..."
        if not value.isascii():
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, (list, dict, tuple)):
        text = _short_repr(value)
        return value if len(text) <= 80 and "..." not in text and _encodable(value) else text
    if type(value) is int and not -(2**63) <= value < 2**64:  # beyond what a JSON encoder writes
        return _big_int(value)
    return value


def _encodable(value: Any) -> bool:
    """Whether a small container can go into a JSON answer as it is (no huge int, no surrogate)."""
    import orjson

    try:
        orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return False
    return True


def _big_int(value: int) -> str:
    if value.bit_length() > 10_000:  # str() of it would be slow, or refused by Python itself
        return f"an integer of {value.bit_length()} bits"
    text = str(value)
    return text if len(text) <= 80 else f"{text[:40]}...({len(text)} digits)"


def _shown(value: Any) -> str:
    if isinstance(value, (list, dict, tuple)):
        text = _short_repr(value)
    elif type(value) is int and not -(2**63) <= value < 2**64:
        text = _big_int(value)
    else:
        text = repr(_clip(value)) if isinstance(value, str) else repr(value)
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        text = repr(value.item())
    return text if len(text) <= 84 else text[:81] + "..."


def _type_name(value: Any) -> str:
    return {"NoneType": "null", "str": "string", "int": "integer", "float": "number", "bool": "boolean",
            "dict": "object", "list": "list"}.get(type(value).__name__, type(value).__name__)


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    kind = type(value)
    if kind is float:
        return bool(value != value)
    name = kind.__name__
    if name in ("NAType", "NaTType"):
        return True
    return kind.__module__ == "numpy" and name.startswith("float") and value != value


def _check_column(values: Any, col: Column, example: Any) -> tuple[Any, list[Problem]]:
    """The column as a typed array, or the problems found in it. A nullable integer or boolean
    column is always ``Int64`` / ``boolean``, so the model sees one dtype whether or not a
    request holds nulls."""
    array, problems = _check_any(values, col, example)
    if col.nullable and col.type in ("integer", "boolean") and type(array).__name__ == "ndarray":
        import numpy as np
        import pandas as pd

        mask = np.zeros(len(array), dtype=bool)
        array = pd.arrays.IntegerArray(array, mask) if col.type == "integer" else pd.arrays.BooleanArray(array, mask)
    return array, problems


def _check_any(values: Any, col: Column, example: Any) -> tuple[Any, list[Problem]]:
    if type(values) is list:
        return _check_list(values, col, example)
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        return _check_list(list(values), col, example)
    import numpy as np

    if not isinstance(dtype, np.dtype):
        return _check_extension(values, col, example)
    return _check_ndarray(values, col, example)


def _check_list(values: list[Any], col: Column, example: Any) -> tuple[Any, list[Problem]]:
    import numpy as np

    kind = col.type
    types = set(map(type, values))
    # Fast paths: values of exactly the expected Python types, no nulls.
    try:
        if kind == "integer" and types <= {int}:
            return np.array(values, dtype=np.int64), []
        if kind == "float" and types <= {float, int} and float in types:
            arr = np.array(values, dtype=np.float64)
            if np.isfinite(arr).all():
                return arr, []
        elif kind == "float" and types <= {int}:
            arr = np.array(values, dtype=np.float64)
            if np.isfinite(arr).all():
                return arr, []
        if kind == "string" and types <= {str} and _all_encodable(values):
            return _objects(values), []
        if kind == "boolean" and types <= {bool}:
            return np.array(values, dtype=bool), []
        if kind == "datetime" and types <= {str}:
            import pandas as pd

            parsed = pd.to_datetime(values, format="ISO8601", errors="coerce")
            if not parsed.isna().any():
                return parsed.array, []
    except (OverflowError, ValueError, TypeError):
        pass
    if kind == "any":
        from deploykit.payload import column_array

        return column_array(values), []
    return _check_values(values, col, example)


def _all_encodable(values: list[str]) -> bool:
    """Whether every text is valid Unicode (no lone surrogate): one pass in C over them all."""
    try:
        "".join(values).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_ACCEPT: dict[str, Any] = {}
_INF = float("inf")


def _accept_integer(v: Any) -> tuple[Any, str | None]:
    import numbers

    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return None, "wrong type"
    if isinstance(v, numbers.Integral):
        v = int(v)
        return (v, None) if _INT_MIN <= v <= _INT_MAX else (None, "outside the 64-bit integer range")
    if isinstance(v, numbers.Real):
        f = float(v)
        if f != f or f in (float("inf"), float("-inf")):
            return None, "not a finite number"
        if not f.is_integer():
            return None, "not a whole number"
        if not _INT_MIN <= f <= _INT_MAX:
            return None, "outside the 64-bit integer range"
        if not -_EXACT <= f <= _EXACT:
            return None, "too large to be an exact whole number"
        return int(f), None
    return None, "wrong type"


def _accept_float(v: Any) -> tuple[Any, str | None]:
    import numbers

    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return None, "wrong type"
    if isinstance(v, numbers.Real):
        try:
            f = float(v)
        except OverflowError:
            return None, "too large for a 64-bit float"
        if f in (_INF, -_INF):
            return None, "not a finite number"
        return f, None
    return None, "wrong type"


def _accept_string(v: Any) -> tuple[Any, str | None]:
    if not isinstance(v, str):
        return None, "wrong type"
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return None, "not valid Unicode text (a lone surrogate)"
    return str(v), None


def _accept_boolean(v: Any) -> tuple[Any, str | None]:
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return bool(v), None
    return None, "wrong type"


def _accept_datetime(v: Any) -> tuple[Any, str | None]:
    import datetime as dt

    import pandas as pd

    if isinstance(v, (dt.datetime, dt.date)) or type(v).__name__ == "datetime64":
        return pd.Timestamp(v), None
    if not isinstance(v, str):
        return None, "wrong type"
    try:
        parsed = pd.Timestamp(pd.to_datetime(v, format="ISO8601"))
    except (ValueError, TypeError, OverflowError):
        return None, "not an ISO 8601 date-time"
    if parsed is pd.NaT:  # "" and "NaT" parse to 'no date'; a null must be sent as null
        return None, "not an ISO 8601 date-time"
    return parsed, None


_ACCEPT.update(integer=_accept_integer, float=_accept_float, string=_accept_string, boolean=_accept_boolean,
               datetime=_accept_datetime)


def _check_values(values: Any, col: Column, example: Any) -> tuple[Any, list[Problem]]:
    """The value-by-value check (mixed types, nulls, or anything off the fast path)."""
    accept = _ACCEPT[col.type]
    report = _Report(col, example)
    clean: list[Any] = []
    nulls = False
    for row, v in enumerate(values):
        if _is_null(v):
            nulls = True
            if not col.nullable:
                report.add(row, None, "null is not allowed")
            clean.append(None)
            continue
        ok, error = accept(v)
        if error is not None:
            report.add(row, v, error)
        clean.append(ok)
    problems = report.done()
    if problems:
        return None, problems
    return _typed(clean, col.type, nulls), []


def _typed(clean: list[Any], kind: str, nulls: bool) -> Any:
    """Accepted Python values (None for null) as the column's array."""
    import numpy as np
    import pandas as pd

    if kind == "integer":
        return pd.array(clean, dtype="Int64") if nulls else np.array(clean, dtype=np.int64)
    if kind == "float":
        return np.array([np.nan if v is None else v for v in clean], dtype=np.float64)
    if kind == "boolean":
        return pd.array(clean, dtype="boolean") if nulls else np.array(clean, dtype=bool)
    if kind == "datetime":
        return pd.to_datetime(pd.Series(clean, dtype=object), utc=_mixed_tz(clean)).array
    return _objects(clean)


def _mixed_tz(values: list[Any]) -> bool:
    zones = {str(getattr(v, "tz", None)) for v in values if v is not None}
    return len(zones) > 1


def _objects(values: Any) -> Any:
    import numpy as np

    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _check_ndarray(arr: Any, col: Column, example: Any) -> tuple[Any, list[Problem]]:
    import numpy as np

    kind, have = col.type, arr.dtype.kind
    if have in "OUS" or kind == "any":
        return (arr, []) if kind == "any" else _check_list(arr.tolist(), col, example)
    if kind == "integer" and have in "iu":
        if have == "u" and arr.size and arr.max() > _INT_MAX:
            return _check_values(arr.tolist(), col, example)
        return arr.astype(np.int64, copy=False), []
    if kind == "integer" and have == "f":  # e.g. pandas made an int column float to hold NaN
        nan = np.isnan(arr)
        safe = np.where(np.isfinite(arr), arr, 0.5)
        whole = (safe == np.floor(safe)) & (safe >= -float(_EXACT)) & (safe <= float(_EXACT))
        if (whole | (nan & col.nullable)).all():
            if nan.any():
                import pandas as pd

                return pd.arrays.IntegerArray(np.where(nan, 0, safe).astype(np.int64), nan), []
            return arr.astype(np.int64), []
        return _check_values(arr.tolist(), col, example)
    if kind == "float" and have in "iuf":
        out = arr.astype(np.float64, copy=False)
        if have == "f" and (np.isinf(out).any() or (not col.nullable and np.isnan(out).any())):
            return _check_values(out.tolist(), col, example)
        return out, []
    if kind == "boolean" and have == "b":
        return arr, []
    if kind == "datetime" and have == "M":
        return arr, []
    return _check_values(arr.tolist() if have != "M" else list(arr), col, example)


def _check_extension(arr: Any, col: Column, example: Any) -> tuple[Any, list[Problem]]:
    """pandas extension arrays: masked Int64/boolean/Float64, tz-aware date-times, strings, categories."""
    import numpy as np

    kind, have = col.type, arr.dtype.kind
    nulls = np.asarray(arr.isna())
    if nulls.any() and not col.nullable:
        return _check_values(arr.to_numpy(dtype=object, na_value=None).tolist(), col, example)
    if kind == "any":
        return arr, []
    if (kind == "integer" and have in "iu") or (kind == "boolean" and have == "b") or \
            (kind == "datetime" and have == "M"):
        return arr, []
    if kind == "float" and have in "iuf":
        out = arr.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isinf(out).any():
            return _check_values(arr.to_numpy(dtype=object, na_value=None).tolist(), col, example)
        return out, []
    return _check_values(arr.to_numpy(dtype=object, na_value=None).tolist(), col, example)
