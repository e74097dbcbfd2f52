"""The mlflow target's whole life against a real `mlflow server` and real MLflow scoring servers.

TestMlflowTarget runs the TargetContract; test_deploy_update_rollback_delete checks what only MLflow
has (registry versions, the alias, the front relay keeping the URL under load)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pandas as pd
import pytest
import yaml

import deploykit
from deploykit.artifact import load_artifact
from deploykit.lifecycle import open_target
from deploykit.testing import TargetContract
from deploykit_plugins.mlflow import serving
from tests.plugins.mlflow.helpers import Hammer, contested_rows


class TestMlflowTarget(TargetContract):
    target = "mlflow"
    bad_credentials = "mlflow:\n  alias: production\n"
    bad_credentials_error = r"the mlflow section is wrong: 'tracking_uri' is missing"

    @pytest.fixture
    def contract_project(self, mlflow_project):
        return mlflow_project

    @pytest.fixture
    def contract_name(self, mlflow_project) -> str:
        return mlflow_project.name  # the tracking server is shared by the session: a registered model per test

    @pytest.fixture
    def contract_models(self, bank_contract_models):
        return bank_contract_models

    def remove_outside_deploykit(self, contract, deployment) -> None:
        pids = [int(deployment.ids[key]) for key in ("pid", "front_pid")]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(serving.alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)


def _record(project) -> dict | None:
    data = yaml.safe_load(project.metadata.read_text()) or {}
    return (data.get("deployments") or {}).get(project.name, {}).get("mlflow")


def test_deploy_update_rollback_delete(mlflow_project, bank_model, bank_model_v2, monkeypatch):
    # `mlflow models serve --env-manager local` execs a bare `uvicorn`: deploykit must find it without PATH help
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    p = mlflow_project
    v1, v2 = load_artifact(bank_model), load_artifact(bank_model_v2)
    rows = contested_rows(v1, v2)
    frame = pd.DataFrame(rows)
    client = p.client()

    dep = deploykit.deploy(bank_model, target="mlflow", name=p.name, **p.kwargs())
    assert (dep.action, dep.status, dep.revision) == ("created", "ready", 1)
    version = client.get_model_version_by_alias(p.name, "production")
    assert version.version == dep.ids["version"] == "1"
    assert version.run_id == dep.ids["run_id"]
    assert client.get_run(dep.ids["run_id"]).data.params["model_sha256"] == v1.sha256
    recorded = _record(p)
    assert recorded["url"] == dep.url and recorded["model_sha256"] == v1.sha256
    assert {"version", "alias", "run_id", "pid", "front_pid", "port", "server_port"} <= set(recorded["ids"])
    assert deploykit.score(p.name, rows, **p.kwargs()).labels == v1.predict(frame).labels
    # labels AND probabilities, the very Predictions the model gives in process (and the local target answers)
    assert deploykit.score(p.name, rows, **p.kwargs()) == v1.predict(frame)
    assert v1.predict(frame).probabilities is not None
    remote = open_target("mlflow", p.credentials, p.dir / ".deploykit").list()  # what the registry reports
    assert [(d.name, d.ids["version"]) for d in remote if d.name == p.name] == [(p.name, "1")]
    for shape in ({"dataframe_records": rows}, {"input_data": [{"fields": list(rows[0]), "values": frame.values.tolist()}]},
                  frame.to_csv(index=False)):  # any payload shape in, the same Predictions out
        assert deploykit.score(p.name, shape, **p.kwargs()).labels == v1.predict(frame).labels
    with pytest.raises(deploykit.ScoringError, match=f"{dep.url}/invocations answered 4"):
        deploykit.score(p.name, [dict(rows[0], age="forty-one")], **p.kwargs())

    again = deploykit.deploy(bank_model, target="mlflow", name=p.name, **p.kwargs())
    assert again.action == "unchanged"
    assert len(client.search_model_versions(f"name = '{p.name}'")) == 1

    with Hammer(dep.url, rows[0]) as hammer:
        updated = deploykit.deploy(bank_model_v2, target="mlflow", name=p.name, **p.kwargs())
    assert hammer.failures == [] and hammer.ok > 0
    assert (updated.action, updated.revision, updated.ids["version"]) == ("updated", 2, "2")
    assert updated.url == dep.url  # the front keeps the URL; the scoring server behind it changed
    assert client.get_model_version_by_alias(p.name, "production").version == "2"
    assert not serving.alive(dep.ids["pid"])
    assert deploykit.score(p.name, rows, **p.kwargs()).labels == v2.predict(frame).labels

    back = deploykit.rollback(p.name, **p.kwargs())
    assert (back.action, back.revision, back.ids["version"]) == ("rolled-back", 1, "1")
    assert client.get_model_version_by_alias(p.name, "production").version == "1"
    assert deploykit.score(p.name, rows, **p.kwargs()).labels == v1.predict(frame).labels

    deploykit.delete(p.name, **p.kwargs())
    assert client.get_registered_model(p.name).aliases == {}
    assert sorted(v.version for v in client.search_model_versions(f"name = '{p.name}'")) == ["1", "2"]
    assert not serving.alive(back.ids["pid"]) and not serving.alive(back.ids["front_pid"])
    assert serving.port_is_free("127.0.0.1", back.ids["port"])
    assert _record(p) is None

