"""The Open Inference Protocol V2 routes: infer, errors, metadata, and tritonclient talking to them."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from deploykit.payload import Predictions, encode
from tests.plugins.local.conftest import COLUMNS


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
    import tritonclient.http as httpclient
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
