"""Registry models as input to every target: ``deploykit deploy models:/NAME@ALIAS --target ...``."""

from __future__ import annotations

import json

import joblib
import pandas as pd
import pytest
from click.testing import CliRunner

import deploykit
from deploykit.artifact import load_artifact, sha256_of
from deploykit.cli import cli
from deploykit_plugins.mlflow.settings import MlflowSettings, connected


def register_runs(project, models: dict, alias: str) -> str:
    """The data scientist's side: one run per candidate model with its metric, each registered;
    the best run's version gets ``alias``. Returns that version."""
    import mlflow
    import mlflow.sklearn

    with connected(MlflowSettings(tracking_uri=project.tracking_uri)) as client:
        experiment = client.create_experiment(f"training-{project.name}")
        for path, auc in models.items():
            with mlflow.start_run(experiment_id=experiment):
                mlflow.log_metric("auc", auc)
                mlflow.sklearn.log_model(joblib.load(path), name="model", registered_model_name=project.name,
                                         serialization_format="cloudpickle", pip_requirements=["scikit-learn"])
        best = client.search_runs([experiment], order_by=["metrics.auc DESC"], max_results=1)[0]
        version = client.search_model_versions(f"name = '{project.name}' and run_id = '{best.info.run_id}'")[0]
        client.set_registered_model_alias(project.name, alias, version.version)
        return str(version.version)


def test_best_run_deploys_to_the_local_target_in_one_command(mlflow_project, bank_model, bank_model_v2, bank_rows):
    p = mlflow_project
    version = register_runs(p, {bank_model: 0.81, bank_model_v2: 0.86}, "production")
    assert version == "2"

    result = CliRunner().invoke(cli, ["deploy", f"models:/{p.name}@production", "--target", "local", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["name"], summary["target"], summary["action"]) == (p.name, "local", "created")

    predictions = deploykit.score(p.name, bank_rows, target="local", **p.kwargs())
    assert predictions.labels == load_artifact(bank_model_v2).predict(pd.DataFrame(bank_rows)).labels
    assert predictions.probabilities is not None  # the sklearn flavor was unwrapped: the local server has predict_proba

    again = deploykit.deploy(f"models:/{p.name}@production", target="local", **p.kwargs())
    assert again.action == "unchanged"  # same registry version, same sha256
    deploykit.delete(p.name, target="local", **p.kwargs())


def test_a_registered_version_is_promoted_not_logged_again(mlflow_project, bank_model, bank_rows):
    p = mlflow_project
    version = register_runs(p, {bank_model: 0.8}, "candidate")
    dep = deploykit.deploy(f"models:/{p.name}@candidate", target="mlflow", name=p.name, **p.kwargs())
    client = p.client()
    assert dep.ids["version"] == version
    assert [v.version for v in client.search_model_versions(f"name = '{p.name}'")] == [version]
    assert client.get_registered_model(p.name).aliases == {"candidate": version, "production": version}
    expected = load_artifact(bank_model).predict(pd.DataFrame(bank_rows)).labels
    assert deploykit.score(p.name, bank_rows, **p.kwargs()).labels == expected


def test_unknown_alias_names_the_aliases_there_are(mlflow_project, bank_model):
    p = mlflow_project
    register_runs(p, {bank_model: 0.8}, "candidate")
    with pytest.raises(deploykit.ArtifactError) as err:
        deploykit.deploy(f"models:/{p.name}@production", target="local", **p.kwargs())
    assert f"registered model {p.name!r} at {p.tracking_uri} has no alias 'production' (its aliases: @candidate)" \
        in str(err.value)
    with pytest.raises(deploykit.ArtifactError, match="there is no registered model 'no-such-model'"):
        deploykit.deploy("models:/no-such-model/1", target="local", **p.kwargs())


@pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer:UserWarning")
def test_mlflow_model_directory_is_unwrapped_to_its_estimator(tmp_path, bank_model, bank_rows):
    import mlflow.sklearn
    from mlflow.models import infer_signature

    model = joblib.load(bank_model)
    frame = pd.DataFrame(bank_rows)
    folder = tmp_path / "bank-mlflow"
    mlflow.sklearn.save_model(model, folder, serialization_format="cloudpickle", input_example=frame.head(1),
                              signature=infer_signature(frame, model.predict(frame)))

    artifact = load_artifact(folder)
    assert (artifact.flavor, artifact.framework, artifact.name) == ("sklearn", "scikit-learn", "bank-mlflow")
    assert artifact.sha256 == sha256_of(folder)
    types = {c.name: c.type for c in artifact.schema.columns}
    assert (types["age"], types["job"], types["balance"]) == ("integer", "string", "float")
    assert artifact.example == bank_rows[0]
    predictions = artifact.predict(frame)
    assert predictions.labels == list(model.predict(frame)) and predictions.probabilities is not None
