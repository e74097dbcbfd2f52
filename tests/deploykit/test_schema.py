"""The schema check: strict types, no silent casts, every offending field reported at once."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploykit.errors import ArtifactError, SchemaError
from deploykit.payload import decode_table
from deploykit.schema import MAX_PROBLEMS_PER_COLUMN, Column, Schema

PROPERTY = settings(max_examples=40, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

BANK = Schema([Column("age", "integer"), Column("job", "string"), Column("balance", "float"),
               Column("housing", "boolean"), Column("seen", "datetime", nullable=True)],
              example={"age": 41, "job": "admin.", "balance": 1500.0, "housing": True})
ROW = {"age": 41, "job": "admin.", "balance": 1500.5, "housing": True, "seen": "2024-05-01T12:00:00"}


def check(rows: list[dict], schema: Schema = BANK, **kwargs: object) -> dict:
    return schema.check(decode_table(rows), **kwargs)


def problems_of(rows: list[dict], schema: Schema = BANK, **kwargs: object) -> list[dict]:
    with pytest.raises(SchemaError) as info:
        check(rows, schema, **kwargs)
    return info.value.problems


# -- what each type accepts ----------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "value", "stored"), [
    ("integer", 41, 41),
    ("integer", 41.0, 41),  # JSON Schema's integer: a number with a zero fractional part
    ("integer", -(2**63), -(2**63)),
    ("float", 1500, 1500.0),
    ("float", 1.5, 1.5),
    ("string", "admin.", "admin."),
    ("string", "", ""),
    ("boolean", False, False),
    ("datetime", "2024-05-01T12:00:00", pd.Timestamp("2024-05-01T12:00:00")),
    ("datetime", "2024-05-01", pd.Timestamp("2024-05-01")),
    ("any", [1, 2], [1, 2]),
])
def test_each_type_accepts_its_values(kind: str, value: object, stored: object) -> None:
    schema = Schema([Column("x", kind)])
    out = check([{"x": value}], schema)["x"]
    assert out[0] == stored
    assert type(out[0]) is not float or kind == "float"


@pytest.mark.parametrize(("kind", "value", "error"), [
    ("integer", 41.7, "not a whole number"),
    ("integer", True, "wrong type"),
    ("integer", "41", "wrong type"),
    ("integer", 2**63, "outside the 64-bit integer range"),
    ("integer", 1e300, "outside the 64-bit integer range"),
    ("float", "1.5", "wrong type"),
    ("float", False, "wrong type"),
    ("float", 10**400, "too large for a 64-bit float"),
    ("string", 5, "wrong type"),
    ("string", 5.5, "wrong type"),
    ("string", True, "wrong type"),
    ("string", {"a": 1}, "wrong type"),
    ("boolean", 1, "wrong type"),
    ("boolean", "yes", "wrong type"),
    ("datetime", "yesterday", "not an ISO 8601 date-time"),
    ("datetime", 1714564800, "wrong type"),
])
def test_each_type_refuses_other_values_without_casting(kind: str, value: object, error: str) -> None:
    schema = Schema([Column("x", kind)])
    [problem] = problems_of([{"x": value}], schema)
    assert problem["column"] == "x" and problem["row"] == 0 and problem["expected"] == kind
    assert problem["error"] == error
    assert problem["value"] == value or error.startswith(("outside", "too large")) or isinstance(value, dict)


def test_the_issue_examples_are_refused_with_column_value_and_type() -> None:
    problems = problems_of([dict(ROW, age=41.7, job=5)])
    assert [(p["column"], p["value"], p["expected"]) for p in problems] == [("age", 41.7, "integer"),
                                                                          ("job", 5, "string")]
    messages = [p["message"] for p in problems]
    assert messages == [
        "column 'age' row 0: expected integer, got 41.7 (not a whole number); send a whole number",
        "column 'job' row 0: expected string, got 5 (integer); send text such as 'admin.'",
    ]


def test_nulls_are_refused_unless_the_column_is_nullable() -> None:
    [problem] = problems_of([dict(ROW, age=None)])
    assert problem["error"] == "null is not allowed"
    assert problem["message"] == "column 'age' row 0: expected integer, got no value (null or absent); send a value"
    [absent] = problems_of([ROW, {k: v for k, v in ROW.items() if k != "job"}])
    assert (absent["column"], absent["row"], absent["error"]) == ("job", 1, "null is not allowed")
    out = check([dict(ROW, seen=None), ROW])
    assert pd.isna(out["seen"][0]) and out["seen"][1] == pd.Timestamp("2024-05-01T12:00:00")


def test_nullable_columns_keep_one_dtype_with_or_without_nulls() -> None:
    schema = Schema([Column("n", "integer", nullable=True), Column("b", "boolean", nullable=True)])
    with_nulls = check([{"n": 1, "b": True}, {"n": None, "b": None}], schema)
    without = check([{"n": 1, "b": True}], schema)
    assert str(with_nulls["n"].dtype) == str(without["n"].dtype) == "Int64"
    assert str(with_nulls["b"].dtype) == str(without["b"].dtype) == "boolean"


def test_every_offending_field_is_reported_at_once() -> None:
    rows = [dict(ROW, age="old", balance=True), dict(ROW, housing="yes", extra=1)]
    rows[1].pop("job")
    with pytest.raises(SchemaError) as info:
        check(rows)
    seen = {(p["column"], p["row"], p["error"]) for p in info.value.problems}
    assert seen == {("extra", None, "unexpected column"), ("age", 0, "wrong type"), ("balance", 0, "wrong type"),
                    ("job", 1, "null is not allowed"), ("housing", 1, "wrong type")}
    message = str(info.value)
    assert message.startswith("payload does not fit the model's schema (5 problems): ")
    for column in ("extra", "age", "balance", "job", "housing"):
        assert repr(column) in message


def test_many_bad_rows_are_counted_after_the_first_few() -> None:
    rows = [dict(ROW, age=0.5)] * (MAX_PROBLEMS_PER_COLUMN + 7)
    problems = problems_of(rows)
    assert [p["row"] for p in problems[:-1]] == list(range(MAX_PROBLEMS_PER_COLUMN))
    assert problems[-1]["error"] == "more rows"
    assert problems[-1]["message"] == "column 'age': 7 more rows have problems like these"


def test_missing_and_extra_columns() -> None:
    row = {k: v for k, v in ROW.items() if k != "age"}
    row["agee"] = 41
    problems = problems_of([row])
    assert [p["error"] for p in problems] == ["unexpected column", "missing column"]
    assert "column 'agee' is not in the model's schema (did you mean 'age'?); remove it" in problems[0]["message"]
    assert problems[1]["message"] == "column 'age' is missing (expected integer); add it to every row"
    allowed = check([dict(ROW, extra="dropped")], allow_extra_columns=True)
    assert list(allowed) == BANK.names  # extra columns dropped, the model's order kept
    lenient = Schema(BANK.columns, allow_extra_columns=True)
    assert list(check([dict(ROW, extra=1)], lenient)) == BANK.names
    assert problems_of([dict(ROW, extra=1)], lenient, allow_extra_columns=False)[0]["column"] == "extra"


def test_schema_order_and_exact_dtypes() -> None:
    out = check([dict(reversed(list(ROW.items())))])
    assert list(out) == BANK.names
    assert {k: str(v.dtype) for k, v in out.items()} == {
        "age": "int64", "job": "object", "balance": "float64", "housing": "bool", "seen": "datetime64[ns]"}


# -- validate(frame): tables from library callers -----------------------------------------------------

def test_validate_a_frame_keeps_its_index_and_reads_pandas_dtypes() -> None:
    frame = pd.DataFrame({"age": [41.0, 42.0], "job": pd.Series(["a", "b"], dtype="string"),
                          "balance": [1, 2], "housing": [True, False],
                          "seen": pd.to_datetime(["2024-05-01", None])}).set_axis([10, 11])
    out = BANK.validate(frame)
    assert out.index.tolist() == [10, 11]
    assert out["age"].dtype == np.int64 and out["age"].tolist() == [41, 42]
    assert out["balance"].dtype == np.float64
    assert out["job"].tolist() == ["a", "b"]


def test_validate_a_frame_refuses_fractions_and_nulls_in_int_columns() -> None:
    frame = pd.DataFrame([ROW, ROW])
    frame["age"] = [41.5, np.nan]
    with pytest.raises(SchemaError) as info:
        BANK.validate(frame)
    assert [(p["row"], p["error"]) for p in info.value.problems] == [(0, "not a whole number"),
                                                                     (1, "null is not allowed")]


def test_validate_a_frame_with_pandas_nullable_and_category_dtypes() -> None:
    schema = Schema([Column("n", "integer", nullable=True), Column("c", "string"), Column("t", "datetime")])
    frame = pd.DataFrame({"n": pd.array([1, None], dtype="Int64"), "c": pd.Categorical(["x", "y"]),
                          "t": pd.to_datetime(["2024-05-01T00:00:00+02:00", "2024-05-02T00:00:00+02:00"])})
    out = schema.validate(frame)
    assert str(out["n"].dtype) == "Int64" and out["n"].isna().tolist() == [False, True]
    assert out["c"].tolist() == ["x", "y"]
    assert str(out["t"].dtype) == "datetime64[ns, UTC+02:00]"


# -- properties ---------------------------------------------------------------------------------------

VALID = {
    "integer": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
    "string": st.text(max_size=8),
    "boolean": st.booleans(),
    "datetime": st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1)).map(dt.datetime.isoformat),
}
INVALID = {
    "integer": st.text(max_size=3) | st.booleans() | st.floats(allow_nan=False).filter(lambda f: not f.is_integer()),
    "float": st.text(max_size=3) | st.booleans(),
    "string": st.integers() | st.floats(allow_nan=False) | st.booleans(),
    "boolean": st.integers() | st.text(max_size=3),
    "datetime": st.integers() | st.booleans() | st.text(alphabet="xyz", max_size=3),
}


@PROPERTY
@given(data=st.data(), kind=st.sampled_from(list(VALID)))
def test_valid_values_pass_unchanged(data: st.DataObject, kind: str) -> None:
    values = data.draw(st.lists(VALID[kind], min_size=1, max_size=20))
    out = Schema([Column("x", kind)]).check(decode_table({"x": values}))["x"]
    if kind == "datetime":
        assert list(out) == [pd.Timestamp(v) for v in values]
    else:
        assert [type(v)(o) for v, o in zip(values, out.tolist())] == values if kind != "float" else \
            out.tolist() == [float(v) for v in values]


@PROPERTY
@given(data=st.data(), kind=st.sampled_from(list(VALID)))
def test_one_bad_value_is_found_in_its_row(data: st.DataObject, kind: str) -> None:
    values = data.draw(st.lists(VALID[kind], min_size=1, max_size=20))
    row = data.draw(st.integers(0, len(values) - 1))
    values[row] = data.draw(INVALID[kind])
    with pytest.raises(SchemaError) as info:
        Schema([Column("x", kind)]).check(decode_table({"x": values}))
    [problem] = info.value.problems
    assert (problem["column"], problem["row"], problem["expected"]) == ("x", row, kind)
    assert repr("x") in problem["message"] and "send" in problem["message"]


# -- reading schema files -----------------------------------------------------------------------------

def test_schema_files_round_trip_and_bad_files_say_how_to_fix(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(BANK.to_dict()))
    assert Schema.read(path) == BANK
    with pytest.raises(ArtifactError, match=r"does not exist; pass an existing schema.json"):
        Schema.read(tmp_path / "nope.json")
    with pytest.raises(ArtifactError, match=r"has type 'decimal128', which deploykit does not know; use one of"):
        Schema.from_dict({"columns": [{"name": "x", "type": "decimal128"}]})
    with pytest.raises(ArtifactError, match=r"must be a JSON object with a 'columns' list"):
        Schema.from_dict([1, 2])


def test_schema_from_a_training_frame(bank_rows: list[dict]) -> None:
    schema = Schema.from_frame(pd.DataFrame(bank_rows))
    assert {c.name: c.type for c in schema.columns} == {
        "age": "integer", "job": "string", "marital": "string", "education": "string", "balance": "float",
        "housing": "string", "duration": "integer", "campaign": "integer"}
    assert schema.check(decode_table(bank_rows))["age"].dtype == np.int64
