"""The local server speaks every protocol, errors included, to real clients of each.

A real uvicorn server in a thread (``server.running``) answers the protocol clients
(``tritonclient``, MLflow's scoring client, httpx); the ASGI TestClient checks exact shapes.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from deploykit.artifact import Artifact, load_artifact
from deploykit.payload import Format, Predictions, encode
from deploykit_plugins.local.app import ServerConfig, create_app
from deploykit.testing.servers import running

COLUMNS = ["age", "job", "marital", "education", "balance", "housing", "duration", "campaign"]


@pytest.fixture(scope="module")
def artifact(bank_model: Path) -> Artifact:
    return load_artifact(bank_model)


@pytest.fixture(scope="module")
def client(artifact: Artifact) -> TestClient:
    return TestClient(create_app(artifact, ServerConfig(name="bank", revision=3)))


@pytest.fixture(scope="module")
def server(artifact: Artifact) -> Iterator[str]:
    with running(create_app(artifact, ServerConfig(name="bank", revision=3))) as url:
        yield url


@pytest.fixture(scope="module")
def rows(bank_rows: list[dict]) -> list[dict]:
    return bank_rows[:3]


@pytest.fixture(scope="module")
def expected(artifact: Artifact, rows: list[dict]) -> Predictions:
    """What the model answers in process for ``rows``."""
    return artifact.predict(artifact.schema.validate(pd.DataFrame(rows)))


# -- deploykit's own route ---------------------------------------------------------------------

def test_predict_takes_any_format_and_answers_deploykit_shape(client: TestClient, rows: list[dict],
                                                              expected: Predictions) -> None:
    golden = {"predictions": expected.labels, "probabilities": expected.probabilities, "classes": ["no", "yes"]}
    for fmt in ("records", "dataframe_split", "dataframe_records", "instances", "inputs", "input_data", "v2"):
        response = client.post("/predict", json=encode(rows, fmt))
        assert (response.status_code, response.json()) == (200, golden), fmt
    csv = client.post("/predict", content=encode(rows, "csv"), headers={"content-type": "text/csv"})
    assert csv.json() == golden
    one = client.post("/predict", json=rows[0])
    assert one.json()["predictions"] == expected.labels[:1]
    as_csv = client.post("/predict", json=rows, headers={"accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert Predictions.decode(as_csv.text).labels == expected.labels


def test_no_content_type_is_json_and_other_types_are_415(client: TestClient, rows: list[dict]) -> None:
    body = json.dumps(rows).encode()
    bare = client.post("/predict", content=body, headers={"content-type": ""})
    assert bare.status_code == 200
    curl_default = client.post("/predict", content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert curl_default.status_code == 200
    xml = client.post("/predict", content=b"<rows/>", headers={"content-type": "application/xml"})
    assert xml.status_code == 415
    assert xml.json() == {"error": "Content-Type 'application/xml' is not supported here; "
                                   "send application/json or text/csv"}


def test_schema_problems_are_422_with_every_field(client: TestClient, rows: list[dict]) -> None:
    bad = [dict(rows[0], age=41.7, job=5), {k: v for k, v in rows[1].items() if k != "campaign"}]
    response = client.post("/predict", json=bad)
    assert response.status_code == 422
    body = response.json()
    assert [(p["column"], p["row"], p["value"], p["expected"]) for p in body["problems"]] == [
        ("age", 0, 41.7, "integer"), ("job", 0, 5, "string"), ("campaign", 1, None, "integer")]
    assert body["error"].startswith("payload does not fit the model's schema (3 problems): column 'age' row 0: "
                                    "expected integer, got 41.7 (not a whole number); send a whole number")


def test_malformed_bodies_are_400_naming_the_fix(client: TestClient) -> None:
    cases = {
        b"": "request body is empty; send a JSON payload such as [{",
        b"{not json": "request body is not valid JSON (",
        b"[]": "the payload has no rows; send at least one row, e.g. [{",
        b'{"rows": [1], "what": {"x": 2}}': "payload has top-level keys ['rows', 'what'], which no known format uses",
        b"42": "payload is a int (42); send a JSON object or list",
    }
    for body, message in cases.items():
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, body
        assert response.json()["error"].startswith(message), response.json()


def test_body_size_limit_is_413_before_and_while_reading(artifact: Artifact, rows: list[dict]) -> None:
    small = create_app(artifact, ServerConfig(name="bank", max_body_bytes=200))
    with running(small) as url:
        big = json.dumps(rows * 5).encode()
        declared = httpx.post(f"{url}/predict", content=big, headers={"content-type": "application/json"})
        assert declared.status_code == 413
        assert declared.json()["error"].startswith(f"request body is {len(big)} bytes, over the limit of 200; ")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
            yield big[:150]
            yield big[150:]
        streamed = httpx.post(f"{url}/invocations", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert streamed.json()["error_code"] == "BAD_REQUEST"
        bomb = gzip.compress(b"[" + b" " * 10_000 + b"]")
        inflated = httpx.post(f"{url}/predict", content=bomb, headers={"content-encoding": "gzip"})
        assert inflated.status_code == 413
        assert "decompressed body is over the limit of 200 bytes" in inflated.json()["error"]


def test_compressed_bodies(client: TestClient, rows: list[dict], expected: Predictions) -> None:
    body = gzip.compress(json.dumps(rows).encode())
    response = client.post("/predict", content=body, headers={"content-encoding": "gzip",
                                                              "content-type": "application/json"})
    assert response.json()["predictions"] == expected.labels
    brotli = client.post("/predict", content=b"x", headers={"content-encoding": "br"})
    assert brotli.status_code == 415
    assert brotli.json()["error"] == "Content-Encoding 'br' is not supported; send the body as is, gzip or deflate"


def test_bearer_token_in_each_protocols_shape(artifact: Artifact, rows: list[dict]) -> None:
    client = TestClient(create_app(artifact, ServerConfig(name="bank", token="s3cret")))
    hint = ("missing or wrong bearer token; send 'Authorization: Bearer <token>' with the token from "
            "credentials.yaml local.token")
    routes = {"/predict": {"error": hint}, "/invocations": {"error_code": "UNAUTHENTICATED", "message": hint},
              "/v2/models/bank/infer": {"error": hint}}
    for path, body in routes.items():
        response = client.post(path, json=rows, headers={"authorization": "Bearer wrong"})
        assert (response.status_code, response.json()) == (401, body), path
        assert response.headers["www-authenticate"] == "Bearer"
    watson = client.post("/ml/v4/deployments/x/predictions", json={})
    assert watson.status_code == 401
    assert watson.json()["errors"] == [{"code": "authentication_failed", "message": hint}]
    ok = client.post("/predict", json=rows, headers={"authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert client.get("/health").status_code == 200  # probes need no token
    assert client.get("/v2/models/bank").status_code == 401


# -- MLflow -------------------------------------------------------------------------------------

MLFLOW_DOC_BODIES = [  # the request shapes of MLflow's "Deploy MLflow Model as a Local Inference Server" page
    lambda rows: {"dataframe_split": {"columns": COLUMNS, "data": [[r[c] for c in COLUMNS] for r in rows]}},
    lambda rows: {"dataframe_records": rows},
    lambda rows: {"instances": rows},
    lambda rows: {"inputs": {c: [r[c] for r in rows] for c in COLUMNS}},
    lambda rows: {"dataframe_split": pd.DataFrame(rows).to_dict(orient="split")},  # with "index"
    lambda rows: {"dataframe_records": rows, "params": {}},
]


def test_invocations_answers_mlflow_shape(client: TestClient, rows: list[dict], expected: Predictions) -> None:
    for make in MLFLOW_DOC_BODIES:
        body = make(rows)
        response = client.post("/invocations", content=json.dumps(body), headers={"content-type": "application/json"})
        assert (response.status_code, response.json()) == (200, {"predictions": expected.labels}), body
    csv = client.post("/invocations", content=pd.DataFrame(rows).to_csv(index=False),
                      headers={"content-type": "text/csv"})
    assert csv.json() == {"predictions": expected.labels}


def test_invocations_errors_in_mlflow_shape(client: TestClient, rows: list[dict]) -> None:
    records = client.post("/invocations", json=rows)
    assert records.status_code == 400
    assert records.json() == {"error_code": "BAD_REQUEST", "message": (
        "an MLflow payload is a JSON object with exactly one of the keys dataframe_split, dataframe_records, "
        "instances, inputs; got list. Example: {\"dataframe_records\": " + json.dumps([_example(client)]).replace(
            " ", "") + "}")}
    typed = client.post("/invocations", json={"dataframe_records": [dict(rows[0], age="41")]})
    assert typed.status_code == 422
    body = typed.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert body["problems"][0]["message"] == "column 'age' row 0: expected integer, got '41' (string); " \
                                             f"send a whole number such as {_example(client)['age']}"


def _example(client: TestClient) -> dict:
    return client.app.openapi()["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
        "example"][0]


def test_mlflow_clients_and_mlflows_own_server_agree_with_us(tmp_path: Path, artifact: Artifact, server: str,
                                                             rows: list[dict], expected: Predictions) -> None:
    mlflow = pytest.importorskip("mlflow")
    from mlflow.models import infer_signature
    from mlflow.models.utils import convert_input_example_to_serving_input
    from mlflow.pyfunc import scoring_server
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    frame = artifact.schema.validate(pd.DataFrame(rows))
    host, port = server.rsplit("//", 1)[1].split(":")
    response = ScoringServerClient(host, int(port)).invoke(frame)  # MLflow's client for /invocations
    assert response.get_predictions(predictions_format="ndarray").tolist() == expected.labels
    serving_input = convert_input_example_to_serving_input(frame)  # what MLflow writes as the serving example
    ours = httpx.post(f"{server}/invocations", content=serving_input, headers={"content-type": "application/json"})
    assert ours.json() == {"predictions": expected.labels}

    # MLflow's own scoring server, on the same model, answers the same bodies the same way.
    mlflow.sklearn.save_model(artifact.model, tmp_path / "m", serialization_format="cloudpickle",
                              signature=infer_signature(frame, np.array(expected.labels)))
    theirs = TestClient(scoring_server.init(mlflow.pyfunc.load_model(str(tmp_path / "m"))))
    bodies = [json.dumps(make(rows)) for make in MLFLOW_DOC_BODIES] + [serving_input]
    for body in bodies:
        a = theirs.post("/invocations", content=body, headers={"content-type": "application/json"})
        b = httpx.post(f"{server}/invocations", content=body, headers={"content-type": "application/json"})
        assert (b.status_code, b.json()) == (a.status_code, a.json()), body
    csv = pd.DataFrame(rows).to_csv(index=False)
    a = theirs.post("/invocations", content=csv, headers={"content-type": "text/csv"})
    b = httpx.post(f"{server}/invocations", content=csv, headers={"content-type": "text/csv"})
    assert b.json() == a.json()


# -- Watson -------------------------------------------------------------------------------------

def test_watson_request_and_response_shapes(client: TestClient, rows: list[dict], expected: Predictions) -> None:
    body = encode(rows, "input_data")
    response = client.post("/ml/v4/deployments/0f1e2d3c-aaaa-bbbb-cccc-000000000000/predictions?version=2020-09-01",
                           json=body)
    assert response.json() == {"predictions": [{"fields": ["prediction", "probability"], "values": [
        [label, proba] for label, proba in zip(expected.labels, expected.probabilities)]}]}
    two = {"input_data": [{"fields": COLUMNS, "values": [[r[c] for c in COLUMNS]]} for r in rows[:2]]}
    blocks = client.post("/ml/v4/deployments/x/predictions", json=two).json()["predictions"]
    assert [b["values"][0][0] for b in blocks] == expected.labels[:2]


def test_watson_errors_in_watson_shape(client: TestClient, rows: list[dict]) -> None:
    missing = client.post("/ml/v4/deployments/x/predictions", json={"values": []})
    assert missing.status_code == 400
    body = missing.json()
    assert set(body) == {"trace", "errors", "status_code"} and body["status_code"] == 400
    assert body["errors"][0]["code"] == "missing_input_data"
    bad = client.post("/ml/v4/deployments/x/predictions", json=encode([dict(rows[0], age=41.7)], "input_data"))
    assert bad.status_code == 422
    assert bad.json()["errors"] == [{"code": "invalid_input_data", "target": {"type": "field", "name": "age"},
                                     "message": "column 'age' row 0: expected integer, got 41.7 "
                                                "(not a whole number); send a whole number"}]


# -- Open Inference Protocol V2 -------------------------------------------------------------------

def test_v2_infer_shapes(client: TestClient, rows: list[dict], expected: Predictions) -> None:
    body = dict(encode(rows, "v2"), id="req-1")
    response = client.post("/v2/models/bank/infer", json=body)
    assert response.json() == {"model_name": "bank", "model_version": "3", "id": "req-1", "outputs": [
        {"name": "predict", "shape": [3], "datatype": "BYTES", "data": expected.labels},
        {"name": "predict_proba", "shape": [3, 2], "datatype": "FP64",
         "data": [p for row in expected.probabilities for p in row], "parameters": {"classes": ["no", "yes"]}}]}
    only = client.post("/v2/models/bank/versions/3/infer", json=dict(body, outputs=[{"name": "predict"}]))
    assert [o["name"] for o in only.json()["outputs"]] == ["predict"]
    matrix = client.post("/v2/models/bank/infer", json=encode(rows, "v2_matrix"))  # one 2-D tensor
    assert matrix.json()["outputs"][0]["data"] == expected.labels


def test_v2_errors_and_metadata(client: TestClient, rows: list[dict]) -> None:
    unknown = client.post("/v2/models/other/infer", json=encode(rows, "v2"))
    assert (unknown.status_code, unknown.json()) == (
        404, {"error": "model 'other' is not served here; this server serves 'bank'"})
    old = client.post("/v2/models/bank/versions/1/infer", json=encode(rows, "v2"))
    assert old.status_code == 404
    wrong_output = client.post("/v2/models/bank/infer", json=dict(encode(rows, "v2"), outputs=[{"name": "x"}]))
    assert wrong_output.json() == {"error": "V2 output(s) ['x'] do not exist; this model has outputs "
                                            "['predict', 'predict_proba']"}
    typed = client.post("/v2/models/bank/infer", json={"inputs": [
        {"name": "age", "shape": [1], "datatype": "INT64", "data": [41.5]}]})
    assert typed.status_code == 400
    assert typed.json()["error"].startswith("V2 input 'age' is INT64 but holds 41.5 (float)")
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/bank/ready").json() == {"name": "bank", "ready": True}
    meta = client.get("/v2/models/bank").json()
    assert meta["inputs"][:2] == [{"name": "age", "datatype": "INT64", "shape": [-1, 1]},
                                  {"name": "job", "datatype": "BYTES", "shape": [-1, 1]}]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]


def test_tritonclient_talks_to_the_v2_endpoints(server: str, rows: list[dict], expected: Predictions) -> None:
    httpclient = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    triton = httpclient.InferenceServerClient(server.split("//", 1)[1])
    assert triton.is_server_live() and triton.is_server_ready() and triton.is_model_ready("bank")
    assert triton.get_model_metadata("bank")["name"] == "bank"
    frame = pd.DataFrame(rows)
    for binary in (True, False):  # tritonclient's default is the binary tensor extension
        inputs = []
        for name in COLUMNS:
            values = frame[[name]].to_numpy()
            kind = {"i": "INT64", "f": "FP64"}.get(values.dtype.kind, "BYTES")
            tensor = httpclient.InferInput(name, list(values.shape), kind)
            tensor.set_data_from_numpy(values.astype(object) if kind == "BYTES" else values, binary_data=binary)
            inputs.append(tensor)
        outputs = [httpclient.InferRequestedOutput("predict", binary_data=binary),
                   httpclient.InferRequestedOutput("predict_proba", binary_data=binary)]
        result = triton.infer("bank", inputs, outputs=outputs, request_id="r1",
                              request_compression_algorithm="gzip" if binary else None)
        assert [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("predict").tolist()] == \
            expected.labels
        assert result.as_numpy("predict_proba").tolist() == expected.probabilities
        assert result.get_response()["id"] == "r1"
    with pytest.raises(InferenceServerException, match="model 'nope' is not served here"):
        triton.infer("nope", inputs)


# -- docs and plugins ---------------------------------------------------------------------------------

def test_openapi_documents_every_route_with_the_example_row(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/predict", "/invocations", "/ml/v4/deployments/{deployment_id}/predictions",
                 "/v2/models/{model_name}/infer", "/health", "/v2/health/ready", "/v2/models/{model_name}"):
        assert path in spec["paths"], path
    example = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert set(example[0]) == set(COLUMNS)
    assert "text/csv" in spec["paths"]["/invocations"]["post"]["requestBody"]["content"]


class TildeRows:
    """A third-party codec plugin: ``{"tilde": "age~job\\n41~admin."}``."""

    from deploykit.hookspecs import hookimpl

    @hookimpl
    def deploykit_register_formats(self, register: Any) -> None:
        def decode(obj: dict, columns: Any = None) -> pd.DataFrame:
            head, *lines = obj["tilde"].splitlines()
            names = head.split("~")
            typed = [[int(v) if names[i] in ("age", "duration", "campaign") else
                      float(v) if names[i] == "balance" else v for i, v in enumerate(line.split("~"))]
                     for line in lines]
            return pd.DataFrame(typed, columns=names)

        register(Format("tilde", lambda o: isinstance(o, dict) and "tilde" in o, decode,
                        lambda f: {"tilde": f.to_csv(sep="~", index=False)}, "tilde-separated rows"))


def test_a_plugin_codec_is_served(artifact: Artifact, rows: list[dict], expected: Predictions) -> None:
    from deploykit import payload, plugins

    plugins.reset()
    plugin = TildeRows()
    plugins.get_plugin_manager().register(plugin, name="tilde-test")
    try:
        client = TestClient(create_app(artifact, ServerConfig(name="bank")))  # load_formats() runs here
        text = "~".join(COLUMNS) + "\n" + "\n".join("~".join(str(r[c]) for c in COLUMNS) for r in rows)
        response = client.post("/predict", json={"tilde": text})
        assert response.json()["predictions"] == expected.labels
    finally:
        plugins.get_plugin_manager().unregister(plugin)
        payload.FORMATS.pop("tilde", None)
        plugins.reset()
