"""A model's input schema: named, typed columns, and the strict check of a table against it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.errors import ArtifactError, SchemaError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TYPES", "Column", "Schema"]

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

_MAX_PROBLEMS_PER_COLUMN = 5


def _normal_type(name: str, column: str) -> str:
    key = str(name).lower()
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
        for i, col in enumerate(data["columns"]):
            if isinstance(col, str):
                col = {"name": col}
            if not isinstance(col, dict) or "name" not in col:
                raise ArtifactError(
                    f"{source}: columns[{i}] is {col!r}; each column needs at least a 'name'"
                )
            columns.append(
                Column(str(col["name"]), _normal_type(col.get("type", "any"), col["name"]),
                       bool(col.get("nullable", False)))
            )
        example = data.get("example") or {}
        if not isinstance(example, dict):
            raise ArtifactError(f"{source}: 'example' must be one row as an object, got {example!r}")
        unknown = sorted(set(example) - {c.name for c in columns})
        if unknown:
            raise ArtifactError(f"{source}: the example row has columns {unknown} that the schema lacks")
        return cls(columns, example, bool(data.get("allow_extra_columns", False)))

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

    def validate(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Check ``frame`` against the schema and return it with the model's column order.

        Raises SchemaError listing every missing or extra column and every value of the
        wrong type or null where null is not allowed; nothing is cast silently (an integral
        float such as 41.0 is accepted for an integer column, 41.7 is not).
        """
        import numpy as np
        import pandas as pd

        problems: list[dict[str, Any]] = []
        present = set(map(str, frame.columns))
        for col in self.columns:
            if col.name not in present:
                problems.append({"column": col.name, "row": None, "value": None,
                                 "expected": col.type, "error": "missing column"})
        extra = [c for c in frame.columns if str(c) not in {c.name for c in self.columns}]
        if extra and not self.allow_extra_columns:
            for name in extra:
                problems.append({"column": str(name), "row": None, "value": None,
                                 "expected": None, "error": "unexpected column"})
        out = {}
        for col in self.columns:
            if col.name not in present:
                continue
            series = frame[col.name]
            checked, bad = _check_column(series, col, np, pd)
            problems.extend(bad)
            out[col.name] = checked
        if problems:
            raise SchemaError(describe_problems(problems), problems)
        return pd.DataFrame(out, index=frame.index, copy=False)


def describe_problems(problems: list[dict[str, Any]]) -> str:
    """One line per problem, e.g. ``column 'age' row 0: expected integer, got 41.7 (float)``."""
    lines = []
    for p in problems:
        if p["row"] is None:
            if p["error"] == "missing column":
                lines.append(f"column {p['column']!r} is missing (expected {p['expected']}); add it to every row")
            else:
                lines.append(f"column {p['column']!r} is not in the model's schema; remove it")
        else:
            lines.append(
                f"column {p['column']!r} row {p['row']}: {p['error']}, got {p['value']!r}"
                + (f", expected {p['expected']}" if p["expected"] else "")
            )
    return "payload does not fit the model's schema: " + "; ".join(lines)


def _problem(col: Column, row: int, value: Any, error: str) -> dict[str, Any]:
    from deploykit.payload import jsonable

    return {"column": col.name, "row": row, "value": jsonable(value), "expected": col.type,
            "error": error}


def _check_column(series: Any, col: Column, np: Any, pd: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Return the column in its exact dtype, and the problems found (at most a few per column)."""
    problems: list[dict[str, Any]] = []
    nulls = series.isna()
    has_nulls = bool(nulls.any())
    if has_nulls and not col.nullable:
        for pos in np.flatnonzero(nulls.to_numpy())[:_MAX_PROBLEMS_PER_COLUMN]:
            problems.append(_problem(col, int(pos), None, "null is not allowed"))
    if col.type == "any":
        return series, problems
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind == "empty":
        return series, problems
    if col.type == "integer":
        if kind == "integer" and not has_nulls:
            return series.astype("int64", copy=False), problems
        if kind in ("integer", "floating", "mixed-integer-float"):
            values = pd.to_numeric(series, errors="coerce")
            frac = (values % 1 != 0) & ~nulls
            if frac.any():
                for pos in np.flatnonzero(frac.to_numpy())[:_MAX_PROBLEMS_PER_COLUMN]:
                    problems.append(_problem(col, int(pos), series.iloc[pos], "not an integer"))
                return series, problems
            return (values.astype("Int64") if has_nulls else values.astype("int64")), problems
        return series, problems + _per_value(series, col, lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)))
    if col.type == "float":
        if kind in ("floating", "integer", "mixed-integer-float", "decimal"):
            if series.dtype == object:
                return series, problems + _per_value(series, col, _is_number)
            return series.astype("float64", copy=False), problems
        return series, problems + _per_value(series, col, _is_number)
    if col.type == "string":
        if kind == "string":
            return series, problems
        return series, problems + _per_value(series, col, lambda v: isinstance(v, str))
    if col.type == "boolean":
        if kind == "boolean":
            return series, problems
        return series, problems + _per_value(series, col, lambda v: isinstance(v, (bool, np.bool_)))
    if col.type == "datetime":
        if kind in ("datetime", "datetime64", "date"):
            return pd.to_datetime(series), problems
        parsed = pd.to_datetime(series, errors="coerce", format="ISO8601")
        bad = parsed.isna() & ~nulls
        for pos in np.flatnonzero(bad.to_numpy())[:_MAX_PROBLEMS_PER_COLUMN]:
            problems.append(_problem(col, int(pos), series.iloc[pos], "not an ISO 8601 date-time"))
        return parsed, problems
    return series, problems


def _is_number(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _per_value(series: Any, col: Column, ok: Any) -> list[dict[str, Any]]:
    problems = []
    for pos, value in enumerate(series.tolist()):
        if value is None or value != value:  # nulls were reported already
            continue
        if not ok(value):
            problems.append(_problem(col, pos, value, f"wrong type {type(value).__name__}"))
            if len(problems) >= _MAX_PROBLEMS_PER_COLUMN:
                break
    return problems
