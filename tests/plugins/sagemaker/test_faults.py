"""Bad input and platform failures, each named: settings, credentials, role, region, AccessDenied, a failed
endpoint, ModelError, throttling, the 6 MB limit, an sklearn version without a container."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import deploykit
from deploykit.deployment import Deployment
from deploykit.errors import CredentialsError, DeploymentError, PayloadError, ScoringError
from deploykit.lifecycle import open_target
from tests.plugins.sagemaker.conftest import SageMakerProject, leftovers

NAME = "bank-model"


def _deploy(project: SageMakerProject, model: Any) -> Any:
    return deploykit.deploy(model, name=NAME, timeout=60, **project.kwargs(NAME))


@pytest.mark.parametrize(("overrides", "error"), [
    ({"region": None}, r"'region' is missing"),
    ({"role_arn": None}, r"'role_arn' is missing"),
    ({"bucket": None}, r"'bucket' is missing"),
    ({"role_arn": "deploykit-sagemaker"}, r"'role_arn' = 'deploykit-sagemaker': .*not an IAM role ARN"),
    ({"region": "mars"}, r"'region' = 'mars': .*not an AWS region name"),
    ({"instance_type": "ml.m5.huge"}, r"'instance_type' = 'ml.m5.huge': .*not an instance type.*ml.m5.large"),
    ({"memory_mb": 1500, "max_concurrency": 2}, r"'memory_mb' = 1500: .*1024, 2048"),
    ({"memory_mb": 2048}, r"serverless needs both sagemaker.memory_mb and sagemaker.max_concurrency"),
    ({"bucket": "s3://My_Bucket/x"}, r"'bucket'.*not an S3 bucket name"),
])
def test_bad_settings_are_named(sm_project: SageMakerProject, bank_model, overrides: dict[str, Any],
                                error: str) -> None:
    sm_project.write_credentials(**overrides)
    with pytest.raises(CredentialsError, match=error):
        _deploy(sm_project, bank_model)
    assert sm_project.record(NAME) is None


def test_unknown_access_key_is_named(sm_project: SageMakerProject, bank_model, monkeypatch) -> None:
    sm_project.emulator.faults.access_keys = ["AKIAEMULATORKEY0001"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONG9999")
    with pytest.raises(CredentialsError, match=r"AWS refused access key AKIA\.\.\.9999 \(from boto3's env\)"):
        _deploy(sm_project, bank_model)
    assert sm_project.record(NAME) is None and leftovers(sm_project.emulator, NAME) == []


def test_missing_credentials_are_named(sm_project: SageMakerProject, bank_model, monkeypatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(CredentialsError, match=r"boto3 found no AWS credentials .*AWS_ACCESS_KEY_ID"):
        _deploy(sm_project, bank_model)


def test_role_sagemaker_cannot_assume_is_named(sm_project: SageMakerProject, bank_model) -> None:
    sm_project.write_credentials(role_arn="arn:aws:iam::123456789012:role/no-such-role")
    with pytest.raises(CredentialsError, match=r"cannot assume sagemaker.role_arn = 'arn:aws:iam::123456789012:"
                                               r"role/no-such-role'"):
        _deploy(sm_project, bank_model)
    assert leftovers(sm_project.emulator, NAME) == []  # the uploaded tarball is removed again


def test_region_without_a_known_container_names_image_uri(sm_project: SageMakerProject, bank_model) -> None:
    sm_project.write_credentials(region="us-gov-west-1")
    with pytest.raises(DeploymentError, match=r"region 'us-gov-west-1' .*set sagemaker.image_uri"):
        _deploy(sm_project, bank_model)


def test_access_denied_names_the_call_and_the_permission(sm_project: SageMakerProject, bank_model) -> None:
    sm_project.emulator.faults.deny = ["CreateEndpoint"]
    with pytest.raises(DeploymentError, match=r"creating endpoint 'bank-model': AWS denied sagemaker:CreateEndpoint"):
        _deploy(sm_project, bank_model)
    assert sm_project.record(NAME) is None and leftovers(sm_project.emulator, NAME) == []


def test_resource_limit_is_named(sm_project: SageMakerProject, bank_model) -> None:
    sm_project.emulator.faults.resource_limit = True
    with pytest.raises(DeploymentError, match=r"an AWS quota is used up .*Service Quotas"):
        _deploy(sm_project, bank_model)
    assert leftovers(sm_project.emulator, NAME) == []


def test_failed_endpoint_shows_the_failure_reason_and_leaves_nothing(sm_project: SageMakerProject,
                                                                     bank_model) -> None:
    sm_project.emulator.faults.ping_never_healthy = True
    sm_project.emulator.faults.health_timeout = 1.5
    with pytest.raises(DeploymentError, match=r"endpoint 'bank-model' is Failed: The primary container .*did not "
                                              r"pass the ping health check.*/aws/sagemaker/Endpoints/bank-model"):
        _deploy(sm_project, bank_model)
    assert sm_project.record(NAME) is None
    assert leftovers(sm_project.emulator, NAME) == []


def test_bad_tarball_fails_the_endpoint(sm_project: SageMakerProject, bank_model) -> None:
    sm_project.emulator.faults.bad_tarball = True
    with pytest.raises(DeploymentError, match=r"Failed to extract model data archive"):
        _deploy(sm_project, bank_model)
    assert leftovers(sm_project.emulator, NAME) == []


def test_model_errors_carry_the_container_message(sm_project: SageMakerProject, bank_model, bank_rows) -> None:
    _deploy(sm_project, bank_model)
    target = open_target("sagemaker", sm_project.credentials, sm_project.dir / ".deploykit")
    record = deploykit.status(NAME, **sm_project.kwargs(NAME))
    bad = pd.DataFrame([{**bank_rows[0], "age": "forty"}])
    with pytest.raises(ScoringError, match=r"refused the request \(container status 422\): .*column 'age'.*"
                                           r"expected integer, got 'forty'") as caught:
        target.score(record, bad)
    assert caught.value.status == 422
    sm_project.emulator.faults.container_5xx = 1
    with pytest.raises(ScoringError, match=r"container status 500\): emulated container failure"):
        target.score(record, pd.DataFrame(bank_rows[:1]))
    assert len(target.score(record, pd.DataFrame(bank_rows[:1]))) == 1  # the next call is fine


def test_throttling_is_retried_then_named(sm_project: SageMakerProject, bank_model, bank_rows) -> None:
    _deploy(sm_project, bank_model)
    sm_project.emulator.faults.throttle = 2  # max_retries is 3: retried by botocore's standard mode
    assert len(deploykit.score(NAME, bank_rows, **sm_project.kwargs(NAME))) == len(bank_rows)
    sm_project.write_credentials(max_retries=0)
    sm_project.emulator.faults.throttle = 1
    with pytest.raises(ScoringError, match=r"AWS kept throttling the call after 0 retries.*sagemaker.max_retries"):
        deploykit.score(NAME, bank_rows, **sm_project.kwargs(NAME))


def test_body_over_6_mb_is_refused_before_sending(sm_project: SageMakerProject) -> None:
    target = open_target("sagemaker", sm_project.credentials, sm_project.dir / ".deploykit")
    record = Deployment(name=NAME, target="sagemaker", status="ready", ids={"endpoint_name": NAME},
                        columns=["age", "job"])
    frame = pd.DataFrame({"age": range(200_000), "job": ["management-and-more-text"] * 200_000})
    with pytest.raises(PayloadError, match=r"200000 row\(s\) make a request of \d+ bytes, over SageMaker's "
                                           r"invoke_endpoint limit of 6291456 bytes.*score fewer rows"):
        target.score(record, frame)
    assert "InvokeEndpoint" not in sm_project.emulator.calls


def test_sklearn_version_without_container_is_refused_with_the_list() -> None:
    from deploykit_plugins.sagemaker.images import image_uri

    with pytest.raises(DeploymentError, match=r"scikit-learn 1.3.2, .*exists for 0.23, 1.0, 1.2, 1.4, 1.9 only.*"
                                              r"sagemaker.image_uri"):
        image_uri("us-east-1", "1.3.2")
    assert image_uri("eu-west-1", "1.2.1") == \
        "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    assert image_uri("cn-north-1", "1.4.2").startswith("450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/")


def test_image_uri_overrides_the_table(sm_project: SageMakerProject, bank_model) -> None:
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-sklearn:1"
    sm_project.write_credentials(image_uri=image)
    dep = _deploy(sm_project, bank_model)
    assert dep.ids["image_uri"] == image
