"""POST /invocations speaks MLflow's protocol, to MLflow's own client and beside its own server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from deploykit.artifact import Artifact
from deploykit.payload import Predictions
from tests.plugins.local.conftest import COLUMNS

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
    import mlflow
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
