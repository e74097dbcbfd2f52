"""The ``mlflow`` target plugin: an MLflow registry (alias ``production``) and MLflow's own scoring server.

It also loads MLflow models as artifacts for every target (an ``MLmodel`` folder, ``models:/``
and ``runs:/`` URIs) through ``deploykit_load_artifact``. Registering the plugin imports nothing
from MLflow; ``deploykit_plugins.mlflow.target`` and ``.artifact`` load it on first use
(``pip install 'deploykit[mlflow]'``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.hookspecs import hookimpl

if TYPE_CHECKING:
    from deploykit.artifact import Artifact
    from deploykit.schema import Schema

_URIS = ("models:/", "runs:/")


@hookimpl
def deploykit_register_targets(registry: Any) -> None:
    """Register the mlflow target (needs the ``mlflow`` extra: mlflow, boto3 for S3 artifact stores)."""
    registry.add("mlflow", "deploykit_plugins.mlflow.target:MlflowTarget",
                 settings="deploykit_plugins.mlflow.target:MlflowSettings",
                 requires=("mlflow",), extra="mlflow",
                 description="log and register the model in MLflow, point an alias at it, serve it with "
                             "'mlflow models serve'")


@hookimpl
def deploykit_load_artifact(source: str, schema: str | Path | Schema | None,
                            credentials: str | Path | None) -> Artifact | None:
    """Load ``models:/...`` and ``runs:/...`` URIs and folders with an ``MLmodel`` file; None for anything else."""
    is_uri = source.startswith(_URIS)
    if not is_uri and not (Path(source).expanduser() / "MLmodel").is_file():
        return None
    if importlib.util.find_spec("mlflow") is None:
        from deploykit.errors import ArtifactError

        what = "the registry URI" if is_uri else "the MLflow model directory"
        raise ArtifactError(f"loading {what} {source!r} needs mlflow, which is not installed; "
                            "run: pip install 'deploykit[mlflow]'")
    from deploykit_plugins.mlflow.artifact import load_mlflow_dir, load_registry_artifact

    if is_uri:
        return load_registry_artifact(source, schema, credentials)
    return load_mlflow_dir(source, schema)
