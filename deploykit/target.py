"""Targets: the Deployer and Scorer interfaces every backend implements, and what the core hands them.

A plugin registers a target class by name (``registry.add("local", "pkg.mod:LocalTarget")``,
see ``deploykit.registry``); the core owns the deploy flow (``deploykit.lifecycle``, which also
opens targets: ``open_target``, ``open_deployment``) and calls the target through these small
interfaces only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from deploykit.errors import DeploymentTimeout
from deploykit.registry import TargetInfo, TargetRegistry

if TYPE_CHECKING:
    import pandas as pd

    from deploykit.artifact import Artifact
    from deploykit.deployment import Deployment
    from deploykit.operations import PendingOperation
    from deploykit.payload import Predictions

__all__ = ["BatchScorer", "Deployer", "Scorer", "Target", "TargetContext", "TargetInfo", "TargetRegistry", "wait_until"]

T = TypeVar("T")


@runtime_checkable
class Deployer(Protocol):
    """Creates, changes and removes deployments on one platform. Every method blocks until done
    (``wait_ready`` excepted, which blocks until ready); errors are DeploymentError."""

    def deploy(self, artifact: Artifact, name: str) -> Deployment:
        """Create a new deployment of ``artifact`` named ``name``; return its record (revision 1)."""

    def update(self, current: Deployment, artifact: Artifact) -> Deployment:
        """Serve ``artifact`` in place of ``current`` (same endpoint where the platform allows)."""

    def rollback(self, current: Deployment, previous: Deployment) -> Deployment:
        """Serve the earlier revision ``previous`` again in place of ``current``."""

    def delete(self, current: Deployment) -> None:
        """Remove the deployment and what it created remotely."""

    def get(self, current: Deployment) -> Deployment:
        """The record with its status refreshed from the platform (``ready``, ``failed``, ``stopped``...)."""

    def list(self) -> list[Deployment]:
        """Deployments the platform reports (records built from remote state)."""

    def wait_ready(self, deployment: Deployment, timeout: float) -> Deployment:
        """Block until ``deployment`` serves, or raise DeploymentTimeout/DeploymentError."""

    def reconcile(self, operation: PendingOperation, current: Deployment | None) -> Deployment | None:
        """Settle what an interrupted ``operation`` (its process was killed) left on the platform.

        ``current`` is the record metadata.yaml still holds (None after an interrupted create).
        Find what the operation created by ``operation.ids``, or, where an id was never received,
        by the deterministic names derived from ``operation.name``, ``operation.revision`` and
        ``operation.planned`` (``model_sha256``). Return a Deployment to adopt when what the
        operation made is complete, healthy and serves its model; otherwise remove everything it
        made that ``current`` does not use and return None (``current`` keeps serving). Must be
        idempotent: a reconcile may itself be killed and run again."""


@runtime_checkable
class Scorer(Protocol):
    """Scores a table through a deployment's real endpoint."""

    def score(self, deployment: Deployment, frame: pd.DataFrame) -> Predictions:
        """Send ``frame`` in the platform's wire format and decode the answer into Predictions."""


@runtime_checkable
class BatchScorer(Protocol):
    """Optional: a target that scores whole files or tables as a job on the platform (Watson batch
    jobs, SageMaker batch transform). ``deploykit batch --target T NAME ...`` uses it."""

    def score_batch(self, deployment: Deployment, frame: pd.DataFrame, timeout: float) -> Predictions:
        """Score ``frame`` as one platform batch job for ``deployment``; block until done or ``timeout``."""


class Target(Deployer, Scorer, Protocol):
    """A platform backend: both a Deployer and a Scorer."""


@dataclass
class TargetContext:
    """What the core hands a target: its validated settings, a folder for its files, progress output."""

    name: str
    settings: Any
    state_dir: Path
    progress: Callable[[str], None] = field(default=lambda message: None)
    timeout: float = 600.0
    #: Record ids of things that outlive this process the moment they are known
    #: (``context.note(pid=4242, port=8000)``): the lifecycle writes them durably into the pending
    #: operation in metadata.yaml, so a process killed right after leaves nothing unrecorded.
    note: Callable[..., None] = field(default=lambda **ids: None)


def wait_until(check: Callable[[], T | None], *, timeout: float, what: str,
               progress: Callable[[str], None] | None = None, first: float = 0.05, most: float = 2.0) -> T:
    """Call ``check`` with exponential back-off until it returns something other than None.

    ``check`` raises DeploymentError to stop early (a failed deployment). After ``timeout``
    seconds, DeploymentTimeout names ``what`` was awaited.
    """
    start = time.monotonic()
    delay = first
    while True:
        result = check()
        if result is not None:
            return result
        elapsed = time.monotonic() - start
        if elapsed >= timeout:
            raise DeploymentTimeout(
                f"{what} was not ready after {timeout:.0f} s; raise --timeout or check the target's logs"
            )
        if progress is not None:
            progress(f"waiting for {what} ({elapsed:.1f} s)")
        time.sleep(min(delay, max(0.0, timeout - elapsed)))
        delay = min(delay * 1.6, most)

