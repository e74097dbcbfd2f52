"""The SageMaker emulator answers the real boto3 client (unstubbed) as SageMaker does where moto does not:
status transitions, missing endpoints, duplicate names, ModelError, UpdateEndpoint, faults, standalone use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from deploykit.artifact import load_artifact
from deploykit_plugins.sagemaker.packaging import build_model_tarball
from tests.emulators.sagemaker import ROLE_ARN, SageMakerEmulator

REGION = "us-east-1"


@pytest.fixture(scope="module")
def emu() -> Iterator[SageMakerEmulator]:
    with SageMakerEmulator() as emulator:
        yield emulator


@pytest.fixture
def clients(emu: SageMakerEmulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    emu.reset()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    session = boto3.session.Session(region_name=REGION)
    return {name: session.client(name, endpoint_url=emu.url) for name in ("sagemaker", "sagemaker-runtime", "s3")}


def _model(clients: dict[str, Any], tmp_path: Path, model_file: Path, name: str) -> None:
    tarball, _ = build_model_tarball(load_artifact(model_file), tmp_path / f"{name}.tar.gz")
    s3, sm = clients["s3"], clients["sagemaker"]
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key=f"{name}/model.tar.gz", Body=tarball.read_bytes())
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE_ARN, PrimaryContainer={
        "Image": "sklearn", "ModelDataUrl": f"s3://models/{name}/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": "primary", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])


def _wait(sm: Any, name: str) -> list[str]:
    seen: list[str] = []
    for _ in range(600):
        status = sm.describe_endpoint(EndpointName=name)["EndpointStatus"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status not in ("Creating", "Updating"):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"endpoint {name} still {seen}")


def test_endpoint_lifecycle_through_boto3(clients: dict[str, Any], emu: SageMakerEmulator, tmp_path: Path,
                                          bank_model: Path, bank_model_v2: Path, bank_rows: list[dict[str, Any]]) -> None:
    sm, rt = clients["sagemaker"], clients["sagemaker-runtime"]
    _model(clients, tmp_path, bank_model, "m1")
    emu.faults.transition_delay = 0.5
    arn = sm.create_endpoint(EndpointName="ep", EndpointConfigName="m1")["EndpointArn"]
    assert arn == f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/ep"
    with pytest.raises(ClientError, match="Cannot update in-progress endpoint"):
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="m1")
    assert _wait(sm, "ep") == ["Creating", "InService"]
    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointConfigName"] == "m1" and described["CreationTime"].year >= 2024
    answer = rt.invoke_endpoint(EndpointName="ep", Body=json.dumps(bank_rows[:2]), ContentType="application/json")
    assert answer["InvokedProductionVariant"] == "primary"
    assert len(json.loads(answer["Body"].read())["predictions"]) == 2

    with pytest.raises(ClientError, match="Cannot create already existing endpoint"):
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="m1")
    with pytest.raises(ClientError, match="Cannot create already existing model"):
        sm.create_model(ModelName="m1", ExecutionRoleArn=ROLE_ARN, PrimaryContainer={"Image": "x"})
    with pytest.raises(ClientError) as model_error:
        rt.invoke_endpoint(EndpointName="ep", Body=b'[{"age": "old"}]', ContentType="application/json")
    error = model_error.value.response
    assert error["Error"]["Code"] == "ModelError" and error["OriginalStatusCode"] == 422
    assert "expected integer" in error["OriginalMessage"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424

    _model(clients, tmp_path, bank_model_v2, "m2")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="m2",
                       DeploymentConfig={"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
                           "Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}}})
    assert _wait(sm, "ep") == ["Updating", "InService"]
    assert sm.describe_endpoint(EndpointName="ep")["EndpointConfigName"] == "m2"
    assert len(emu.containers()) == 1, "the old fleet is stopped after the switch"

    emu.faults.ping_never_healthy, emu.faults.health_timeout = True, 0.5
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="m1")
    _wait(sm, "ep")
    back = sm.describe_endpoint(EndpointName="ep")
    assert (back["EndpointStatus"], back["EndpointConfigName"]) == ("InService", "m2")  # rolled back
    assert "did not pass the ping health check" in back["FailureReason"]

    sm.delete_endpoint(EndpointName="ep")
    with pytest.raises(ClientError, match=r'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:'
                                          r'endpoint/ep"'):
        sm.describe_endpoint(EndpointName="ep")
    assert emu.containers() == []


def test_missing_things_are_errors_not_canned_answers(clients: dict[str, Any]) -> None:
    sm, rt = clients["sagemaker"], clients["sagemaker-runtime"]
    with pytest.raises(ClientError) as missing:
        rt.invoke_endpoint(EndpointName="nowhere", Body=b"[]", ContentType="application/json")
    assert missing.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(ClientError, match="Could not find endpoint configuration"):
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="nothing")
    with pytest.raises(ClientError, match="Could not assume role"):
        sm.create_model(ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/other",
                        PrimaryContainer={"Image": "x"})
    assert sm.list_endpoints()["Endpoints"] == []


def test_fault_knobs_over_http(emu: SageMakerEmulator, clients: dict[str, Any]) -> None:
    def post(path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(f"{emu.url}{path}", data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    assert post("/_emulator/faults", {"throttle": 1, "deny": ["ListEndpoints"]})["throttle"] == 1
    with pytest.raises(urllib.error.HTTPError) as unknown:
        post("/_emulator/faults", {"no_such_fault": True})
    assert unknown.value.code == 400
    sm = boto3.session.Session(region_name=REGION).client(
        "sagemaker", endpoint_url=emu.url, config=__import__("botocore.config").config.Config(retries={"max_attempts": 0}))
    with pytest.raises(ClientError) as throttled:
        sm.list_endpoints()
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    with pytest.raises(ClientError) as denied:
        sm.list_endpoints()
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    post("/_emulator/reset", {})
    assert sm.list_endpoints()["Endpoints"] == []


def test_runs_standalone(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "tests.emulators.sagemaker", "--port", str(port)], cwd=root,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"SageMaker emulator on http://127.0.0.1:{port}")
        sm = boto3.session.Session(region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s").client(
            "sagemaker", endpoint_url=f"http://127.0.0.1:{port}")
        assert sm.list_endpoints()["Endpoints"] == []
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
