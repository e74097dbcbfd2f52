"""Fixtures for the sagemaker target: one SageMaker emulator per session (reset for each test), a project
whose credentials point boto3 at it, and what exists on it for a deployment name."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.emulators.sagemaker import ROLE_ARN, SageMakerEmulator

BUCKET = "deploykit-models"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def sagemaker_session_emulator() -> Iterator[SageMakerEmulator]:
    """The emulator (moto_server subprocess + front), started once: moto takes seconds to import."""
    with SageMakerEmulator() as emulator:
        yield emulator


@pytest.fixture
def emulator(sagemaker_session_emulator: SageMakerEmulator) -> Iterator[SageMakerEmulator]:
    """The emulator, empty (no endpoint, container, fault or S3 object) with the models bucket."""
    sagemaker_session_emulator.reset()
    sagemaker_session_emulator.moto("s3", REGION).create_bucket(Bucket=BUCKET)
    yield sagemaker_session_emulator
    sagemaker_session_emulator.reset()


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """boto3's chain finds these keys (also in CLI subprocesses), and no profile of this machine."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def sagemaker_section(emulator: SageMakerEmulator, **overrides: Any) -> dict[str, Any]:
    """A ``sagemaker`` credentials section for the emulator (None removes a key)."""
    section: dict[str, Any] = {"region": REGION, "role_arn": ROLE_ARN, "bucket": BUCKET,
                               "endpoint_url": emulator.url, "poll_interval": 0.2, "max_retries": 3}
    section.update(overrides)
    return {k: v for k, v in section.items() if v is not None}


@dataclass
class SageMakerProject:
    """A project folder (the cwd) with credentials.yaml pointing at the emulator."""

    dir: Path
    credentials: Path
    metadata: Path
    emulator: SageMakerEmulator

    def write_credentials(self, **overrides: Any) -> None:
        """Rewrite credentials.yaml with the emulator's section, keys overridden (None removes one)."""
        self.credentials.write_text(yaml.safe_dump({"sagemaker": sagemaker_section(self.emulator, **overrides)}))

    def record(self, name: str) -> dict[str, Any] | None:
        """The sagemaker record of ``name`` in metadata.yaml, or None."""
        if not self.metadata.exists():
            return None
        data = yaml.safe_load(self.metadata.read_text()) or {}
        return ((data.get("deployments") or {}).get(name) or {}).get("sagemaker")

    def kwargs(self, name: str) -> dict[str, Any]:
        """The keyword arguments of deploykit's library calls for ``name`` in this project."""
        return {"target": "sagemaker", "credentials": self.credentials, "metadata": self.metadata}


@pytest.fixture
def sm_project(project: Any, emulator: SageMakerEmulator) -> SageMakerProject:
    """The ``project`` folder with a sagemaker section for the emulator."""
    proj = SageMakerProject(project.dir, project.credentials, project.metadata, emulator)
    proj.write_credentials()
    return proj


def leftovers(emulator: SageMakerEmulator, name: str) -> list[str]:
    """Everything on the emulator for deployment ``name``: endpoint, models, configs, S3 objects."""
    sm, s3 = emulator.moto("sagemaker", REGION), emulator.moto("s3", REGION)
    found = [f"endpoint {e}" for e in emulator.endpoints if e == name]
    found += [f"model {m['ModelName']}" for m in sm.list_models()["Models"] if m["ModelName"].startswith(f"{name}-")]
    found += [f"config {c['EndpointConfigName']}" for c in sm.list_endpoint_configs()["EndpointConfigs"]
              if c["EndpointConfigName"].startswith(f"{name}-")]
    found += [f"s3 {o['Key']}" for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
              if f"/{name}/" in f"/{o['Key']}"]
    found += [f"container {c.config}" for c in emulator.containers() if c.config.startswith(f"{name}-")]
    return found


def boto_client(emulator: SageMakerEmulator, service: str) -> Any:
    """A real boto3 client for ``service`` against the emulator's front (as an operator's script)."""
    import boto3

    return boto3.session.Session().client(service, region_name=REGION, endpoint_url=emulator.url)
