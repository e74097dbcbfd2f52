"""``GET /metrics`` on a real uvicorn server, read back with prometheus_client's own parser."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploykit.artifact import Artifact
from deploykit.process import free_port
from deploykit.testing.servers import running
from deploykit_plugins.local.app import ServerConfig, create_app


def scrape(url: str, **headers: str) -> dict[str, list[Any]]:
    """Every sample of the exposition, by sample name."""
    answer = httpx.get(f"{url}/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    found = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {found} in {sorted(samples)}"
    return float(found[0])


@pytest.fixture(scope="module")
def served(artifact: Artifact) -> Any:
    with running(create_app(artifact, ServerConfig(name="bank", revision=3))) as url:
        yield url


def test_requests_latency_rows_and_labels_are_counted(served: str, rows: list[dict], expected: Any) -> None:
    for _ in range(3):
        assert httpx.post(f"{served}/predict", json=rows).status_code == 200
    assert httpx.post(f"{served}/invocations", json={"dataframe_records": rows[:1]}).status_code == 200
    bad = dict(rows[0], age="old")
    assert httpx.post(f"{served}/predict", json=[bad]).status_code == 422
    assert httpx.get(f"{served}/health").status_code == 200
    assert httpx.get(f"{served}/no/such/path").status_code == 404

    samples = scrape(served)
    assert value(samples, "deploykit_requests_total", route="/predict", protocol="deploykit", status="200") == 3
    assert value(samples, "deploykit_requests_total", route="/predict", status="422") == 1
    assert value(samples, "deploykit_requests_total", route="/invocations", protocol="mlflow", status="200") == 1
    assert value(samples, "deploykit_requests_total", route="/health", status="200") == 1
    assert value(samples, "deploykit_requests_total", route="other", status="404") == 1
    assert value(samples, "deploykit_request_duration_seconds_count", route="/predict") == 4
    assert value(samples, "deploykit_request_duration_seconds_sum", route="/predict") > 0
    # 3 + 3 + 3 + 1 rows scored; each predict call is one observation of its row count
    assert value(samples, "deploykit_predict_rows_sum") == 10
    assert 2 <= value(samples, "deploykit_predict_rows_count") <= 4
    assert value(samples, "deploykit_schema_rejections_total", column="age") == 1
    labels = {s.labels["label"]: s.value for s in samples["deploykit_predictions_total"]}
    want: dict[str, float] = {}
    for label in expected.labels * 3 + [expected.labels[0]]:
        want[str(label)] = want.get(str(label), 0) + 1
    assert labels == want
    info = samples["deploykit_model_info"][0].labels
    assert info["name"] == "bank" and info["revision"] == "3"
    assert len(info["sha256"]) == 64


def test_metrics_need_the_token_when_one_is_set(artifact: Artifact) -> None:
    with running(create_app(artifact, ServerConfig(name="bank", token="s3cret"))) as url:
        refused = httpx.get(f"{url}/metrics")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in refused.json()["error"]
        assert "deploykit_requests_total" in scrape(url, Authorization="Bearer s3cret")


def test_metrics_can_be_left_open_or_turned_off(artifact: Artifact) -> None:
    with running(create_app(artifact, ServerConfig(name="bank", token="s3cret", protect_metrics=False))) as url:
        assert "deploykit_model_info" in scrape(url)
    with running(create_app(artifact, ServerConfig(name="bank", metrics=False))) as url:
        assert httpx.get(f"{url}/metrics").status_code == 404


def test_with_two_workers_every_scrape_sums_both_processes(bank_model: Path, bank_rows: list[dict],
                                                           tmp_path: Path) -> None:
    from tests.plugins.local.test_inputlog import _serve

    port = free_port("127.0.0.1")
    proc = _serve(bank_model, tmp_path / "logs", port, workers=2)
    url = f"http://127.0.0.1:{port}"
    try:
        for i in range(30):  # a new connection each, so both workers answer some
            assert httpx.post(f"{url}/predict", json=bank_rows[i % 20:i % 20 + 1]).status_code == 200
        for _ in range(6):  # whichever worker answers the scrape, the counts are the whole server's
            samples = scrape(url)
            assert value(samples, "deploykit_requests_total", route="/predict", status="200") == 30
            assert value(samples, "deploykit_predict_rows_sum") == 30
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    writers = {f.name.split("-")[2] for f in (tmp_path / "logs").glob("inputs-*.parquet")}
    assert len(writers) == 2, "both workers should have served"
