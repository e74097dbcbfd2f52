"""The ``memory`` target: deployments that live in this Python process, for users' pipeline tests.

    deploykit.deploy("model.joblib", target="memory", name="m", metadata=tmp / "metadata.yaml")
    deploykit.score("m", rows, metadata=...)

It runs the whole deploy flow (metadata, revisions, rollback, smoke test) with no server, and
scores by calling the model in process. What it "serves" is held by a ``MemoryPlatform``; the
``memory`` fixture of ``deploykit.testing`` gives each test a fresh one. ``fail_next`` makes the
next call of a step fail with the error you choose, so users can test their pipeline's error
handling::

    memory.fail_next(Step.UPDATE, DeploymentError("quota exceeded"))
    MemoryTarget.fail_next("update")          # the same on the current platform

Crash safety: the target notes each deployment id the moment it makes one (``context.note``) and
``reconcile`` settles an interrupted operation against the platform. The platform lives in one
process, so a *killed* deploy takes it along: the memory target's crash tests are in-process
(``TargetContract``'s reconcile tests record the pending operation as a killed process would);
the cross-process crash matrix runs on the targets whose platform outlives the process.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from deploykit.artifact import Artifact, load_artifact
from deploykit.deployment import Deployment
from deploykit.errors import DeployKitError, DeploymentError, ScoringError
from deploykit.hookspecs import hookimpl
from deploykit.payload import Predictions
from deploykit.target import TargetContext
from deploykit.testing.isolation import on_reset

if TYPE_CHECKING:
    import pandas as pd

    from deploykit.operations import PendingOperation

__all__ = ["MemoryPlatform", "MemoryTarget", "Step"]


def _refuse_script(artifact: Artifact) -> None:
    """The memory target scores in the calling process, and a scoring script's code runs only in a
    serving process of its own: refuse a bundle by name, with the target that runs it."""
    if artifact.flavor == "script":
        from deploykit.errors import DeploymentError

        raise DeploymentError(f"the memory target does not run scoring scripts ({artifact.name!r} is one): it scores "
                              "in this process, and a script's code runs only in its own server process; deploy it "
                              "with --target local (or mlflow, watsonml, sagemaker)")


@hookimpl
def deploykit_register_targets(registry: Any) -> None:
    """Register the in-process memory target."""
    registry.add("memory", MemoryTarget, description="in-process deployments for tests (no server)")


class Step(StrEnum):
    """A call of the memory target that ``fail_next`` can make fail."""

    DEPLOY = "deploy"
    UPDATE = "update"
    ROLLBACK = "rollback"
    DELETE = "delete"
    GET = "get"
    LIST = "list"
    WAIT_READY = "wait_ready"
    SCORE = "score"
    RECONCILE = "reconcile"


def _step(step: Step | str) -> Step:
    try:
        return Step(step)
    except ValueError:
        known = ", ".join(s.value for s in Step)
        raise ValueError(f"the memory target has no step {step!r} to fail; pass one of: {known}") from None


class MemoryPlatform:
    """The memory target's platform: what serves now, every model it was given, failures to inject."""

    def __init__(self) -> None:
        #: deployment id -> (name, artifact) of what serves now
        self.served: dict[str, tuple[str, Artifact]] = {}
        #: sha256 -> every model this platform was asked to serve, for rollback
        self.kept: dict[str, Artifact] = {}
        self._failures: dict[Step, list[Exception]] = {}
        self._ids = itertools.count(1)

    def new_id(self) -> str:
        """A deployment id not used on this platform before."""
        return f"mem-{next(self._ids)}"

    def fail_next(self, step: Step | str, error: type[Exception] | Exception | str | None = None, *,
                  message: str = "injected failure", times: int = 1) -> None:
        """Make the next ``times`` calls of ``step`` raise ``error``.

        ``error`` is an exception class (built with ``message``), an exception instance, or a
        message string; by default a ScoringError for ``score`` and a DeploymentError otherwise.
        """
        chosen = _step(step)
        if isinstance(error, str):
            message, error = error, None
        if isinstance(error, Exception):
            raised = error
        else:
            cls = error or (ScoringError if chosen is Step.SCORE else DeploymentError)
            if not (isinstance(cls, type) and issubclass(cls, Exception)):
                raise TypeError(f"fail_next needs an exception class, an exception or a message, got {error!r}")
            raised = cls(f"memory target: {message}")
        self._failures.setdefault(chosen, []).extend([raised] * times)

    def check(self, step: Step) -> None:
        """Raise the failure queued for ``step``, if any (the target calls this first in every step)."""
        queued = self._failures.get(step)
        if queued:
            raise queued.pop(0)

    def pending_failures(self) -> dict[str, int]:
        """Step name -> how many injected failures have not fired yet."""
        return {step.value: len(errors) for step, errors in self._failures.items() if errors}

    def names(self) -> list[str]:
        """Names of the deployments that serve now, sorted."""
        return sorted(name for name, _ in self.served.values())

    def serving(self, name: str) -> Artifact | None:
        """The model deployment ``name`` serves now, or None."""
        return next((artifact for n, artifact in self.served.values() if n == name), None)

    def remove(self, name: str) -> None:
        """Drop deployment ``name`` behind deploykit's back (as if someone deleted it on the platform)."""
        for dep_id in [i for i, (n, _) in self.served.items() if n == name]:
            del self.served[dep_id]

    def reset(self) -> None:
        """Forget every deployment, kept model and pending failure."""
        self.served.clear()
        self.kept.clear()
        self._failures.clear()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter((dep_id, name) for dep_id, (name, _) in self.served.items())


class MemoryTarget:
    """Deployer and Scorer whose deployments are entries of the current ``MemoryPlatform``."""

    #: the platform every MemoryTarget of this process uses; ``deploykit.testing`` swaps in a fresh one per test
    platform: ClassVar[MemoryPlatform] = MemoryPlatform()

    def __init__(self, context: TargetContext) -> None:
        self.context = context

    @classmethod
    def fail_next(cls, step: Step | str, error: type[Exception] | Exception | str | None = None, *,
                  message: str = "injected failure", times: int = 1) -> None:
        """Make the next call of ``step`` (deploy, update, rollback, delete, get, list, wait_ready, score)
        fail on the current platform; see ``MemoryPlatform.fail_next``."""
        cls.platform.fail_next(step, error, message=message, times=times)

    @classmethod
    def reset(cls) -> None:
        """Forget every deployment and pending failure of the current platform."""
        cls.platform.reset()

    @classmethod
    def use(cls, platform: MemoryPlatform | None = None) -> MemoryPlatform:
        """Make ``platform`` (default: a fresh one) the one every MemoryTarget uses; return it."""
        cls.platform = platform if platform is not None else MemoryPlatform()
        return cls.platform

    def _serve(self, name: str, artifact: Artifact, revision: int, dep_id: str | None = None) -> Deployment:
        dep_id = dep_id or self.platform.new_id()
        self.context.note(deployment_id=dep_id)  # before it exists: a crash right after still finds it
        self.platform.kept[artifact.sha256] = artifact
        self.platform.served[dep_id] = (name, artifact)
        return self._record(dep_id, name, artifact, revision)

    @staticmethod
    def _record(dep_id: str, name: str, artifact: Artifact, revision: int) -> Deployment:
        return Deployment(name=name, target="memory", revision=revision, status="starting",
                          url=f"memory://{dep_id}", ids={"deployment_id": dep_id, "model_file": str(artifact.path)})

    def deploy(self, artifact: Artifact, name: str) -> Deployment:
        """Hold ``artifact`` under a new deployment id (a scoring-script bundle is refused: see ``_refuse_script``)."""
        _refuse_script(artifact)
        self.platform.check(Step.DEPLOY)
        return self._serve(name, artifact, 1)

    def update(self, current: Deployment, artifact: Artifact) -> Deployment:
        """Serve ``artifact`` under the same deployment id."""
        _refuse_script(artifact)
        self.platform.check(Step.UPDATE)
        return self._serve(current.name, artifact, current.revision + 1, current.ids["deployment_id"])

    def rollback(self, current: Deployment, previous: Deployment) -> Deployment:
        """Serve the model of ``previous`` again under the same id."""
        self.platform.check(Step.ROLLBACK)
        artifact = self.platform.kept.get(previous.model_sha256 or "")
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
        self.platform.check(Step.DELETE)
        self.platform.served.pop(current.ids.get("deployment_id", ""), None)

    def reconcile(self, operation: PendingOperation, current: Deployment | None) -> Deployment | None:
        """Adopt what ``operation`` made when the platform serves its planned model under the id it
        noted (or, for a create that noted none, under the deployment's name); otherwise put back
        ``current``'s model and drop every other deployment of that name. Idempotent."""
        self.platform.check(Step.RECONCILE)
        name, planned = operation.name, operation.planned.get("model_sha256")
        keep = current.ids.get("deployment_id") if current is not None else None
        made = operation.ids.get("deployment_id") or keep
        if made is None:  # no id came back: the deterministic name is all there is
            made = next((i for i, n in self.platform if n == name), None)
        held = self.platform.served.get(made) if made is not None else None
        adopted = None
        if made is not None and held is not None and held[0] == name and held[1].sha256 == planned:
            adopted = self._record(made, name, held[1], operation.revision)
            adopted.status = "ready"
            keep = made
        elif keep is not None and current is not None:
            # the interrupted update or rollback swapped the model under current's id: put current's back
            original = self.platform.kept.get(current.model_sha256 or "")
            if original is not None:
                self.platform.served[keep] = (name, original)
        for dep_id in [i for i, n in self.platform if n == name and i != keep]:
            del self.platform.served[dep_id]
        return adopted

    def get(self, current: Deployment) -> Deployment:
        """``ready`` if the id is held on the platform, else ``stopped``."""
        self.platform.check(Step.GET)
        refreshed = Deployment.from_dict(current.name, current.target, current.to_dict())
        refreshed.status = "ready" if current.ids.get("deployment_id") in self.platform.served else "stopped"
        return refreshed

    def list(self) -> list[Deployment]:
        """Every deployment held on the platform."""
        self.platform.check(Step.LIST)
        return [Deployment(name=n, target="memory", status="ready", url=f"memory://{i}", ids={"deployment_id": i})
                for i, n in self.platform]

    def wait_ready(self, deployment: Deployment, timeout: float) -> Deployment:
        """Ready at once (unless a failure was injected)."""
        self.platform.check(Step.WAIT_READY)
        deployment.status = "ready"
        return deployment

    def score(self, deployment: Deployment, frame: pd.DataFrame) -> Predictions:
        """Validate ``frame`` against the schema and call the model in process.

        A model that raises is a ScoringError naming the exception, as a server's 500 would be."""
        self.platform.check(Step.SCORE)
        held = self.platform.served.get(deployment.ids.get("deployment_id", ""))
        if held is None:
            raise ScoringError(f"memory deployment {deployment.name!r} is not held in this process "
                               f"(status 'stopped'); deploy it again")
        artifact = held[1]
        validated = artifact.schema.validate(frame) if artifact.schema.columns else frame
        try:
            return artifact.predict(validated)  # type: ignore[no-any-return]
        except DeployKitError:
            raise
        except Exception as exc:  # the user's model failed: report it like an endpoint's error answer
            raise ScoringError(f"the model of memory deployment {deployment.name!r} raised "
                               f"{type(exc).__name__}: {exc}") from exc


# deploykit.testing's pytest plugin gives every test an empty platform
on_reset(MemoryTarget.use)
