"""The ``sagemaker`` target plugin: AWS SageMaker real-time endpoints through boto3.

Registering the target imports nothing heavy: boto3 loads only when the target is used.
"""

from __future__ import annotations

from typing import Any

from deploykit.hookspecs import hookimpl


@hookimpl
def deploykit_register_targets(registry: Any) -> None:
    """Register the sagemaker target (needs the ``sagemaker`` extra: boto3)."""
    registry.add("sagemaker", "deploykit_plugins.sagemaker.target:SageMakerTarget",
                 settings="deploykit_plugins.sagemaker.settings:SageMakerSettings",
                 requires=("boto3",), extra="sagemaker",
                 description="AWS SageMaker real-time endpoints (scikit-learn container) via boto3")
