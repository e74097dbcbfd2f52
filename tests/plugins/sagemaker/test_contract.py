"""The sagemaker target passes deploykit's TargetContract against the SageMaker emulator with real boto3."""

from __future__ import annotations

from typing import Any

import pytest

from deploykit.testing import Contract, TargetContract
from tests.plugins.sagemaker.conftest import SageMakerProject, boto_client, leftovers


class TestSageMakerContract(TargetContract):
    target = "sagemaker"
    bad_credentials = "sagemaker:\n  region: us-east-1\n  role_arn: deploykit-role\n  bucket: deploykit-models\n"
    bad_credentials_error = r"role_arn.*not an IAM role ARN"

    @pytest.fixture
    def contract_project(self, sm_project: SageMakerProject) -> Any:
        return sm_project

    def remove_outside_deploykit(self, contract: Contract, deployment: Any) -> None:
        boto_client(contract.project.emulator, "sagemaker").delete_endpoint(EndpointName=deployment.name)

    def remote_leftovers(self, contract: Contract) -> list[Any]:
        return leftovers(contract.project.emulator, contract.name)
