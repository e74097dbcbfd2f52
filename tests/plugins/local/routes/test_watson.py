"""The Watson ML scoring route: request, response and error shapes."""

from __future__ import annotations

from fastapi.testclient import TestClient

from deploykit.payload import Predictions, encode
from tests.plugins.local.conftest import COLUMNS


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
