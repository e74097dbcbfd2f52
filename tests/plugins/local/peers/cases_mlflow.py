"""MLflow's scoring-server cases, replayed on the ``mixed`` model (and ``echo`` for params).

Sources, read from mlflow/mlflow and adapted from its unnamed iris frame to the named, typed
``mixed`` table (the bodies are ours):
- ``tests/pyfunc/test_scoring_server.py`` (T*): what MLflow's own tests assert.
- ``tests/helper_functions.py`` ``RestEndpoint`` (T21, T22): the /ping and /version probes every
  served MLflow test runs first.
- ``mlflow/pyfunc/scoring_server/__init__.py`` (S*): behaviour of the server's code its tests
  do not assert (Content-Type handling, Parquet, CSV).
- schema enforcement (X*): values the signature does not allow; MLflow casts or drops many of
  them, deploykit answers 422 naming each one (the README's promise).
- params (P*): a pyfunc model with a params schema, to see params reach ``predict``.
"""

from __future__ import annotations

import io
from typing import Any

from tests.plugins.local.peers.cases import Answer, MlflowCase, Request
from tests.plugins.local.peers.models import MIXED_COLUMNS, mixed_rows

ROWS = mixed_rows(3)
SPLIT = {"columns": MIXED_COLUMNS, "data": [[r[c] for c in MIXED_COLUMNS] for r in ROWS]}
SPLIT_INDEXED = dict(SPLIT, index=[0, 1, 2])
RECORDS = {"dataframe_records": ROWS}
JSON = "application/json"
SCORING_TEST = "tests/pyfunc/test_scoring_server.py"
HELPERS = "tests/helper_functions.py RestEndpoint"
SERVER = "mlflow/pyfunc/scoring_server/__init__.py"

OK = Answer(200)
BAD = Answer(400, "BAD_REQUEST")
INVALID = Answer(400, "INVALID_PARAMETER_VALUE")
UNSUPPORTED = Answer(415)
SCHEMA_422 = Answer(422, "INVALID_PARAMETER_VALUE")

STRICT = ("strict schema: a value the signature does not allow is a 422 naming the column, row, value "
          "and expected type (README, local target); MLflow casts it or lets it through")
BETTER_422 = ("a schema misfit is a 422 naming every column (README); MLflow answers 400, or 200 after a "
              "silent cast")


def post(body: Any, content_type: str | None = JSON, path: str = "/invocations") -> Request:
    """A POST to /invocations (JSON-encoded unless bytes or str)."""
    return Request("POST", path, body, content_type)


def records(**changes: Any) -> Request:
    """dataframe_records of ROWS with the first row changed."""
    return post({"dataframe_records": [dict(ROWS[0], **changes), *ROWS[1:]]})


def _csv(header: bool = True, **changes: Any) -> str:
    rows = [dict(ROWS[0], **changes), *ROWS[1:]]
    lines = [",".join(MIXED_COLUMNS)] if header else []
    lines += [",".join(str(r[c]) for c in MIXED_COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


def _parquet() -> bytes:
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame(ROWS).to_parquet(buffer, index=False)
    return buffer.getvalue()


CASES: list[MlflowCase] = [
    # -- what MLflow's own tests assert ------------------------------------------------------------
    MlflowCase("T01", "malformed JSON", f"{SCORING_TEST} test_..._malformed_json_input...",
               post("this is,,,, not valid json"), BAD, asserted=BAD),
    MlflowCase("T02a", "body `1`", f"{SCORING_TEST} test_..._invalid_json_format...", post(1), BAD, asserted=BAD),
    MlflowCase("T02b", 'body `"1"`', f"{SCORING_TEST} test_..._invalid_json_format...", post("1"), BAD, asserted=BAD),
    MlflowCase("T02c", "body `[1]`", f"{SCORING_TEST} test_..._invalid_json_format...", post([1]), BAD, asserted=BAD),
    MlflowCase("T03a", "no known key", f"{SCORING_TEST} test_..._invalid_json_format...",
               post({"not": "a serialized dataframe"}), BAD, asserted=BAD),
    MlflowCase("T03b", "two keys", f"{SCORING_TEST} test_..._invalid_json_format...",
               post({"dataframe_records": [], "dataframe_split": {"data": []}}), BAD, asserted=BAD),
    MlflowCase("T04a", "dataframe_split holding records", f"{SCORING_TEST} test_..._invalid_pandas_input_format...",
               post({"dataframe_split": ROWS}), BAD, asserted=BAD),
    MlflowCase("T04b", "dataframe_records holding a split", f"{SCORING_TEST} test_..._invalid_pandas_input_format...",
               post({"dataframe_records": SPLIT_INDEXED}), BAD, asserted=BAD),
    MlflowCase("T04c", "split with an index of the wrong length", f"{SCORING_TEST} test_..._invalid_dataframe...",
               post({"dataframe_split": {"index": [1, 2], "data": [[1], [2], [3]]}}), BAD, asserted=BAD),
    MlflowCase("T05", "a frame with column `0`, not the model's", f"{SCORING_TEST} test_..._incompatible_inference_dataframe...",
               post({"dataframe_split": {"columns": [0], "index": list(range(10)), "data": [[i] for i in range(10)]}}),
               INVALID, asserted=BAD, ours=SCHEMA_422, deliberate=BETTER_422 + "; no stack trace in the answer"),
    MlflowCase("T06", "empty CSV", f"{SCORING_TEST} test_..._invalid_csv_input...", post("", "text/csv"), BAD,
               asserted=BAD),
    MlflowCase("T07a", "dataframe_records", f"{SCORING_TEST} test_..._pandas_records_orientation", post(RECORDS), OK,
               asserted=OK),
    MlflowCase("T07b", "dataframe_records, `charset=UTF-8`", f"{SCORING_TEST} test_..._pandas_records_orientation",
               post(RECORDS, "application/json; charset=UTF-8"), OK, asserted=OK),
    MlflowCase("T08a", "dataframe_split with index, `charset=UTF-8`", f"{SCORING_TEST} test_..._pandas_split_orientation",
               post({"dataframe_split": SPLIT_INDEXED}, "application/json; charset=UTF-8"), OK, asserted=OK),
    MlflowCase("T08b", "dataframe_split", f"{SCORING_TEST} test_..._pandas_split_orientation",
               post({"dataframe_split": SPLIT}), OK, asserted=OK),
    MlflowCase("T09", "Content-Type `not_a_supported_content_type`", f"{SCORING_TEST} test_..._unsupported_content_type_code",
               post({"dataframe_split": SPLIT}, "not_a_supported_content_type"), UNSUPPORTED, asserted=UNSUPPORTED,
               ours=Answer(415, "BAD_REQUEST"),
               deliberate="the same 415, with MLflow's JSON error object where MLflow answers text/plain"),
    MlflowCase("T10", "`application/json; something=something`", f"{SCORING_TEST} test_..._unrecognized_content_param",
               post({"dataframe_split": SPLIT}, "application/json; something=something"), UNSUPPORTED,
               asserted=UNSUPPORTED, ours=Answer(415, "BAD_REQUEST"),
               deliberate="the same 415, with MLflow's JSON error object where MLflow answers text/plain"),
    MlflowCase("T11", "`instances` as row lists", f"{SCORING_TEST} test_..._tf_serving_sklearn",
               post({"instances": SPLIT["data"]}), BAD, asserted=OK, ours=OK,
               deliberate="rows are mapped to the signature's column order and type-checked; MLflow's test uses an "
                          "all-numeric array, and a mixed-type row list fails on MLflow even with a signature",
               same_predictions_as=post(RECORDS)),
    MlflowCase("T12", "`inputs` as a dict of columns, shuffled", f"{SCORING_TEST} test_serving_model_with_schema",
               post({"inputs": {c: [r[c] for r in ROWS] for c in reversed(MIXED_COLUMNS)}}), OK, asserted=OK),
    MlflowCase("T13", "`instances` as records", f"{SCORING_TEST} test_serving_model_with_schema",
               post({"instances": ROWS}), OK, asserted=OK),
    MlflowCase("T15", "no params (params schema declared)", f"{SCORING_TEST} test_serving_model_with_param_schema",
               post({"dataframe_split": SPLIT_INDEXED}, "application/json; charset=UTF-8"), OK, asserted=OK),
    MlflowCase("T16", "`params: {param1: \"invalid_value1\"}` (a datetime param)",
               f"{SCORING_TEST} test_serving_model_with_param_schema",
               post({"dataframe_split": SPLIT_INDEXED, "params": {"param1": "invalid_value1"}},
                    "application/json; charset=UTF-8"), INVALID, asserted=Answer(400)),
    MlflowCase("T17", "an undeclared param is ignored", f"{SCORING_TEST} test_serving_model_with_param_schema",
               post({"dataframe_split": SPLIT_INDEXED, "params": {"invalid_param": "value"}},
                    "application/json; charset=UTF-8"), OK, asserted=OK),
    MlflowCase("T20a", "`ScoringServerClient.wait_server_ready()`", f"{SCORING_TEST} test_scoring_server_client",
               None, OK, asserted=OK, client="wait_server_ready"),
    MlflowCase("T20b", "`ScoringServerClient.invoke(DataFrame)`", f"{SCORING_TEST} test_scoring_server_client",
               None, OK, asserted=OK, client="invoke"),
    MlflowCase("T20c", "`ScoringServerClient.get_version()` is the MLflow version",
               f"{SCORING_TEST} test_scoring_server_client", None, OK, asserted=OK, client="get_version"),
    MlflowCase("T21", "GET /ping", HELPERS, Request("GET", "/ping", content_type=None), OK, asserted=OK),
    MlflowCase("T22", "GET /version is the MLflow version", HELPERS, Request("GET", "/version", content_type=None),
               OK, asserted=OK, compare_body=True),
    MlflowCase("T23", "a unified-LLM body (`messages`) on a tabular model", f"{SCORING_TEST} unified LLM input",
               post({"messages": [{"role": "user", "content": "hi"}]}), INVALID, ours=BAD,
               deliberate="a body with none of the four input keys is a malformed request (BAD_REQUEST, as in T03a); "
                          "MLflow hands it to the model as a chat input and the tabular model rejects it"),
    # -- the server's code, not asserted by its tests ----------------------------------------------
    MlflowCase("S01", "GET /health", SERVER, Request("GET", "/health", content_type=None), OK),
    MlflowCase("S02", "`charset=latin-1`", SERVER, post(RECORDS, "application/json; charset=latin-1"), UNSUPPORTED,
               ours=Answer(415, "BAD_REQUEST"),
               deliberate="the same 415, with MLflow's JSON error object where MLflow answers text/plain"),
    MlflowCase("S03", "no Content-Type", SERVER, post(RECORDS, None), Answer(500), ours=OK,
               deliberate="a body without a Content-Type is read as JSON (curl's habit); MLflow crashes with a 500",
               same_predictions_as=post(RECORDS)),
    MlflowCase("S04", "a Parquet body (`application/vnd.apache.parquet`)", SERVER,
               post(_parquet(), "application/vnd.apache.parquet"), OK),
    MlflowCase("S05", "CSV with a header", SERVER, post(_csv(), "text/csv"), OK),
    MlflowCase("S06", "CSV without a header", SERVER, post(_csv(header=False), "text/csv"), INVALID, ours=SCHEMA_422,
               deliberate="CSV has a header (README); the 422 says the first line was read as the header"),
    # -- schema enforcement -------------------------------------------------------------------------
    MlflowCase("X01", "a missing column", "schema enforcement",
               post({"dataframe_records": [{k: v for k, v in r.items() if k != "income"} for r in ROWS]}), INVALID,
               ours=SCHEMA_422, deliberate=BETTER_422),
    MlflowCase("X02", "an extra column", "schema enforcement", records(extra=1), OK, ours=SCHEMA_422,
               deliberate="an unknown column is a 422 unless `allow_extra_columns` is set (README); MLflow drops it "
                          "silently"),
    MlflowCase("X03", "`age: 41.7` for a long column", "schema enforcement", records(age=41.7), OK, ours=SCHEMA_422,
               deliberate=STRICT + " (MLflow scores it as 41)"),
    MlflowCase("X04", "records with the columns in another order", "schema enforcement",
               post({"dataframe_records": [{c: r[c] for c in reversed(MIXED_COLUMNS)} for r in ROWS]}), OK),
    MlflowCase("X06", '`age: "41"`', "schema enforcement", records(age="41"), OK, ours=SCHEMA_422, deliberate=STRICT),
    MlflowCase("X07", "`age: null`", "schema enforcement", records(age=None), BAD, ours=SCHEMA_422,
               deliberate=BETTER_422),
    MlflowCase("X08", "`member: 1` for a boolean column", "schema enforcement", records(member=1), OK,
               ours=SCHEMA_422, deliberate=STRICT),
    MlflowCase("X09", '`member: "yes"`', "schema enforcement", records(member="yes"), OK, ours=SCHEMA_422,
               deliberate=STRICT + " (MLflow scores it as True)"),
    MlflowCase("X09b", '`member: "false"`', "schema enforcement", records(member="false"), OK, ours=SCHEMA_422,
               deliberate=STRICT + " (MLflow scores it as True too)"),
    MlflowCase("X10", "`age: 2**63`", "schema enforcement", records(age=2**63), OK, ours=SCHEMA_422,
               deliberate=STRICT + " (MLflow wraps it to -2**63)"),
    MlflowCase("X11", "`city: 7` for a string column", "schema enforcement", records(city=7), OK, ours=SCHEMA_422,
               deliberate=STRICT),
    MlflowCase("X12", "CSV with `41.7` in the long column", "schema enforcement", post(_csv(age=41.7), "text/csv"),
               BAD, ours=SCHEMA_422, deliberate=BETTER_422),
    # -- params reach the model ----------------------------------------------------------------------
    MlflowCase("P01", "`params: {scale: 2.0}` reaches predict", "params schema (pyfunc)",
               post({"dataframe_records": [{"x": 1}, {"x": 2}], "params": {"scale": 2.0}}), OK, model="echo"),
    MlflowCase("P02", '`params: {scale: "abc"}`', "params schema (pyfunc)",
               post({"dataframe_records": [{"x": 1}], "params": {"scale": "abc"}}), INVALID, model="echo"),
    MlflowCase("P03", "an undeclared param next to a declared one", "params schema (pyfunc)",
               post({"dataframe_records": [{"x": 1}], "params": {"scale": 3.0, "nope": 1}}), OK, model="echo"),
    MlflowCase("P04", "`params` that is not an object", "params schema (pyfunc)",
               post({"dataframe_records": [{"x": 1}], "params": [1]}), INVALID, model="echo"),
    MlflowCase("P05", "no params: the declared defaults", "params schema (pyfunc)",
               post({"dataframe_records": [{"x": 4}]}), OK, model="echo"),
]
