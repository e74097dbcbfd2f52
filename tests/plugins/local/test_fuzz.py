"""Fuzz the local server from its own OpenAPI document (schemathesis): no input gets a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from deploykit.artifact import load_artifact
from deploykit.testing.servers import running
from deploykit_plugins.local.app import ServerConfig, create_app


@pytest.fixture(scope="module")
def served(bank_model: Path) -> Iterator[tuple[str, dict]]:
    app = create_app(load_artifact(bank_model), ServerConfig(name="bank", max_body_bytes=64 * 1024))
    with running(app) as url:
        yield url, app.openapi()


POST_ROUTES = ["/predict", "/invocations", "/ml/v4/deployments/{deployment_id}/predictions",
               "/v2/models/{model_name}/infer"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("route", [*POST_ROUTES, "GET"])
def test_no_generated_request_gets_a_server_error(served: tuple[str, dict], route: str, mode: GenerationMode) -> None:
    url, spec = served
    schema = schemathesis.openapi.from_dict(spec)
    if route == "GET":
        schema = schema.include(method="GET")
    else:
        schema = schema.include(path=route, method="POST")
    failures: list[str] = []

    @settings(max_examples=30 if route != "GET" else 20, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy(generation_mode=mode))
    def call(case: schemathesis.Case) -> None:
        response = case.call(base_url=url, timeout=30)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} {case.body!r:.300} -> {response.status_code} "
                            f"{response.text[:300]}")
        assert response.status_code < 500, failures[-1]

    call()
    assert not failures
