"""Hostile values against the schema check: a grammar of the values that broke it or might
(huge integers, +-inf, NaN, 1e-400, -0.0, lone surrogates, NUL, very long text, containers
where scalars belong, booleans for numbers). The check either returns exactly the values sent,
in the column's type, or raises SchemaError/PayloadError with a bounded, encodable answer."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploykit.errors import ArtifactError, PayloadError, SchemaError
from deploykit.payload import decode_table
from deploykit.schema import MAX_PROBLEMS, MESSAGE_PROBLEMS, TYPES, Column, Schema

HOSTILE = settings(max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

EDGE_INTS = [2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64 - 1, 2**64, -(2**64), 10**400, -(10**400), 2**53,
             2**53 + 1, 0]
EDGE_FLOATS = [math.inf, -math.inf, math.nan, 1e-400, -0.0, 0.0, 5e-324, 1.7976931348623157e308, 2.0**63,
               -(2.0**63), 2.0**53, 2.0**53 + 2, 41.0, 41.5, 1e300]
SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
TEXT = (st.text(max_size=6) | st.just("\x00") | st.just("a\x00b") | st.just("x" * 100_000)
        | st.tuples(st.text(max_size=3), SURROGATE).map("".join) | st.just("NaN") | st.just("inf")
        | st.just("2024-05-01T12:00:00") | st.just("") | st.just("1e-400"))
SCALAR = (st.sampled_from(EDGE_INTS) | st.integers() | st.sampled_from(EDGE_FLOATS) | st.floats() | st.booleans()
          | st.none() | TEXT)
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                       max_size=3), max_leaves=8)


def _int_ok(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return -(2**63) <= v <= 2**63 - 1
    return isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) <= 2**53


def _float_ok(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _string_ok(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


ACCEPTABLE = {"integer": _int_ok, "float": _float_ok, "string": _string_ok, "boolean": lambda v: type(v) is bool}


def _same(kind: str, sent: Any, got: Any) -> bool:
    """Whether ``got`` (an output element) is exactly ``sent``, in the column's type."""
    if kind == "integer":
        return type(got) is int and got == sent
    if kind == "float":
        return type(got) is float and got == float(sent) and math.copysign(1, got) == math.copysign(1, float(sent))
    if kind == "string":
        return got is sent or got == sent
    return type(got) is bool and got is sent


def _assert_bounded(err: SchemaError) -> None:
    assert len(err.problems) <= MAX_PROBLEMS + 1
    assert len(str(err)) < 40_000
    orjson.dumps(err.problems)  # the server can always encode its answer: never a 500 here
    for p in err.problems:
        assert set(p) >= {"column", "row", "value", "expected", "error", "message"}


@HOSTILE
@given(values=st.lists(VALUE, min_size=1, max_size=12), kind=st.sampled_from(["integer", "float", "string", "boolean"]),
       nullable=st.booleans())
def test_hostile_values_are_accepted_exactly_or_refused_clearly(values: list[Any], kind: str, nullable: bool) -> None:
    schema = Schema([Column("x", kind, nullable=nullable)])
    try:
        table = decode_table({"x": values})
    except PayloadError:
        return
    try:
        out = schema.check(table)["x"]
    except SchemaError as err:
        _assert_bounded(err)
        bad_rows = {p["row"] for p in err.problems if p["row"] is not None}
        assert bad_rows, err.problems
        for row in bad_rows:
            v = values[row]
            assert (_is_null(v) and not nullable) or not (_is_null(v) or ACCEPTABLE[kind](v)), (row, v)
        return
    got = out.tolist() if hasattr(out, "tolist") else list(out)
    for sent, element in zip(values, got, strict=True):
        if _is_null(sent):
            assert nullable and (element is None or element is pd.NA or _is_null(element))
        else:
            assert ACCEPTABLE[kind](sent), (sent, element)
            assert _same(kind, sent, element), (sent, element)


@HOSTILE
@given(values=st.lists(VALUE, min_size=1, max_size=8))
def test_datetime_and_any_columns_never_raise_anything_else(values: list[Any]) -> None:
    for kind in ("datetime", "any"):
        try:
            schema = Schema([Column("x", kind, nullable=True)])
            out = schema.check(decode_table({"x": values}))["x"]
        except SchemaError as err:
            _assert_bounded(err)
            assert kind == "datetime"
            continue
        except PayloadError:
            continue
        assert len(out) == len(values)
        if kind == "any":
            assert [v if not isinstance(v, np.generic) else v.item() for v in out] == values or \
                any(_is_null(v) for v in values)


@HOSTILE
@given(values=st.lists(SCALAR, min_size=1, max_size=8), kind=st.sampled_from(["integer", "float", "string", "boolean"]))
def test_hostile_values_in_a_dataframe_are_accepted_exactly_or_refused(values: list[Any], kind: str) -> None:
    frame = pd.DataFrame({"x": pd.Series(values, dtype=object)})
    try:
        out = Schema([Column("x", kind)]).validate(frame)
    except SchemaError as err:
        _assert_bounded(err)
        return
    for sent, element in zip(values, out["x"].tolist(), strict=True):
        assert ACCEPTABLE[kind](sent) and _same(kind, sent, element), (sent, element)


@pytest.mark.parametrize(("kind", "value", "error"), [
    ("float", math.inf, "not a finite number"),
    ("float", -math.inf, "not a finite number"),
    ("float", math.nan, "null is not allowed"),  # NaN counts as null
    ("integer", -(2**63) - 1, "outside the 64-bit integer range"),
    ("integer", 2**64 - 1, "outside the 64-bit integer range"),
    ("integer", float(-(2**63)), "too large to be an exact whole number"),  # -2**63-1 as a JSON parser reads it
    ("integer", 2.0**53 + 2, "too large to be an exact whole number"),
    ("integer", math.inf, "not a finite number"),
    ("string", "ab\ud800", "not valid Unicode text (a lone surrogate)"),
])
def test_the_issue_siblings_are_refused(kind: str, value: Any, error: str) -> None:
    with pytest.raises(SchemaError) as info:
        Schema([Column("x", kind)]).check(decode_table({"x": [value]}))
    [problem] = info.value.problems
    assert problem["error"] == error
    orjson.dumps(info.value.problems)


def test_refusals_come_from_json_text_too() -> None:
    schema = Schema([Column("x", "integer"), Column("y", "float"), Column("z", "integer")])
    # the standard parser keeps the big integer exact and reads 1e999 as inf
    with pytest.raises(SchemaError) as info:
        schema.check(decode_table(json.loads(b'{"x": [-9223372036854775809], "y": [1e999], "z": [2.0]}')))
    assert {p["column"]: p["error"] for p in info.value.problems} == {
        "x": "outside the 64-bit integer range", "y": "not a finite number"}
    # orjson reads an integer beyond 64 bits as a float: refused, not rounded to -2**63
    with pytest.raises(SchemaError) as info:
        schema.check(decode_table(orjson.loads(b'{"x": [-9223372036854775809], "y": [1.0], "z": [2.0]}')))
    assert [p["error"] for p in info.value.problems] == ["too large to be an exact whole number"]


def test_edge_values_that_are_fine_pass_exactly() -> None:
    schema = Schema([Column("i", "integer"), Column("f", "float"), Column("s", "string")])
    out = schema.check(decode_table({"i": [2**63 - 1, -(2**63), 41.0, -0.0], "f": [-0.0, 5e-324, 1e-400, 2**70],
                                     "s": ["\x00", "a\x00b", "", "é"]}))
    assert out["i"].tolist() == [2**63 - 1, -(2**63), 41, 0]
    assert out["f"].tolist() == [-0.0, 5e-324, 0.0, float(2**70)] and math.copysign(1, out["f"][0]) == -1
    assert out["s"].tolist() == ["\x00", "a\x00b", "", "é"]


def test_inf_is_refused_on_every_array_path() -> None:
    schema = Schema([Column("f", "float", nullable=True)])
    for values in (np.array([1.0, np.inf]), pd.array([1.0, -np.inf], dtype="Float64"), [1, math.inf], [math.inf]):
        with pytest.raises(SchemaError, match="not a finite number"):
            schema.validate(pd.DataFrame({"f": values}))
    ints = Schema([Column("i", "integer", nullable=True)])
    with pytest.raises(SchemaError, match="too large to be an exact whole number"):
        ints.validate(pd.DataFrame({"i": np.array([np.nan, 2.0**60])}))


def test_answers_are_bounded_however_many_problems() -> None:
    schema = Schema([Column(f"c{i}", "integer") for i in range(300)])
    rows = [{**{f"c{i}": "bad" for i in range(300)}, **{f"extra{i}": 1 for i in range(2000)}} for _ in range(30)]
    with pytest.raises(SchemaError) as info:
        schema.check(decode_table(rows))
    err = info.value
    assert len(err.problems) == MAX_PROBLEMS + 1
    last = err.problems[-1]
    assert last["error"] == "more problems" and last["count"] > 0
    assert "more columns were not checked" in last["message"]
    message = str(err)
    assert message.count("; column ") == MESSAGE_PROBLEMS - 1
    assert "more (see the list of problems)" in message and len(message) < 5000


def test_huge_and_nested_values_are_clipped_in_the_answer() -> None:
    schema = Schema([Column("x", "integer")])
    nested = [list(range(10_000)), {"k": "v" * 10_000}, "y" * 10_000]
    with pytest.raises(SchemaError) as info:
        schema.check(decode_table({"x": nested}))
    for p in info.value.problems:
        assert len(orjson.dumps(p["value"])) < 200 and len(p["message"]) < 400


@pytest.mark.parametrize(("data", "match"), [
    ({"columns": [{"name": "a", "type": "integer", "nullable": "no"}]}, r"nullable 'no'; write true or false"),
    ({"columns": [{"name": "a", "nullable": 0}]}, r"nullable 0; write true or false"),
    ({"columns": ["a", {"name": "b"}, {"name": "a", "type": "float"}]},
     r"column 'a' is named twice \(columns\[0\] and columns\[2\]\)"),
    ({"columns": [{"name": "a", "type": "decimal"}]}, "use one of " + ", ".join(TYPES)),
    ({"columns": [{"name": "a", "type": 5}]}, "not a type name; use one of integer"),
    ({"columns": [{"name": 5}]}, r"columns\[0\] has name 5; a column name is non-empty text"),
    ({"columns": ["a"], "allow_extra_columns": "yes"}, r"allow_extra_columns is 'yes'; write true or false"),
])
def test_bad_schema_files_are_refused(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ArtifactError, match=match):
        Schema.from_dict(data)


def test_datetime_hostile_text_is_refused_not_raised() -> None:
    schema = Schema([Column("t", "datetime")])
    for value in ["\x00", "9999999-01-01", "2024-13-45", "x" * 100_000, "\ud800", "NaT", dt.date(2024, 5, 1)]:
        try:
            schema.check(decode_table({"t": [value]}))
        except SchemaError as err:
            _assert_bounded(err)
