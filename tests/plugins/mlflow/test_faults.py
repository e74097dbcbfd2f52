"""What the mlflow target does when the tracking server, the scoring server or the registry is not as expected."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

import deploykit
from deploykit.artifact import load_artifact
from deploykit_plugins.mlflow import serving
from deploykit_plugins.mlflow.registry import log_and_register
from deploykit_plugins.mlflow.settings import MlflowSettings, connected
from tests.plugins.mlflow.conftest import free_port
from tests.plugins.mlflow.helpers import fragile_model


def _records(project) -> dict:
    if not project.metadata.exists():
        return {}
    return (yaml.safe_load(project.metadata.read_text()) or {}).get("deployments") or {}


def test_tracking_server_down_is_named_with_the_fix(mlflow_project, bank_model):
    p = mlflow_project
    p.tracking_uri = f"http://127.0.0.1:{free_port()}"
    p.write()
    with pytest.raises(deploykit.DeploymentError) as err:
        deploykit.deploy(bank_model, target="mlflow", name=p.name, **p.kwargs())
    message = str(err.value)
    assert f"MLflow tracking server at {p.tracking_uri} did not answer (connection refused)" in message
    assert "mlflow.tracking_uri" in message
    assert _records(p) == {}
    with pytest.raises(deploykit.ArtifactError, match=f"{p.tracking_uri} did not answer"):
        deploykit.deploy(f"models:/{p.name}@production", target="local", **p.kwargs())


def test_unknown_setting_is_named(mlflow_project, bank_model):
    p = mlflow_project
    p.write(aliass="production")
    with pytest.raises(deploykit.CredentialsError, match=r"'aliass' is not a mlflow setting \(known: .*alias, "):
        deploykit.deploy(bank_model, target="mlflow", name=p.name, **p.kwargs())
    p.write(stage="Prod")
    with pytest.raises(deploykit.CredentialsError, match="'stage' = 'Prod'"):
        deploykit.deploy(bank_model, target="mlflow", name=p.name, **p.kwargs())


def test_scoring_server_that_cannot_start_leaves_nothing_behind(mlflow_project, bank_model, tmp_path_factory):
    p = mlflow_project
    model = fragile_model(tmp_path_factory.mktemp("fragile"), bank_model)
    with pytest.raises(deploykit.DeploymentError) as err:
        deploykit.deploy(model, target="mlflow", name=p.name, **p.kwargs())
    message = str(err.value)
    assert "MLflow scoring server" in message and "exited during start-up" in message
    assert "No module named 'fragile_model'" in message  # the cause, from the server's log
    assert "ends with:" in message  # and the log's tail
    client = p.client()
    assert client.search_model_versions(f"name = '{p.name}'") == []  # the fresh version was removed again,
    assert not _registered(client, p.name)  # and the registered model deploykit had created for it
    assert _records(p) == {}
    front = p.dir / ".deploykit" / "mlflow" / "run" / f"{p.name}.front.json"
    assert not front.exists() or not serving.alive(yaml.safe_load(front.read_text())["pid"])


def _registered(client, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        return False
    return True


def test_failed_update_keeps_the_alias_and_the_serving_version(mlflow_project, bank_model, bank_rows, tmp_path_factory):
    p = mlflow_project
    first = deploykit.deploy(bank_model, target="mlflow", name=p.name, **p.kwargs())
    model = fragile_model(tmp_path_factory.mktemp("fragile"), bank_model)
    with pytest.raises(deploykit.DeploymentError) as err:
        deploykit.deploy(model, target="mlflow", name=p.name, **p.kwargs())
    assert "No module named 'fragile_model'" in str(err.value)
    assert "rolled back to revision 1" in str(err.value)
    client = p.client()
    assert client.get_model_version_by_alias(p.name, "production").version == "1"
    assert [v.version for v in client.search_model_versions(f"name = '{p.name}'")] == ["1"]
    record = _records(p)[p.name]["mlflow"]
    assert (record["revision"], record["ids"]["version"], record["status"]) == (1, "1", "ready")
    assert record["ids"]["pid"] == first.ids["pid"] and record["url"] == first.url
    expected = load_artifact(bank_model).predict(pd.DataFrame(bank_rows)).labels
    assert deploykit.score(p.name, bank_rows, **p.kwargs()).labels == expected


def test_alias_already_pointing_elsewhere_is_not_taken_over(mlflow_project, bank_model):
    p = mlflow_project
    settings = MlflowSettings(tracking_uri=p.tracking_uri)
    with connected(settings) as client:  # someone else registered version 1 and made it production
        theirs = log_and_register(client, settings, load_artifact(bank_model), "someone-else", p.name)
        client.set_registered_model_alias(p.name, "production", theirs.version)
    with pytest.raises(deploykit.DeploymentError) as err:
        deploykit.deploy(bank_model, target="mlflow", name=p.name, **p.kwargs())
    message = str(err.value)
    assert f"alias 'production' of registered model {p.name!r}" in message
    assert "points at version 1" in message and "mlflow.take_over_alias: true" in message
    client = p.client()
    assert [v.version for v in client.search_model_versions(f"name = '{p.name}'")] == ["1"]
    assert client.get_model_version_by_alias(p.name, "production").version == "1"
    assert _records(p) == {}
