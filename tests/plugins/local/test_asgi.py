"""The scoring routes' ASGI plumbing: content types, bodies, size limits, compression, auth, the schema check."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import httpx
from fastapi.testclient import TestClient

from deploykit.artifact import Artifact
from deploykit.payload import Predictions
from deploykit.testing.servers import running
from deploykit_plugins.local.app import ServerConfig, create_app


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
