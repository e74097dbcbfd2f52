"""The OpenAPI document describes every route, pre-filled with the artifact's example row."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.plugins.local.conftest import COLUMNS


def test_openapi_documents_every_route_with_the_example_row(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/predict", "/invocations", "/ml/v4/deployments/{deployment_id}/predictions",
                 "/v2/models/{model_name}/infer", "/health", "/v2/health/ready", "/v2/models/{model_name}"):
        assert path in spec["paths"], path
    example = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert set(example[0]) == set(COLUMNS)
    assert "text/csv" in spec["paths"]["/invocations"]["post"]["requestBody"]["content"]
