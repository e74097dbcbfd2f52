"""Fixtures of the local server tests: the bank model served in process and on a real socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from deploykit.artifact import Artifact, load_artifact
from deploykit.payload import Predictions
from deploykit.testing.servers import running
from deploykit_plugins.local.app import ServerConfig, create_app

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
