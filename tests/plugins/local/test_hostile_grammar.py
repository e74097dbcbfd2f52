"""A grammar of hostile request bodies, one strategy per scoring route, through a real server.

Each example is a body in a route's own shape (records, MLflow's four formats, Watson's
``input_data``, V2 JSON and binary tensors, CSV) whose values, keys, nesting, bytes, content
type and encoding may each be hostile: numbers past 64 bits or below the smallest double, NaN
and infinity as tokens and as text, repeated keys, deep nesting, wrong types, ragged rows,
empty arrays, invalid UTF-8, NUL bytes, gzip bombs. The property: the answer is never a 5xx;
it is a 2xx, or a 4xx whose JSON body, in the route's error shape, is bounded and says what
was wrong. A failure prints the request that broke it (hypothesis shrinks it first).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploykit.artifact import Artifact
from deploykit.testing.servers import running
from deploykit_plugins.local.app import ServerConfig, create_app

COLUMNS = ["age", "job", "marital", "education", "balance", "housing", "duration", "campaign"]
ROW = {"age": 41, "job": "admin.", "marital": "married", "education": "secondary", "balance": 1270.5,
       "housing": "yes", "duration": 210, "campaign": 2}
LIMIT = 64 * 1024  # the server's max_body_bytes: a bomb meets it after 64 KiB of output
MAX_ANSWER = 64 * 1024  # every answer, error or not, stays below this


class Raw(str):
    """JSON text put into the body as it is (tokens json.dumps never writes: ``1e-400``, ``NaN``)."""


class Obj(list):  # type: ignore[type-arg]
    """A JSON object as (key, value) pairs, so a key can appear twice."""


def dump(value: Any) -> str:
    """``value`` as JSON text, keeping Raw tokens and repeated Obj keys."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Obj):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


# -- values ------------------------------------------------------------------------------------

BIG_NUMBERS = [2**63, 2**63 - 1, -2**63, -2**63 - 1, 2**64, 2**53 + 1, 10**400, -10**400, 0, -1]
TOKENS = [Raw(t) for t in ("1e-400", "-1e-400", "1e400", "1.0000000000000001", "-0.0", "4.9e-324", "41.0",
                           "NaN", "Infinity", "-Infinity", "1E+2", "-9223372036854775809",
                           "18446744073709551616", "01", "+1", ".5", "1.", "tru", "nul", "")]
TEXTS = ["NaN", "nan", "inf", "-inf", "Infinity", "", " ", "\x00", "a\x00b", "\ud800", "\udfff", "\u2028",
         "é", "1", "41", "true", "null", "[]", "{}", "x" * 3000, "'; DROP TABLE", "%s%n", "\\"]
scalars = st.one_of(
    st.sampled_from(BIG_NUMBERS), st.sampled_from(TOKENS), st.sampled_from(TEXTS),
    st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.text(max_size=12),
)
keys = st.one_of(st.sampled_from([*COLUMNS, "", "AGE", " age", "age\x00", "\ud800"]), st.text(max_size=6))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.lists(st.tuples(keys, inner), max_size=4).map(Obj)), max_leaves=8)
deep = st.integers(30, 1500).flatmap(lambda n: st.sampled_from([Raw("[" * n + "1" + "]" * n),
                                                                Raw('{"a":' * n + "1" + "}" * n)]))


def cell(column: str) -> st.SearchStrategy[Any]:
    """A value for ``column``: mostly its good value (so a body's one hostile value is what is
    judged), else anything hostile, rarely a deep nest."""
    return st.integers(0, 29).flatmap(lambda k: st.just(ROW[column]) if k < 27 else deep if k == 29 else values)


@st.composite
def record(draw: Callable[..., Any]) -> Obj:
    """A row object: columns dropped, repeated, renamed or added; values good or hostile."""
    # hypothesis favours the ends of a range: the rare branches are the middle values
    pairs = [(c, draw(cell(c))) for c in COLUMNS if draw(st.integers(0, 15)) != 7]
    twist = draw(st.integers(0, 9))
    if twist == 4 and pairs:
        pairs.append((pairs[0][0], draw(values)))  # a repeated key
    elif twist == 5:
        pairs += draw(st.lists(st.tuples(keys, values), min_size=1, max_size=2))
    return Obj(pairs)


@st.composite
def positional(draw: Callable[..., Any]) -> list[Any]:
    """A row as values in column order, sometimes ragged (short or long)."""
    row = [draw(cell(c)) for c in COLUMNS]
    cut = draw(st.sampled_from([len(row)] * 4 + [0, 1, len(row) - 1, len(row) + 2]))
    return row[:cut] if cut <= len(row) else row + [draw(values) for _ in range(cut - len(row))]


columns_field = st.integers(0, 9).flatmap(lambda k: st.just(COLUMNS) if k < 7 else values if k == 7 else
                                          st.lists(st.sampled_from([*COLUMNS, "x", ""]), max_size=9))
rows_of = {"records": st.lists(record(), min_size=1, max_size=3),
           "positional": st.lists(positional(), min_size=1, max_size=3)}


def column_dict() -> st.SearchStrategy[Obj]:
    return st.lists(st.sampled_from(COLUMNS), unique=True).flatmap(
        lambda cols: st.tuples(*[st.lists(cell(c), max_size=3) for c in cols]).map(
            lambda lists_: Obj(zip(cols, lists_))))


def body_or_anything(shaped: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the route's shape, sometimes any value, a deep nest, or an empty container."""
    return st.integers(0, 9).flatmap(lambda k: shaped if k < 7 else values if k == 7 else deep if k == 8
                                     else st.sampled_from([[], Obj(), [[]], [Obj()], "", None]))


# -- bodies per route ------------------------------------------------------------------------

records_bodies = body_or_anything(st.one_of(rows_of["records"], record(), column_dict()))
mlflow_bodies = body_or_anything(st.one_of(
    st.tuples(columns_field, rows_of["positional"]).map(
        lambda cd: Obj([("dataframe_split", Obj([("columns", cd[0]), ("data", cd[1])]))])),
    rows_of["records"].map(lambda r: Obj([("dataframe_records", r)])),
    st.one_of(rows_of["records"], rows_of["positional"], column_dict()).map(lambda r: Obj([("instances", r)])),
    st.one_of(rows_of["records"], rows_of["positional"], column_dict(), values).map(lambda r: Obj([("inputs", r)])),
    st.tuples(rows_of["records"], rows_of["records"]).map(  # two formats in one body
        lambda rr: Obj([("dataframe_records", rr[0]), ("instances", rr[1])])),
))
watson_bodies = body_or_anything(
    st.lists(st.tuples(columns_field, rows_of["positional"]).map(
        lambda fv: Obj([("fields", fv[0]), ("values", fv[1])])), min_size=1, max_size=2).map(lambda d: Obj([("input_data", d)])))

DATATYPES = ["INT64", "INT32", "INT8", "UINT64", "FP64", "FP32", "FP16", "BOOL", "BYTES", "int64", "STRING", ""]
shapes = st.one_of(st.lists(st.integers(-2, 4), min_size=1, max_size=3),
                   st.lists(st.sampled_from([2**31, 2**62, 2**63, -2**63 - 1]), min_size=1, max_size=2), values)


KINDS = {"age": "INT64", "balance": "FP64", "duration": "INT64", "campaign": "INT64"}  # the rest are BYTES


def _good_tensor(column: str, values_: list[Any]) -> list[tuple[str, Any]]:
    return [("name", column), ("shape", [len(values_)]), ("datatype", KINDS.get(column, "BYTES")), ("data", values_)]


@st.composite
def tensor(draw: Callable[..., Any], column: str) -> Obj:
    """The V2 input of ``column``: mostly good, else a field missing, mistyped or at odds with the others."""
    n = draw(st.integers(1, 3))
    fields = _good_tensor(column, [draw(cell(column)) for _ in range(n)])
    twist = draw(st.integers(0, 47))
    if twist == 10:
        fields[0] = ("name", draw(st.one_of(st.sampled_from([*COLUMNS, "", "x"]), values)))
    elif twist == 11:
        fields[1] = ("shape", draw(shapes))
    elif twist == 12:
        fields[2] = ("datatype", draw(st.one_of(st.sampled_from(DATATYPES), values)))
    elif twist == 13:
        fields[3] = ("data", draw(st.one_of(st.lists(st.lists(cell(column), max_size=2), max_size=2), values, deep)))
    elif twist == 14:
        fields.append(("parameters", draw(st.one_of(
            st.lists(st.tuples(st.sampled_from(["columns", "content_type", "binary_data_size"]), values),
                     max_size=2).map(Obj), values))))
    elif twist == 15:
        del fields[draw(st.integers(0, 3))]
    return Obj(fields)


@st.composite
def v2_request(draw: Callable[..., Any]) -> Obj:
    """Every column as a tensor (some perhaps dropped, repeated or hostile), sometimes ``outputs``."""
    tensors = [draw(tensor(c)) for c in COLUMNS if draw(st.integers(0, 19)) != 7]
    if draw(st.integers(0, 9)) == 4:
        tensors.append(draw(tensor(draw(st.sampled_from(COLUMNS)))))  # a column twice
    body = [("inputs", tensors)]
    if draw(st.integers(0, 4)) == 2:
        body.append(("outputs", draw(st.one_of(
            st.lists(st.sampled_from(["predict", "predict_proba", "x"]).map(lambda o: Obj([("name", o)])),
                     max_size=2), values))))
    return Obj(body)


v2_bodies = body_or_anything(v2_request())


def _bytes_element(text: bytes) -> bytes:
    return len(text).to_bytes(4, "little") + text


def _binary_of(column: str, values_: list[Any]) -> bytes:
    import struct

    kind = KINDS.get(column, "BYTES")
    if kind == "INT64":
        return struct.pack(f"<{len(values_)}q", *values_)
    if kind == "FP64":
        return struct.pack(f"<{len(values_)}d", *values_)
    return b"".join(_bytes_element(str(v).encode()) for v in values_)


@st.composite
def v2_binary(draw: Callable[..., Any]) -> tuple[bytes, dict[str, str]]:
    """A binary-extension V2 request: a JSON header, then every column's raw bytes, one of them
    perhaps hostile (invalid UTF-8, a length past the body, a size the header misstates)."""
    n = draw(st.integers(1, 3))
    header, raw = [], b""
    bad = draw(st.one_of(st.none(), st.sampled_from(COLUMNS)))
    for column in COLUMNS:
        data = _binary_of(column, [ROW[column]] * n)
        shape: Any = [n]
        if column == bad:
            data = draw(st.one_of(
                st.lists(st.binary(max_size=6), max_size=3).map(lambda items: b"".join(map(_bytes_element, items))),
                st.binary(max_size=40),
                st.just(_bytes_element(b"\xff\xfe") + _bytes_element(b"ok")),
                st.just((2**31).to_bytes(4, "little") + b"x"),  # an element length past the body
            ))
            shape = draw(st.one_of(st.just([n]), shapes))
        size = draw(st.one_of(st.just(len(data)), st.integers(-3, 80), values)) if column == bad else len(data)
        header.append(Obj([("name", column), ("shape", shape), ("datatype", KINDS.get(column, "BYTES")),
                           ("parameters", Obj([("binary_data_size", size)]))]))
        raw += data
    head = dump(Obj([("inputs", header)])).encode("utf-8", "surrogatepass")
    length = draw(st.one_of(st.just(str(len(head))), st.just(str(len(head))),
                            st.sampled_from(["0", "-1", "x", "", str(10**30)]),
                            st.integers(0, len(head) + len(raw) + 5).map(str)))
    return head + raw, {"inference-header-content-length": length, "content-type": "application/octet-stream"}


def _csv_field(value: Any) -> str:
    text = value if isinstance(value, str) else dump(value)
    return text if not any(ch in text for ch in ',"\n\r') else '"' + text.replace('"', '""') + '"'


@st.composite
def csv_body(draw: Callable[..., Any]) -> str:
    """CSV with a (perhaps wrong) header and ragged, quoted, NUL-bearing or hostile rows."""
    header = draw(st.one_of(st.just(COLUMNS), st.lists(st.sampled_from([*COLUMNS, "", "x"]), max_size=9)))
    lines = [",".join(map(_csv_field, header))]
    for row in draw(rows_of["positional"]):
        lines.append(",".join(_csv_field(v) for v in row))
    ending = draw(st.sampled_from(["\n", "\r\n", "", "\n\n", '\n"unclosed', "\x00"]))
    return "\n".join(lines) + ending


# -- transport: content types, encodings and byte-level damage ---------------------------------

BOMB = gzip.compress(b" " * (16 * 1024 * 1024))  # 16 MiB of spaces in about 16 KiB
JSON_TYPES = ["application/json"] * 16 + ["application/json; charset=utf-8", "", "text/csv", "text/plain",
                                         "application/x-www-form-urlencoded", "application/octet-stream",
                                         "application/vnd.x+json", "multipart/form-data; boundary=x"]


@st.composite
def damaged(draw: Callable[..., Any], body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """``body`` as it is (mostly), with a bad byte put in, cut short, compressed, or swapped for a bomb."""
    how = draw(st.sampled_from(["as is"] * 12 + ["bad utf-8", "nul", "cut", "gzip", "deflate", "bomb",
                                                "bomb twice", "bad encoding", "not gzip"]))
    at = draw(st.integers(0, len(body)))
    headers = dict(headers)
    if how == "bad utf-8":
        body = body[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"])) + body[at:]
    elif how == "nul":
        body = body[:at] + b"\x00" + body[at:]
    elif how == "cut":
        body = body[:at]
    elif how == "gzip":
        body, headers["content-encoding"] = gzip.compress(body), "gzip"
    elif how == "deflate":
        body, headers["content-encoding"] = zlib.compress(body), "deflate"
    elif how in ("bomb", "bomb twice"):
        body, headers["content-encoding"] = BOMB * (2 if how == "bomb twice" else 1), "gzip"
    elif how == "bad encoding":
        headers["content-encoding"] = draw(st.sampled_from(["zstd", "br", "gzip, br", "identity, gzip", "x"]))
    elif how == "not gzip":
        headers["content-encoding"] = "gzip"  # a body that says gzip but is not
    return body, headers


def json_requests(bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[bytes, dict[str, str]]]:
    return st.tuples(bodies, st.sampled_from(JSON_TYPES)).flatmap(
        lambda bt: damaged(dump(bt[0]).encode("utf-8", "surrogatepass"),
                           {"content-type": bt[1]} if bt[1] else {}))


csv_requests = st.tuples(csv_body(), st.sampled_from(["text/csv", "text/csv; charset=utf-8", "application/csv",
                                                      "application/json"])).flatmap(
    lambda bt: damaged(bt[0].encode("utf-8", "surrogatepass"), {"content-type": bt[1]}))

V2 = "/v2/models/bank/infer"
WATSON = "/ml/v4/deployments/bank/predictions"
#: route id -> (path, requests, how to find the message in its error body)
ROUTES: dict[str, tuple[str, st.SearchStrategy[tuple[bytes, dict[str, str]]], Callable[[Any], Any]]] = {
    "records": ("/predict", json_requests(records_bodies), lambda b: b["error"]),
    "records-csv": ("/predict", csv_requests, lambda b: b["error"]),
    "mlflow": ("/invocations", json_requests(mlflow_bodies), lambda b: b["message"]),
    "mlflow-csv": ("/invocations", csv_requests, lambda b: b["message"]),
    "watson": (WATSON, json_requests(watson_bodies), lambda b: b["errors"][0]["message"]),
    "v2": (V2, json_requests(v2_bodies), lambda b: b["error"]),
    "v2-binary": (V2, v2_binary().flatmap(lambda bh: damaged(*bh)), lambda b: b["error"]),
}


@pytest.fixture(scope="module")
def client(artifact: Artifact) -> Iterator[httpx.Client]:
    app = create_app(artifact, ServerConfig(name="bank", max_body_bytes=LIMIT))
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


@pytest.mark.parametrize("route", list(ROUTES))
def test_no_hostile_body_gets_a_server_error(client: httpx.Client, route: str) -> None:
    path, requests, message_of = ROUTES[route]
    seen: dict[int, int] = {}

    @settings(max_examples=120, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(request=requests)
    def call(request: tuple[bytes, dict[str, str]]) -> None:
        body, headers = request
        response = client.post(path, content=body, headers=headers)
        shown = f"{route}: {body[:400]!r} {headers} -> {response.status_code} {response.text[:400]}"
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert 200 <= response.status_code < 300 or 400 <= response.status_code < 500, shown
        assert len(response.content) < MAX_ANSWER, shown
        answer = response.json()
        if response.status_code >= 400:
            message = message_of(answer)
            assert isinstance(message, str) and len(message) > 15, shown
            assert "internal error" not in message, shown
            problems = answer.get("problems", []) if isinstance(answer, dict) else []
            assert len(problems) <= 101, shown

    call()
    assert any(400 <= code < 500 for code in seen), seen  # the grammar does reach the refusals
