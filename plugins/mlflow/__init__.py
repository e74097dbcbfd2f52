"""The ``mlflow`` target plugin: an MLflow registry (alias ``production``) and MLflow's own scoring server.

Registering the target imports nothing from MLflow; ``deploykit_plugins.mlflow.target`` loads
it when the target is first used (``pip install 'deploykit[mlflow]'``).
"""

from __future__ import annotations

from typing import Any

from deploykit.hookspecs import hookimpl


@hookimpl
def deploykit_register_targets(registry: Any) -> None:
    """Register the mlflow target (needs the ``mlflow`` extra: mlflow, boto3 for S3 artifact stores)."""
    registry.add("mlflow", "deploykit_plugins.mlflow.target:MlflowTarget",
                 settings="deploykit_plugins.mlflow.target:MlflowSettings",
                 requires=("mlflow",), extra="mlflow",
                 description="log and register the model in MLflow, point an alias at it, serve it with "
                             "'mlflow models serve'")
