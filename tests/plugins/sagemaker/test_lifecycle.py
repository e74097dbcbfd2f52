"""The sagemaker target's deploy flow against the SageMaker emulator with the real boto3 client: what is
created on SageMaker and S3, scores equal to the model in process, blue/green update with the old
revision answering meanwhile, a failed update that SageMaker rolls back, rollback, retention, delete."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from typing import Any

import joblib
import pandas as pd
import pytest

import deploykit
from deploykit.errors import DeploymentError, NotDeployedError
from tests.plugins.sagemaker.conftest import BUCKET, SageMakerProject, boto_client, leftovers

NAME = "bank-model"


def _deploy(project: SageMakerProject, model: Any, **kwargs: Any) -> Any:
    return deploykit.deploy(model, name=NAME, timeout=120, **project.kwargs(NAME), **kwargs)


def _score(project: SageMakerProject, rows: Any) -> Any:
    return deploykit.score(NAME, rows, **project.kwargs(NAME))


def test_create_scores_like_the_model_in_process(sm_project: SageMakerProject, bank_model, bank_rows) -> None:
    dep = _deploy(sm_project, bank_model)
    assert (dep.action, dep.revision, dep.status) == ("created", 1, "ready")
    resource = dep.ids["config_name"]
    assert resource.startswith(f"{NAME}-1-") and len(resource) == len(NAME) + 11
    assert dep.ids["model_name"] == resource and dep.ids["endpoint_name"] == NAME
    assert dep.ids["model_data_url"] == f"s3://{BUCKET}/deploykit/{NAME}/{resource[len(NAME) + 1:]}/model.tar.gz"
    assert dep.url.endswith(f"/endpoints/{NAME}/invocations")

    sm = boto_client(sm_project.emulator, "sagemaker")
    model = sm.describe_model(ModelName=resource)
    assert model["PrimaryContainer"]["Image"].endswith("/sagemaker-scikit-learn:1.9-0-cpu-py3")
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    variants = sm.describe_endpoint_config(EndpointConfigName=resource)["ProductionVariants"]
    assert [(v["VariantName"], v["ModelName"], v["InstanceType"]) for v in variants] == [
        ("primary", resource, "ml.m5.large")]
    record = sm_project.record(NAME)
    assert record is not None and record["ids"] == dep.ids
    assert "testing" not in sm_project.metadata.read_text()  # no AWS key in metadata.yaml

    key = dep.ids["model_data_url"].split(f"{BUCKET}/", 1)[1]
    blob = boto_client(sm_project.emulator, "s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        names = tar.getnames()
    assert {"model.joblib", "schema.json", "deploykit.json", "code/inference.py",
            "code/_dkserve/payload/mlflow.py"} <= set(names)
    assert "code/requirements.txt" not in names  # nothing to install: network isolation works

    fitted = joblib.load(bank_model)
    frame = pd.DataFrame(bank_rows)
    predictions = _score(sm_project, bank_rows)
    assert predictions.labels == fitted.predict(frame).tolist()
    assert predictions.probabilities == fitted.predict_proba(frame).tolist()  # JSON floats round-trip exactly
    assert predictions.classes == fitted.classes_.tolist()
    # any payload shape deploykit knows: MLflow's split and Watson's input_data give the same answer
    split = {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}
    assert _score(sm_project, split).labels == predictions.labels
    watson = {"input_data": [{"fields": list(frame.columns), "values": frame.values.tolist()}]}
    assert _score(sm_project, watson).labels == predictions.labels

    again = _deploy(sm_project, bank_model)
    assert (again.action, again.revision, again.ids) == ("unchanged", 1, dep.ids)
    assert sm_project.emulator.calls.count("CreateEndpoint") == 1

    deploykit.delete(NAME, **sm_project.kwargs(NAME))
    assert leftovers(sm_project.emulator, NAME) == []
    with pytest.raises(NotDeployedError):
        deploykit.status(NAME, **sm_project.kwargs(NAME))
    deploykit_again = _deploy(sm_project, bank_model)  # the name is free again
    assert deploykit_again.action == "created"


def test_update_is_blue_green_and_the_old_revision_answers_meanwhile(sm_project: SageMakerProject, bank_model,
                                                                     bank_model_v2, bank_contract_rows) -> None:
    first = _deploy(sm_project, bank_model)
    old = joblib.load(bank_model).predict(pd.DataFrame(bank_contract_rows)).tolist()
    new = joblib.load(bank_model_v2).predict(pd.DataFrame(bank_contract_rows)).tolist()
    assert old != new
    emulator = sm_project.emulator
    emulator.faults.transition_delay = 3.0
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(dep=_deploy(sm_project, bank_model_v2)))
    worker.start()
    while emulator.endpoints[NAME].status != "Updating":
        assert worker.is_alive(), result
        time.sleep(0.05)
    during = _score(sm_project, bank_contract_rows).labels
    assert emulator.endpoints[NAME].status == "Updating"
    worker.join(120)
    assert during == old, "the old revision must answer while the endpoint is Updating"
    updated = result["dep"]
    assert (updated.action, updated.revision) == ("updated", 2)
    assert updated.ids["config_name"].startswith(f"{NAME}-2-") and updated.ids["endpoint_arn"] == first.ids["endpoint_arn"]
    assert _score(sm_project, bank_contract_rows).labels == new
    described = boto_client(emulator, "sagemaker").describe_endpoint(EndpointName=NAME)
    routing = described["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "ALL_AT_ONCE"
    assert emulator.endpoints[NAME].statuses[-2:] == ["Updating", "InService"]
    # the retained revision 1 still exists (keep_revisions 2), so rollback is an update_endpoint back to it
    back = deploykit.rollback(NAME, timeout=120, **sm_project.kwargs(NAME))
    assert (back.revision, back.ids["config_name"]) == (1, first.ids["config_name"])
    assert _score(sm_project, bank_contract_rows).labels == old


def test_update_carries_data_capture_over_and_prunes_beyond_keep_revisions(
        sm_project: SageMakerProject, bank_model, bank_model_v2, contract_like_third) -> None:
    sm_project.write_credentials(data_capture={"destination": f"s3://{BUCKET}/capture", "sampling_percentage": 20})
    first = _deploy(sm_project, bank_model)
    sm_project.write_credentials()  # data_capture removed from the settings: the serving config's is kept
    second = _deploy(sm_project, bank_model_v2)
    sm = boto_client(sm_project.emulator, "sagemaker")
    capture = sm.describe_endpoint_config(EndpointConfigName=second.ids["config_name"])["DataCaptureConfig"]
    assert (capture["DestinationS3Uri"], capture["InitialSamplingPercentage"]) == (f"s3://{BUCKET}/capture", 20)
    third = _deploy(sm_project, contract_like_third)
    assert third.revision == 3
    left = leftovers(sm_project.emulator, NAME)
    assert not any(first.ids["config_name"] in item for item in left), left  # revision 1 pruned
    assert any(second.ids["config_name"] in item for item in left)  # revision 2 retained for rollback
    with pytest.raises(DeploymentError, match=r"revision 1 .*no endpoint config on SageMaker any more.*keep_revisions"):
        deploykit.rollback(NAME, to=1, timeout=120, **sm_project.kwargs(NAME))
    assert deploykit.rollback(NAME, to=2, timeout=120, **sm_project.kwargs(NAME)).revision == 2


@pytest.fixture
def contract_like_third(tmp_path, bank_model) -> Any:
    """A third fit of the example pipeline (another seed): a third revision."""
    import json

    import train_model  # examples/, on sys.path through tests/conftest.py

    from deploykit.schema import Schema

    model, frame = train_model.train(rows=600, seed=5, n_estimators=5)
    path = tmp_path / "bank-model.joblib"
    joblib.dump(model, path)
    (tmp_path / "bank-model.schema.json").write_text(json.dumps(Schema.from_frame(frame).to_dict()))
    return path


def test_failed_update_rolled_back_by_sagemaker_is_a_clear_error(sm_project: SageMakerProject, cli, bank_model,
                                                                 bank_model_v2, bank_rows) -> None:
    first = _deploy(sm_project, bank_model)
    sm_project.emulator.faults.model_fn_error = "model_fn failed: cannot unpickle the model"
    result = cli("deploy", bank_model_v2, "--target", "sagemaker", "--name", NAME, "--timeout", "120")
    assert result.code == 1, result
    assert "SageMaker rolled back the update of endpoint 'bank-model'" in result.err
    assert "cannot unpickle the model" in result.err and "/aws/sagemaker/Endpoints/bank-model" in result.err
    assert "rolled back to revision 1, which serves again" in result.err
    record = sm_project.record(NAME)
    assert record is not None
    assert (record["revision"], record["status"], record["model_sha256"], record["ids"]["config_name"]) == (
        1, "ready", first.model_sha256, first.ids["config_name"])
    left = leftovers(sm_project.emulator, NAME)
    assert not any(f"{NAME}-2-" in item for item in left), left  # the failed revision is removed
    sm_project.emulator.faults.model_fn_error = None
    assert _score(sm_project, bank_rows).labels == joblib.load(bank_model).predict(pd.DataFrame(bank_rows)).tolist()


def test_endpoint_deleted_outside_deploykit_is_created_again(sm_project: SageMakerProject, bank_model) -> None:
    _deploy(sm_project, bank_model)
    boto_client(sm_project.emulator, "sagemaker").delete_endpoint(EndpointName=NAME)
    assert deploykit.status(NAME, **sm_project.kwargs(NAME)).status == "missing"
    again = _deploy(sm_project, bank_model)
    assert (again.action, again.revision, again.status) == ("updated", 2, "ready")
    assert sm_project.emulator.endpoints[NAME].status == "InService"
    assert deploykit.status(NAME, **sm_project.kwargs(NAME)).status == "ready"


def test_cli_deploy_score_rollback_delete(sm_project: SageMakerProject, cli, bank_model, bank_model_v2,
                                          bank_contract_rows, tmp_path) -> None:
    import json

    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(bank_contract_rows))
    _deploy(sm_project, bank_model)  # the CLI's deploy is in test_failed_update_rolled_back_by_sagemaker...
    _deploy(sm_project, bank_model_v2)
    assert cli("rollback", NAME, "--json").json()["revision"] == 1
    scored = cli("score", NAME, rows, "--json")
    assert scored.code == 0, scored
    assert json.loads(scored.out)["predictions"] == joblib.load(bank_model).predict(
        pd.DataFrame(bank_contract_rows)).tolist()
    assert cli("delete", NAME).code == 0
    assert leftovers(sm_project.emulator, NAME) == []
