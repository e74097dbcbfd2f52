"""The routes the replays rely on, on a plain joblib model (no MLflow metadata): /ping, /version,
/v2/models, params without a params schema, Parquet, and the header-less CSV hint."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.plugins.local.peers.servers import _env
from tests.plugins.mlflow.conftest import free_port, start


@pytest.fixture(scope="module")
def bank(bank_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``deploykit serve bank-model.joblib`` in a real process."""
    port = free_port()
    server = start([sys.executable, "-m", "deploykit", "serve", str(bank_model), "--port", str(port)],
                   f"http://127.0.0.1:{port}", "/health", tmp_path_factory.mktemp("bank") / "serve.log", _env())
    yield server.url
    server.stop()


def test_ping_is_an_empty_200_and_version_is_deploykits(bank: str) -> None:
    import deploykit

    ping = httpx.get(f"{bank}/ping")
    assert (ping.status_code, ping.content) == (200, b"")
    version = httpx.get(f"{bank}/version")
    assert (version.status_code, version.text) == (200, deploykit.__version__)


def test_v2_models_lists_the_one_model(bank: str) -> None:
    assert httpx.get(f"{bank}/v2/models").json() == {"models": ["bank-model"]}


def test_params_without_a_params_schema_are_ignored(bank: str, bank_rows: list[dict]) -> None:
    plain = httpx.post(f"{bank}/invocations", json={"dataframe_records": bank_rows[:3]})
    with_params = httpx.post(f"{bank}/invocations", json={"dataframe_records": bank_rows[:3], "params": {"k": 1}})
    assert with_params.status_code == 200
    assert with_params.json() == plain.json()


def test_parquet_bodies_score_like_json(bank: str, bank_rows: list[dict]) -> None:
    buffer = io.BytesIO()
    pd.DataFrame(bank_rows[:4]).to_parquet(buffer, index=False)
    parquet = httpx.post(f"{bank}/invocations", content=buffer.getvalue(),
                         headers={"content-type": "application/vnd.apache.parquet"})
    records = httpx.post(f"{bank}/invocations", json={"dataframe_records": bank_rows[:4]})
    assert parquet.status_code == 200, parquet.text
    assert parquet.json() == records.json()
    broken = httpx.post(f"{bank}/invocations", content=b"PAR1 not really",
                        headers={"content-type": "application/vnd.apache.parquet"})
    assert broken.status_code == 400
    assert broken.json()["error_code"] == "BAD_REQUEST" and "Parquet" in broken.json()["message"]


def test_csv_without_a_header_says_so(bank: str, bank_rows: list[dict]) -> None:
    body = pd.DataFrame(bank_rows[:2]).to_csv(index=False, header=False)
    response = httpx.post(f"{bank}/invocations", content=body, headers={"content-type": "text/csv"})
    assert response.status_code == 422
    assert "the first line was read as the header" in response.json()["message"]


def test_content_type_parameters_mlflow_does_not_know_are_415(bank: str, bank_rows: list[dict]) -> None:
    body = {"dataframe_records": bank_rows[:1]}
    for ctype in ("application/json; something=something", "application/json; charset=latin-1",
                  "text/csv; charset=utf-16"):
        response = httpx.post(f"{bank}/invocations", json=body, headers={"content-type": ctype})
        assert response.status_code == 415, ctype
        assert response.json()["error_code"] == "BAD_REQUEST"
        assert ctype.split("; ")[1].split("=")[0] in response.json()["message"], response.json()
    for ctype in ("application/json; charset=UTF-8", "application/json;charset=utf-8"):
        assert httpx.post(f"{bank}/invocations", json=body, headers={"content-type": ctype}).status_code == 200
