"""The mlflow target with an S3 artifact store (moto's server) and with the deprecated stages."""

from __future__ import annotations

import pandas as pd

import deploykit
from deploykit.artifact import load_artifact


def test_s3_artifact_store(mlflow_s3_project, moto_s3, bank_model, bank_rows):
    p = mlflow_s3_project
    dep = deploykit.deploy(bank_model, target="mlflow", name=p.name, **p.kwargs())
    keys = moto_s3.keys("mlflow/")
    assert any(key.endswith("/artifacts/model.pkl") for key in keys), keys
    expected = load_artifact(bank_model).predict(pd.DataFrame(bank_rows)).labels
    assert deploykit.score(p.name, bank_rows, **p.kwargs()).labels == expected  # the server read it from S3

    from_registry = load_artifact(f"models:/{p.name}@production")  # S3 settings from ./credentials.yaml
    assert from_registry.extra["version"] == dep.ids["version"] == "1"
    assert from_registry.predict(pd.DataFrame(bank_rows)).labels == expected


def test_stage_transitions_instead_of_an_alias(mlflow_project, bank_model):
    p = mlflow_project
    p.write(stage="production")
    dep = deploykit.deploy(bank_model, target="mlflow", name=p.name, **p.kwargs())
    client = p.client()
    assert dep.ids["stage"] == "Production" and "alias" not in dep.ids
    assert client.get_model_version(p.name, "1").current_stage == "Production"
    assert client.get_registered_model(p.name).aliases == {}
    deploykit.delete(p.name, **p.kwargs())
    assert client.get_model_version(p.name, "1").current_stage == "Archived"


def test_skops_format_trusts_the_types_the_model_holds(mlflow_project, bank_model, bank_rows):
    from deploykit_plugins.mlflow.registry import log_and_register
    from deploykit_plugins.mlflow.settings import MlflowSettings, connected

    p = mlflow_project
    settings = MlflowSettings(tracking_uri=p.tracking_uri, serialization_format="skops")
    artifact = load_artifact(bank_model)
    with connected(settings) as client:
        logged = log_and_register(client, settings, artifact, p.name, p.name)
    loaded = load_artifact(logged.model_uri)  # MLflow's loader, with the trusted types written in MLmodel
    assert loaded.extra["serialization_format"] == "skops"
    assert loaded.predict(pd.DataFrame(bank_rows)).labels == artifact.predict(pd.DataFrame(bank_rows)).labels
