"""The peer replays' models and servers: each model saved once as an MLflow model directory, and
each server (``deploykit serve`` or ``mlflow models serve`` on one of them) started on first use,
once per session, and stopped by its pid at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.local.peers import models, servers
from tests.plugins.mlflow.conftest import Server

SAVERS = {"mixed": models.save_mixed, "iris": models.save_iris, "echo": models.save_echo}


class PeerServers:
    """Model directories and the servers on them, started lazily: ``url("deploykit", "mixed")``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.running: dict[tuple[str, str], Server] = {}

    def model_dir(self, model: str) -> Path:
        """The MLflow model directory of ``model`` (saved on first use)."""
        path = self.folder / model
        if not path.exists():
            SAVERS[model](path)
        return path

    def url(self, kind: str, model: str) -> str:
        """The base URL of the ``kind`` (``deploykit`` or ``mlflow``) server on ``model``."""
        key = (kind, model)
        if key not in self.running:
            start = servers.start_deploykit if kind == "deploykit" else servers.start_mlflow
            self.running[key] = start(self.model_dir(model), self.folder / f"{kind}-{model}.log")
        return self.running[key].url

    def stop(self) -> None:
        """Stop every server started here."""
        for server in self.running.values():
            server.stop()


@pytest.fixture(scope="session")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerServers]:
    """The session's peer servers."""
    running = PeerServers(tmp_path_factory.mktemp("peers"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def want(peers: PeerServers) -> dict[str, Any]:
    """What the models answer in process for the replayed rows."""
    import mlflow.sklearn
    import pandas as pd

    iris = mlflow.sklearn.load_model(str(peers.model_dir("iris")))
    frame = pd.DataFrame(models.IRIS_ROWS, columns=models.IRIS_COLUMNS)
    mixed = mlflow.sklearn.load_model(str(peers.model_dir("mixed")))
    rows = pd.DataFrame(models.mixed_rows(3))
    whole = rows.assign(income=rows["income"].astype(int).astype(float))
    return {"iris": iris.predict(frame).tolist(), "iris_proba": iris.predict_proba(frame).reshape(-1).tolist(),
            "mixed": mixed.predict(rows).tolist(), "mixed_proba": mixed.predict_proba(rows).tolist(),
            "mixed_int_income": mixed.predict(whole).tolist()}
