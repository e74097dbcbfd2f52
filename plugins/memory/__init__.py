"""The ``memory`` target: deployments that live in this Python process, for users' pipeline tests.

    deploykit.deploy("model.joblib", target="memory", name="m", metadata=tmp / "metadata.yaml")
    deploykit.score("m", rows, metadata=...)

It runs the whole deploy flow (metadata, revisions, rollback, smoke test) with no server, and
scores by calling the model in process. ``MemoryTarget.fail_next`` makes the next call of a
method fail, so users can test their pipeline's error handling.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

from deploykit.artifact import Artifact, load_artifact
from deploykit.deployment import Deployment
from deploykit.errors import DeploymentError, ScoringError
from deploykit.hookspecs import hookimpl
from deploykit.payload import Predictions
from deploykit.target import TargetContext

__all__ = ["MemoryTarget"]


@hookimpl
def deploykit_register_targets(registry: Any) -> None:
    """Register the in-process memory target."""
    registry.add("memory", MemoryTarget, description="in-process deployments for tests (no server)")


class MemoryTarget:
    """Deployer and Scorer whose deployments are entries in a process-wide dict."""

    #: deployment id -> (name, artifact) of what serves now
    served: ClassVar[dict[str, tuple[str, Artifact]]] = {}
    #: method name -> message: the next call of that method raises DeploymentError/ScoringError
    failures: ClassVar[dict[str, str]] = {}
    #: sha256 -> every model this process was asked to serve, for rollback
    kept: ClassVar[dict[str, Artifact]] = {}
    _ids = itertools.count(1)

    def __init__(self, context: TargetContext) -> None:
        self.context = context

    @classmethod
    def fail_next(cls, method: str, message: str = "injected failure") -> None:
        """Make the next call of ``method`` (deploy, update, rollback, delete, wait_ready, score) fail."""
        cls.failures[method] = message

    @classmethod
    def reset(cls) -> None:
        """Forget every deployment and pending failure."""
        cls.served.clear()
        cls.failures.clear()
        cls.kept.clear()

    def _maybe_fail(self, method: str) -> None:
        message = self.failures.pop(method, None)
        if message is not None:
            raise (ScoringError if method == "score" else DeploymentError)(f"memory target: {message}")

    def _serve(self, name: str, artifact: Artifact, revision: int, dep_id: str | None = None) -> Deployment:
        dep_id = dep_id or f"mem-{next(self._ids)}"
        self.kept[artifact.sha256] = artifact
        self.served[dep_id] = (name, artifact)
        return Deployment(name=name, target="memory", revision=revision, status="starting",
                          url=f"memory://{dep_id}", ids={"deployment_id": dep_id, "model_file": str(artifact.path)})

    def deploy(self, artifact: Artifact, name: str) -> Deployment:
        """Hold ``artifact`` under a new deployment id."""
        self._maybe_fail("deploy")
        return self._serve(name, artifact, 1)

    def update(self, current: Deployment, artifact: Artifact) -> Deployment:
        """Serve ``artifact`` under the same deployment id."""
        self._maybe_fail("update")
        return self._serve(current.name, artifact, current.revision + 1, current.ids["deployment_id"])

    def rollback(self, current: Deployment, previous: Deployment) -> Deployment:
        """Serve the model of ``previous`` again under the same id."""
        self._maybe_fail("rollback")
        artifact = self.kept.get(previous.model_sha256 or "")
        if artifact is None:  # another process deployed it: the file must still hold that model
            artifact = load_artifact(previous.ids["model_file"])
            if artifact.sha256 != previous.model_sha256:
                raise DeploymentError(
                    f"revision {previous.revision}'s model file {previous.ids['model_file']!r} has changed since; "
                    "deploy that model again instead of rolling back"
                )
        return self._serve(current.name, artifact, previous.revision, current.ids["deployment_id"])

    def delete(self, current: Deployment) -> None:
        """Drop the deployment."""
        self._maybe_fail("delete")
        self.served.pop(current.ids.get("deployment_id", ""), None)

    def get(self, current: Deployment) -> Deployment:
        """``ready`` if the id is held in this process, else ``stopped``."""
        refreshed = Deployment.from_dict(current.name, current.target, current.to_dict())
        refreshed.status = "ready" if current.ids.get("deployment_id") in self.served else "stopped"
        return refreshed

    def list(self) -> list[Deployment]:
        """Every deployment held in this process."""
        return [Deployment(name=n, target="memory", status="ready", url=f"memory://{i}", ids={"deployment_id": i})
                for i, (n, _) in self.served.items()]

    def wait_ready(self, deployment: Deployment, timeout: float) -> Deployment:
        """Ready at once (unless a failure was injected)."""
        self._maybe_fail("wait_ready")
        deployment.status = "ready"
        return deployment

    def score(self, deployment: Deployment, frame: Any) -> Predictions:
        """Validate ``frame`` against the schema and call the model in process."""
        self._maybe_fail("score")
        held = self.served.get(deployment.ids.get("deployment_id", ""))
        if held is None:
            raise ScoringError(f"memory deployment {deployment.name!r} is not held in this process; deploy it again")
        artifact = held[1]
        validated = artifact.schema.validate(frame) if artifact.schema.columns else frame
        return artifact.predict(validated)
