"""deploykit: deploy a fitted model to any platform through one interface, and score it with any payload.

    import deploykit
    dep = deploykit.deploy("model.joblib", target="local", name="bank-model")
    deploykit.score("bank-model", {"age": 41, "job": "admin.", ...}).labels

A scoring script with its files (Neomaril's ``score(data, base_path)`` contract) deploys the same way:

    deploykit.deploy(deploykit.Script("app.py:score", model_file="model.pkl", requirements="requirements.txt"))

Importing deploykit is cheap: FastAPI, uvicorn, pandas and cloud SDKs load only when used.
"""

from typing import TYPE_CHECKING, Any

from deploykit.errors import (
    ArtifactError,
    CredentialsError,
    DeployKitError,
    DeploymentError,
    DeploymentTimeout,
    MetadataError,
    NotDeployedError,
    PayloadError,
    SchemaError,
    ScoringError,
    SmokeTestError,
    TargetError,
    TargetUnavailableError,
    UnknownTargetError,
)

if TYPE_CHECKING:
    from deploykit.batch import batch
    from deploykit.bundle import Script
    from deploykit.deployment import Deployment
    from deploykit.job import submit
    from deploykit.lifecycle import delete, deploy, list_deployments, reconcile, rollback, score, status
    from deploykit.payload import Predictions

# Loaded on first attribute access (PEP 562), so `import deploykit` costs only the error classes.
_LAZY = {
    "Deployment": "deploykit.deployment",
    "Predictions": "deploykit.payload",
    "Script": "deploykit.bundle",
    "batch": "deploykit.batch",
    "delete": "deploykit.lifecycle",
    "deploy": "deploykit.lifecycle",
    "list_deployments": "deploykit.lifecycle",
    "reconcile": "deploykit.lifecycle",
    "rollback": "deploykit.lifecycle",
    "score": "deploykit.lifecycle",
    "status": "deploykit.lifecycle",
    "submit": "deploykit.job",
}

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "CredentialsError",
    "DeployKitError",
    "Deployment",
    "DeploymentError",
    "DeploymentTimeout",
    "MetadataError",
    "NotDeployedError",
    "PayloadError",
    "Predictions",
    "SchemaError",
    "ScoringError",
    "Script",
    "SmokeTestError",
    "TargetError",
    "TargetUnavailableError",
    "UnknownTargetError",
    "batch",
    "delete",
    "deploy",
    "list_deployments",
    "reconcile",
    "rollback",
    "score",
    "status",
    "submit",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deploykit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
