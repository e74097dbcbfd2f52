"""deploykit: deploy a fitted model to any platform through one interface, and score it with any payload.

    import deploykit
    dep = deploykit.deploy("model.joblib", target="local", name="bank-model")
    deploykit.score("bank-model", {"age": 41, "job": "admin.", ...}).labels

Importing deploykit is cheap: FastAPI, uvicorn, pandas and cloud SDKs load only when used.
"""

from deploykit.deployment import Deployment
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
from deploykit.lifecycle import delete, deploy, list_deployments, rollback, score, status
from deploykit.payload import Predictions

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
    "SmokeTestError",
    "TargetError",
    "TargetUnavailableError",
    "UnknownTargetError",
    "delete",
    "deploy",
    "list_deployments",
    "rollback",
    "score",
    "status",
]
