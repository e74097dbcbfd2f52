"""Payload codecs: every wire format round-trips a table with its dtypes; Predictions read every
protocol's response; plugins can add a format."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import subprocess
import sys

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploykit import payload
from deploykit.errors import PayloadError
from deploykit.payload import FORMATS, Format, Predictions, decode, decode_table, detect_format, encode, jsonable
from deploykit.schema import Column, Schema

PROPERTY = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

JSON_FORMATS = ["records", "dataframe_split", "dataframe_records", "instances", "inputs", "input_data", "v2"]

# -- generated tables -------------------------------------------------------------------------

KINDS = {
    "integer": (st.integers(-(2**63), 2**63 - 1), "int64", False),
    "float": (st.floats(allow_nan=False, allow_infinity=False), "float64", False),
    "string": (st.text(max_size=12), "object", False),
    "csv_string": (st.text(st.characters(codec="utf-8", blacklist_characters="\x00"), min_size=1, max_size=12), "object", False),
    "boolean": (st.booleans(), "bool", False),
    "nullable_integer": (st.none() | st.integers(-(2**53), 2**53), "Int64", True),
    "nullable_float": (st.none() | st.floats(allow_nan=False, allow_infinity=False), "float64", True),
    "datetime": (st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2200, 1, 1)), "datetime64[ns]", False),
}


@st.composite
def tables(draw: st.DrawFn, kinds: list[str] | None = None, max_rows: int = 25,
           nonempty_strings: bool = False) -> tuple[pd.DataFrame, Schema]:
    """A DataFrame in exact dtypes, and the schema that describes it (``nonempty_strings``: what
    CSV can carry: no empty strings, no NUL characters)."""
    chars = st.characters(codec="utf-8", blacklist_characters="\x00" if nonempty_strings else "")
    names = draw(st.lists(st.text(chars, min_size=1, max_size=10).filter(lambda n: not n.startswith("Unnamed")),
                          min_size=1, max_size=5, unique=True))
    rows = draw(st.integers(0, max_rows))
    columns, data = [], {}
    for name in names:
        kind = draw(st.sampled_from(kinds or [k for k in KINDS if k != "csv_string"]))
        values_st, dtype, nullable = KINDS[kind]
        if kind == "string" and nonempty_strings:
            values_st = KINDS["csv_string"][0]
        values = draw(st.lists(values_st, min_size=rows, max_size=rows))
        if kind == "nullable_float":
            values = [math.nan if v is None else v for v in values]
        data[name] = pd.Series(values, dtype=dtype) if kind != "string" else pd.Series(values, dtype=object)
        columns.append(Column(name, kind.replace("nullable_", ""), nullable))
    frame = pd.DataFrame(data)
    if rows == 0:
        frame = frame.reset_index(drop=True)
    return frame, Schema(columns)


def wire(body: object) -> object:
    """What the other side of an HTTP connection parses."""
    return body if isinstance(body, str) else orjson.loads(orjson.dumps(body))


def round_trip(frame: pd.DataFrame, schema: Schema, fmt: str) -> pd.DataFrame:
    body = wire(encode(frame, fmt))
    types = {c.name: c.type for c in schema.columns}
    table = decode_table(body, schema.names, None if fmt != "v2_matrix" else "v2", types=types)
    return pd.DataFrame(schema.check(table), copy=False)


def assert_same(result: pd.DataFrame, frame: pd.DataFrame) -> None:
    expected = frame.reset_index(drop=True)
    result = result.reset_index(drop=True)
    if len(expected) == 0:  # an empty table keeps its columns and dtypes
        assert list(result.columns) == list(expected.columns)
        assert [str(t) for t in result.dtypes] == [str(t) for t in expected.dtypes]
        return
    pd.testing.assert_frame_equal(result, expected, check_dtype=True, check_exact=True)


# -- round trips -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", JSON_FORMATS)
@PROPERTY
@given(data=tables())
def test_every_json_format_round_trips_values_and_dtypes(fmt: str, data: tuple[pd.DataFrame, Schema]) -> None:
    frame, schema = data
    assert_same(round_trip(frame, schema, fmt), frame)


@PROPERTY
@given(data=tables(nonempty_strings=True))
def test_csv_round_trips_values_and_dtypes(data: tuple[pd.DataFrame, Schema]) -> None:
    # In CSV an empty field is null, so an empty string cannot survive, and NUL cannot be sent;
    # every other string does (including "NA", "123", quotes, commas and line breaks) when the
    # schema says "string".
    frame, schema = data
    assert_same(round_trip(frame, schema, "csv"), frame)


def test_csv_header_of_a_blank_looking_name_with_no_rows() -> None:
    # found by the property above: a column named " " and no rows is the body " \r\n", not an empty one
    table = decode_table(" \r\n", [" "], None, types={" ": "integer"})
    assert table.rows == 0 and list(table.columns) == [" "]


@pytest.mark.parametrize("kind", ["integer", "float", "string", "boolean", "nullable_float", "datetime"])
@PROPERTY
@given(data=st.data())
def test_one_2d_v2_tensor_round_trips(kind: str, data: st.DataObject) -> None:
    frame, schema = data.draw(tables(kinds=[kind]))
    assert_same(round_trip(frame, schema, "v2_matrix"), frame)


@PROPERTY
@given(data=tables(kinds=["integer", "float", "string", "boolean", "nullable_integer"]))
def test_decode_without_a_schema_keeps_ints_ints_and_never_merges_kinds(data: tuple[pd.DataFrame, Schema]) -> None:
    frame, _ = data
    if len(frame) == 0:
        return
    got = decode(wire(encode(frame, "records")))
    for name in frame.columns:
        want = frame[name].dtype
        if str(want) == "Int64" and not frame[name].isna().any():
            want = np.dtype("int64")
        if str(want) == "Int64" and frame[name].isna().all():
            continue  # a column of nulls only has no type to keep
        assert str(got[name].dtype) == str(want), name


def test_large_frames_round_trip_in_every_format(bank_rows: list[dict]) -> None:
    frame = pd.DataFrame(bank_rows * 1000)  # 20,000 rows
    schema = Schema.from_frame(frame)
    for fmt in [*JSON_FORMATS, "csv"]:
        assert_same(round_trip(frame, schema, fmt), frame)


def test_mixed_ints_and_floats_stay_as_sent() -> None:
    frame = decode([{"age": 41}, {"age": 41.7}])
    assert frame["age"].dtype == object
    assert frame["age"].tolist() == [41, 41.7]
    assert type(frame["age"][0]) is int


# -- each format's shapes ----------------------------------------------------------------------

ROW = {"age": 41, "job": "admin.", "balance": 1500.5}
COLUMNS = list(ROW)

GOLDEN = {
    "records": [ROW],
    "dataframe_split": {"dataframe_split": {"columns": COLUMNS, "data": [[41, "admin.", 1500.5]]}},
    "dataframe_records": {"dataframe_records": [ROW]},
    "instances": {"instances": [ROW]},
    "inputs": {"inputs": {"age": [41], "job": ["admin."], "balance": [1500.5]}},
    "input_data": {"input_data": [{"fields": COLUMNS, "values": [[41, "admin.", 1500.5]]}]},
    "v2": {"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [41]},
                      {"name": "job", "shape": [1], "datatype": "BYTES", "data": ["admin."]},
                      {"name": "balance", "shape": [1], "datatype": "FP64", "data": [1500.5]}]},
}


@pytest.mark.parametrize("fmt", list(GOLDEN))
def test_golden_payloads_encode_exactly_and_are_detected(fmt: str) -> None:
    assert encode([ROW], fmt) == GOLDEN[fmt]
    assert detect_format(GOLDEN[fmt]) == fmt
    assert decode(GOLDEN[fmt]).to_dict("records") == [ROW]


def test_other_shapes_each_format_accepts() -> None:
    row = {"dataframe_split": {"index": [7], "columns": COLUMNS, "data": [[41, "admin.", 1500.5]]}}
    assert decode(row).index.tolist() == [7]
    assert decode(ROW).to_dict("records") == [ROW]  # one object is one row
    assert decode({"age": [41, 42]}).to_dict("list") == {"age": [41, 42]}  # columns of values
    assert decode({"instances": {"age": [41]}}).to_dict("records") == [{"age": 41}]
    assert decode({"inputs": [[41, "admin.", 1500.5]]}, COLUMNS).to_dict("records") == [ROW]
    assert decode({"dataframe_split": {"data": [[41, "admin.", 1500.5]]}}, COLUMNS).to_dict("records") == [ROW]
    # V2: [n, 1] column tensors, nested data, and one 2-D tensor named by the schema's columns
    v2 = {"inputs": [{"name": "age", "shape": [2, 1], "datatype": "INT64", "data": [[41], [42]]}]}
    assert decode(v2).to_dict("list") == {"age": [41, 42]}
    matrix = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2], [3, 4]]}]}
    assert decode(matrix, ["a", "b"]).to_dict("list") == {"a": [1.0, 3.0], "b": [2.0, 4.0]}
    # Watson: several blocks with the same fields are one table
    two = {"input_data": [{"fields": ["age"], "values": [[41]]}, {"fields": ["age"], "values": [[42]]}]}
    assert decode(two).to_dict("list") == {"age": [41, 42]}
    assert decode("age,job\n41,admin.\n").to_dict("records") == [{"age": 41, "job": "admin."}]


def test_library_callers_may_pass_a_frame_or_an_array() -> None:
    frame = pd.DataFrame([ROW])
    assert decode(frame) is frame
    arr = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert decode(arr, ["a", "b"]).to_dict("list") == {"a": [1.0, 3.0], "b": [2.0, 4.0]}
    assert encode(arr, "dataframe_split", ["a", "b"]) == {"dataframe_split": {"columns": ["a", "b"],
                                                                               "data": [[1.0, 2.0], [3.0, 4.0]]}}
    with pytest.raises(PayloadError, match=r"needs 2 column names"):
        decode(arr)


def test_v2_binary_tensors_as_tritonclient_sends_them() -> None:
    jobs = b"".join(len(s).to_bytes(4, "little") + s for s in (b"admin.", "été".encode()))
    header = {"inputs": [
        {"name": "age", "shape": [2, 1], "datatype": "INT64", "parameters": {"binary_data_size": 16}},
        {"name": "job", "shape": [2, 1], "datatype": "BYTES", "parameters": {"binary_data_size": len(jobs)}},
        {"name": "balance", "shape": [2], "datatype": "FP64", "data": [1.5, 2.5]}]}
    head = orjson.dumps(header)
    body = head + np.array([41, 42], dtype="<i8").tobytes() + jobs
    obj = payload.decode_v2_binary(body, len(head))
    frame = decode(obj)
    assert frame.to_dict("list") == {"age": [41, 42], "job": ["admin.", "été"], "balance": [1.5, 2.5]}
    assert frame["age"].dtype == np.int64
    with pytest.raises(PayloadError, match=r"binary_data_size 16 runs past the end"):
        payload.decode_v2_binary(head + b"\x00" * 8, len(head))
    with pytest.raises(PayloadError, match=r"bytes after the last binary input"):
        payload.decode_v2_binary(body + b"x", len(head))


@pytest.mark.parametrize(("body", "message"), [
    ({"what": 1, "rows": [1]}, r"top-level keys \['rows', 'what'\], which no known format uses; send records"),
    (42, r"payload is a int \(42\); send a JSON object or list"),
    ({"dataframe_split": [1]}, r"dataframe_split must be an object with 'columns' and 'data'"),
    ({"dataframe_split": {"data": [[1]]}}, r"holds rows as lists but no column names were given"),
    ([{"a": 1}, 5], r"records\[1\] is 5; every row must be an object like row 0"),
    ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}, r"data\[1\] has 1 values; expected 2"),
    ({"inputs": {"a": [1, 2], "b": [1]}}, r"columns have different lengths \{'a': 2, 'b': 1\}"),
    ({"input_data": []}, r"input_data must be a non-empty list"),
    ({"input_data": [{"fields": ["a"]}]}, r"input_data\[0\] has no 'values'"),
    ({"inputs": [{"name": "a", "shape": [2], "datatype": "INT64", "data": [1]}]}, r"shape \[2\] needs 2 values, got 1"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "INT64", "data": [41.7]}]},
     r"V2 input 'a' is INT64 but holds 41.7 \(float\); send whole numbers"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP128", "data": [1]}]}, r"datatype 'FP128'; use one of BOOL"),
    ("a,b\n1,2,3,4\n5\n", r"CSV payload could not be parsed"),
    ("a,b\n1,2,3\n", r"CSV payload could not be parsed"),
])
def test_malformed_payloads_name_what_was_seen_and_the_fix(body: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        decode(body)


# -- JSON safety ---------------------------------------------------------------------------------

def test_jsonable_makes_every_value_json_safe() -> None:
    value = {
        "np_int": np.int64(3), "np_float": np.float32(1.5), "nan": float("nan"), "inf": np.float64("inf"),
        "bool": np.bool_(True), "array": np.array([1, 2]), "date": dt.date(2024, 5, 1),
        "datetime": dt.datetime(2024, 5, 1, 12, 30), "ts": pd.Timestamp("2024-05-01T12:00:00.000001"),
        "nat": pd.NaT, "na": pd.NA, "np_dt": np.datetime64("2024-05-01T12:00"), "decimal": decimal.Decimal("1.5"),
        "bytes": "é".encode(), "nested": [{"x": np.float64("nan")}], 7: "int key",
    }
    out = jsonable(value)
    assert out == {
        "np_int": 3, "np_float": 1.5, "nan": None, "inf": None, "bool": True, "array": [1, 2],
        "date": "2024-05-01", "datetime": "2024-05-01T12:30:00", "ts": "2024-05-01T12:00:00.000001",
        "nat": None, "na": None, "np_dt": "2024-05-01T12:00", "decimal": 1.5, "bytes": "é",
        "nested": [{"x": None}], "7": "int key",
    }
    orjson.dumps(out)  # plain JSON, no numpy option needed
    assert type(out["np_int"]) is int and type(out["bool"]) is bool


def test_encoded_payloads_hold_no_numpy_values_and_no_nan() -> None:
    frame = pd.DataFrame({"a": np.array([1, 2]), "b": [np.nan, 2.5], "t": pd.to_datetime(["2024-05-01", None])})
    for fmt in JSON_FORMATS:
        body = encode(frame, fmt)
        assert orjson.loads(orjson.dumps(body)) == body, fmt
        assert "NaN" not in orjson.dumps(body).decode()
    assert encode(frame, "records") == [{"a": 1, "b": None, "t": "2024-05-01T00:00:00"},
                                        {"a": 2, "b": 2.5, "t": None}]


# -- Predictions -----------------------------------------------------------------------------------

LABEL_KINDS = {
    "str": st.text(alphabet="abcdefghij", min_size=1, max_size=6),
    "int": st.integers(-1000, 1000),
    "bool": st.booleans(),
}


@st.composite
def predictions(draw: st.DrawFn) -> Predictions:
    labels_st = LABEL_KINDS[draw(st.sampled_from(list(LABEL_KINDS)))]
    n = draw(st.integers(0, 12))
    labels = draw(st.lists(labels_st, min_size=n, max_size=n))
    if not draw(st.booleans()):
        return Predictions(labels)
    classes = draw(st.lists(st.text(alphabet="xyz", min_size=1, max_size=3), min_size=1, max_size=4, unique=True))
    probs = draw(st.lists(st.lists(st.floats(0, 1), min_size=len(classes), max_size=len(classes)),
                          min_size=n, max_size=n))
    return Predictions(labels, probs, classes)


@pytest.mark.parametrize("protocol", ["deploykit", "records", "mlflow", "watson", "v2", "csv"])
@PROPERTY
@given(preds=predictions())
def test_predictions_round_trip_through_every_protocol(protocol: str, preds: Predictions) -> None:
    if protocol == "csv" and preds.labels and isinstance(preds.labels[0], bool):
        preds = Predictions([int(v) for v in preds.labels], preds.probabilities, preds.classes)
    back = Predictions.decode(wire(preds.encode(protocol)))
    assert back.labels == preds.labels
    carries_proba = protocol in ("deploykit", "watson", "v2", "csv") or (protocol == "records" and len(preds))
    if carries_proba:
        assert back.probabilities == preds.probabilities
    if protocol in ("deploykit", "v2", "csv") or (protocol == "records" and len(preds) and preds.classes):
        assert back.classes == (preds.classes if preds.probabilities is not None else back.classes)


def test_predictions_shapes_in_each_protocol() -> None:
    preds = Predictions.from_model(np.array(["no", "yes"]), np.array([[0.75, 0.25], [0.5, 0.5]]),
                                   np.array(["no", "yes"]))
    assert preds.encode("deploykit") == {"predictions": ["no", "yes"], "probabilities": [[0.75, 0.25], [0.5, 0.5]],
                                         "classes": ["no", "yes"]}
    assert preds.encode("mlflow") == {"predictions": ["no", "yes"]}
    assert preds.encode("watson") == {"predictions": [{"fields": ["prediction", "probability"],
                                                       "values": [["no", [0.75, 0.25]], ["yes", [0.5, 0.5]]]}]}
    assert preds.encode("v2") == {"outputs": [
        {"name": "predict", "shape": [2], "datatype": "BYTES", "data": ["no", "yes"]},
        {"name": "predict_proba", "shape": [2, 2], "datatype": "FP64", "data": [0.75, 0.25, 0.5, 0.5],
         "parameters": {"classes": ["no", "yes"]}}]}
    assert preds.encode("csv") == "prediction,probability_no,probability_yes\r\nno,0.75,0.25\r\nyes,0.5,0.5\r\n"
    assert preds.to_records()[0] == {"prediction": "no", "probabilities": {"no": 0.75, "yes": 0.25}}
    frame = preds.to_frame()
    assert list(frame.columns) == ["prediction", "probability_no", "probability_yes"]
    assert frame["probability_no"].dtype == np.float64
    assert preds[1:].labels == ["yes"] and preds[1:].classes == ["no", "yes"]
    assert type(Predictions.from_model(np.array([1, 2])).labels[0]) is int
    assert Predictions.from_model(np.array([1.5, np.nan])).labels == [1.5, None]
    with pytest.raises(PayloadError, match=r"unknown response protocol 'soap'"):
        preds.encode("soap")
    with pytest.raises(PayloadError, match=r"cannot read predictions from a response of shape"):
        Predictions.decode({"weird": 1})


def test_watson_responses_with_several_blocks_are_read_in_order() -> None:
    body = {"predictions": [{"fields": ["prediction", "probability"], "values": [["no", [0.9, 0.1]]]},
                            {"fields": ["prediction", "probability"], "values": [["yes", [0.2, 0.8]]]}]}
    preds = Predictions.decode(body)
    assert preds.labels == ["no", "yes"] and preds.probabilities == [[0.9, 0.1], [0.2, 0.8]]


# -- plugins ---------------------------------------------------------------------------------------

class PipeTable:
    """A third-party codec: ``{"pipe": "age|job\\n41|admin."}``."""

    @staticmethod
    def detect(obj: object) -> bool:
        return isinstance(obj, dict) and set(obj) == {"pipe"}

    @staticmethod
    def decode(obj: dict, columns: object = None) -> pd.DataFrame:
        head, *lines = obj["pipe"].splitlines()
        return pd.DataFrame([dict(zip(head.split("|"), line.split("|"))) for line in lines])

    @staticmethod
    def encode(frame: pd.DataFrame) -> dict:
        lines = ["|".join(map(str, frame.columns))] + ["|".join(map(str, r)) for r in frame.itertuples(index=False)]
        return {"pipe": "\n".join(lines)}


class PipePlugin:
    """A plugin module as a third party would write it."""

    from deploykit.hookspecs import hookimpl

    @hookimpl
    def deploykit_register_formats(self, register: object) -> None:
        register(Format("pipe", PipeTable.detect, PipeTable.decode, PipeTable.encode, "pipe-separated text"))


@pytest.fixture
def pipe_plugin() -> object:
    """Register PipePlugin with deploykit's plugin manager for one test."""
    from deploykit import plugins

    plugins.reset()
    pm = plugins.get_plugin_manager()
    plugin = PipePlugin()
    pm.register(plugin, name="pipe-test")
    yield plugin
    pm.unregister(plugin)
    FORMATS.pop("pipe", None)
    plugins.reset()


def test_a_plugin_adds_a_codec_through_the_hook(pipe_plugin: object) -> None:
    from deploykit.plugins import load_formats

    assert "pipe" not in FORMATS
    load_formats()
    body = {"pipe": "job|marital\nadmin.|married"}
    assert detect_format(body) == "pipe"
    assert decode(body).to_dict("records") == [{"job": "admin.", "marital": "married"}]
    assert decode_table(body).columns == {"job": ["admin."], "marital": ["married"]}
    assert encode([{"job": "admin."}], "pipe") == {"pipe": "job\nadmin."}
    assert detect_format([{"job": "x"}]) == "records"  # the built-ins still win their own shapes


def test_register_refuses_what_is_not_a_format() -> None:
    with pytest.raises(TypeError, match=r"register\(\) takes a deploykit.payload.Format, got dict"):
        payload.register({"name": "x"})  # type: ignore[arg-type]


def test_import_deploykit_loads_no_pandas_numpy_or_fastapi() -> None:
    code = ("import sys, deploykit, deploykit.payload, deploykit.schema; "
            "print(sorted(m for m in ('pandas', 'numpy', 'fastapi', 'orjson') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_csv_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(PayloadError, match=r"column 'job' holds a NUL character, which CSV cannot carry"):
        encode([{"job": "a\x00b"}], "csv")


def test_one_column_csv_keeps_a_null_row() -> None:
    # found by the CSV property test: a lone null field is an empty line, which is a row
    frame = decode("a\r\n\r\n2\r\n", fmt="csv")
    assert len(frame) == 2 and pd.isna(frame["a"].iloc[0]) and frame["a"].iloc[1] == 2
