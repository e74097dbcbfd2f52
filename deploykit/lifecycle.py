"""The one deploy flow every target shares, and the library API built on it.

deploy: load the artifact, open the target (credentials checked), lock metadata.yaml, then
no-op (same sha256, healthy) / update as a new revision / create; wait until ready; smoke-score
the example row (an update that fails it is rolled back); record atomically; fire the hook.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.deployment import Deployment, now
from deploykit.errors import DeployKitError, DeploymentError, NotDeployedError, SmokeTestError

if TYPE_CHECKING:
    from deploykit.artifact import Artifact
    from deploykit.metadata import MetadataStore, State
    from deploykit.payload import Predictions
    from deploykit.schema import Schema
    from deploykit.target import Target

__all__ = ["delete", "deploy", "list_deployments", "rollback", "score", "status"]

DEFAULT_TIMEOUT = 600.0
PathLike = str | Path


def _store(metadata: PathLike | None) -> MetadataStore:
    from deploykit.metadata import DEFAULT_PATH, MetadataStore

    return MetadataStore(metadata if metadata is not None else DEFAULT_PATH)


def _open(target: str, credentials: PathLike | None, store: MetadataStore, timeout: float,
          progress: Callable[[str], None] | None) -> Target:
    from deploykit.target import open_target, terminal_progress

    return open_target(target, credentials, store.state_dir, progress or terminal_progress(), timeout)  # type: ignore[no-any-return]


def _smoke(tgt: Target, deployment: Deployment, artifact: Artifact) -> None:
    if not artifact.example:
        return
    import pandas as pd

    try:
        predictions = tgt.score(deployment, pd.DataFrame([artifact.example]))
    except DeployKitError as exc:
        raise SmokeTestError(f"the example row did not score on {deployment.target} ({exc})") from None
    if len(predictions) != 1:
        raise SmokeTestError(f"the example row scored {len(predictions)} predictions instead of 1 on {deployment.target}")


def _next_revision(current: Deployment) -> int:
    return max(current.revisions) + 1


def _succeed(state: State, deployment: Deployment, action: str) -> Deployment:
    from deploykit.plugins import notify

    deployment.action = action
    deployment.updated_at = now()
    state.put(deployment)
    notify(action, deployment)
    return deployment


def deploy(model: PathLike | Artifact, *, target: str = "local", name: str | None = None,
           credentials: PathLike | None = None, metadata: PathLike | None = None,
           schema: PathLike | Schema | None = None, timeout: float = DEFAULT_TIMEOUT, force: bool = False,
           progress: Callable[[str], None] | None = None) -> Deployment:
    """Deploy ``model`` to ``target`` as ``name``: create it, update it as a new revision, or do
    nothing when the same model (sha256) already serves there. Returns the recorded Deployment;
    its ``action`` says which of ``created``, ``updated`` or ``unchanged`` happened.

    ``model`` is a joblib/pickle path, an MLflow model directory or ``models:/NAME@ALIAS``.
    ``credentials`` defaults to ``./credentials.yaml`` (or environment variables),
    ``metadata`` to ``./metadata.yaml``. ``force`` re-deploys an unchanged model.
    """
    from deploykit.artifact import Artifact, load_artifact

    artifact = model if isinstance(model, Artifact) else load_artifact(model, schema, credentials)
    name = name or artifact.name
    store = _store(metadata)
    tgt = _open(target, credentials, store, timeout, progress)
    with store.transaction() as state:
        current = state.find(name, target)
        if current is not None and current.status == "unknown":  # adopted legacy keys
            current = tgt.get(current)
        if current is not None and current.model_sha256 == artifact.sha256 and not force:
            refreshed = tgt.get(current)
            if refreshed.status == "ready":
                refreshed.action = "unchanged"
                return refreshed
        if current is None:
            return _create(state, tgt, artifact, name, timeout)
        return _update(state, tgt, current, artifact, timeout)


def _create(state: State, tgt: Target, artifact: Artifact, name: str, timeout: float) -> Deployment:
    try:
        created = tgt.deploy(artifact, name)
    except DeploymentError as exc:
        if exc.deployment is not None:  # something exists remotely: record it rather than orphan it
            exc.deployment.status = "failed"
            state.put(exc.deployment)
        raise
    created.revision, created.model_sha256 = 1, artifact.sha256
    created.columns = artifact.schema.names
    try:
        ready = tgt.wait_ready(created, timeout)
        _smoke(tgt, ready, artifact)
    except DeployKitError as exc:
        try:
            tgt.delete(created)
        except DeployKitError as cleanup:
            created.status = "failed"
            state.put(created)
            raise DeploymentError(
                f"{exc}; removing the failed deployment also failed ({cleanup}), so it is recorded in "
                f"{state.source} with status 'failed': run 'deploykit delete {name} --target {created.target}'",
                deployment=created,
            ) from None
        raise
    return _succeed(state, ready, "created")


def _update(state: State, tgt: Target, current: Deployment, artifact: Artifact, timeout: float) -> Deployment:
    try:
        updated = tgt.update(current, artifact)
    except DeploymentError as exc:
        if exc.deployment is not None:
            state.put(_with_history(exc.deployment, current, status="failed"))
        raise
    updated = _with_history(updated, current)
    updated.revision, updated.model_sha256 = _next_revision(current), artifact.sha256
    updated.columns = artifact.schema.names
    try:
        ready = tgt.wait_ready(updated, timeout)
        _smoke(tgt, ready, artifact)
    except DeployKitError as exc:
        restored = _restore(state, tgt, updated, current, timeout)
        kind = SmokeTestError if isinstance(exc, SmokeTestError) else DeploymentError
        raise kind(
            f"revision {updated.revision} of {current.name!r} on {current.target} failed ({exc}); "
            f"rolled back to revision {restored.revision}, which serves again"
        ) from None
    return _succeed(state, ready, "updated")


def _with_history(new: Deployment, current: Deployment, status: str | None = None) -> Deployment:
    new.history = [e for e in current.history if e.get("revision") != current.revision] + [current.snapshot()]
    new.created_at = current.created_at
    if status:
        new.status = status
    return new


def _restore(state: State, tgt: Target, failed_new: Deployment, previous: Deployment, timeout: float) -> Deployment:
    """Automatic rollback after a failed update: serve ``previous`` again and record it."""
    try:
        back = tgt.rollback(failed_new, previous)
        back = tgt.wait_ready(back, timeout)
    except DeployKitError as exc:
        failed_new.status = "failed"
        state.put(failed_new)
        raise DeploymentError(
            f"revision {failed_new.revision} failed and rolling back to revision {previous.revision} failed too "
            f"({exc}); recorded with status 'failed': run 'deploykit rollback {previous.name}' or delete it",
            deployment=failed_new,
        ) from None
    back.revision, back.model_sha256, back.columns = previous.revision, previous.model_sha256, previous.columns
    back.history = previous.history
    return _succeed(state, back, "rolled-back")


def rollback(name: str, *, to: int | None = None, target: str | None = None, credentials: PathLike | None = None,
             metadata: PathLike | None = None, timeout: float = DEFAULT_TIMEOUT,
             progress: Callable[[str], None] | None = None) -> Deployment:
    """Serve an earlier revision again (default: the newest revision older than the current one)."""
    store = _store(metadata)
    with store.transaction() as state:
        current = state.get(name, target)
        tgt = _open(current.target, credentials, store, timeout, progress)
        earlier = sorted(int(e["revision"]) for e in current.history if "revision" in e)
        if to is None:
            older = [r for r in earlier if r < current.revision]
            if not older and not earlier:
                raise DeployKitError(
                    f"{name!r} on {current.target} has only revision {current.revision}; nothing to roll back to"
                )
            to = older[-1] if older else earlier[-1]
        if to == current.revision:
            current.action = "unchanged"
            return current
        previous = current.revision_entry(to)
        if previous is None:
            raise DeployKitError(
                f"{name!r} on {current.target} has no revision {to}; known revisions: "
                f"{', '.join(map(str, current.revisions))}"
            )
        back = tgt.rollback(current, previous)
        back = tgt.wait_ready(back, timeout)
        back.revision, back.model_sha256, back.columns = previous.revision, previous.model_sha256, previous.columns
        back.history = [e for e in current.history if e.get("revision") != to] + [current.snapshot()]
        back.created_at = current.created_at
        return _succeed(state, back, "rolled-back")


def delete(name: str, *, target: str | None = None, credentials: PathLike | None = None,
           metadata: PathLike | None = None) -> Deployment:
    """Remove the deployment from its target and its record from metadata.yaml."""
    from deploykit.plugins import notify

    store = _store(metadata)
    with store.transaction() as state:
        current = state.get(name, target)
        tgt = _open(current.target, credentials, store, DEFAULT_TIMEOUT, None)
        tgt.delete(current)
        state.remove(current.name, current.target)
        current.status, current.action = "deleted", "deleted"
        notify("deleted", current)
        return current


def status(name: str, *, target: str | None = None, credentials: PathLike | None = None,
           metadata: PathLike | None = None) -> Deployment:
    """The recorded deployment with its status refreshed from the target (nothing is written)."""
    store = _store(metadata)
    current = store.read().get(name, target)
    tgt = _open(current.target, credentials, store, DEFAULT_TIMEOUT, None)
    return tgt.get(current)


def list_deployments(metadata: PathLike | None = None) -> list[Deployment]:
    """Every deployment recorded in metadata.yaml (no target is contacted)."""
    return _store(metadata).read().all()


def score(name: str, data: Any, *, target: str | None = None, credentials: PathLike | None = None,
          metadata: PathLike | None = None) -> Predictions:
    """Score ``data`` on the deployment ``name`` through its real endpoint.

    ``data`` may be a DataFrame, one record (dict), a list of records, any wire format
    deploykit knows (MLflow, Watson ``input_data``, V2, ...), or a path to a JSON or CSV file.
    """
    from deploykit import payload
    from deploykit.plugins import load_formats

    store = _store(metadata)
    current = store.read().get(name, target)
    if current.status not in ("ready", "unknown"):
        raise NotDeployedError(
            f"{name!r} on {current.target} has status {current.status!r}; redeploy it or roll it back before scoring"
        )
    tgt = _open(current.target, credentials, store, DEFAULT_TIMEOUT, None)
    load_formats()
    frame = payload.decode(read_payload(data), current.columns or None)
    return tgt.score(current, frame)


def read_payload(data: Any) -> Any:
    """A Path (or a str naming an existing .json/.csv file) is read and parsed; anything else passes."""
    import json

    from deploykit.errors import PayloadError

    if isinstance(data, str) and not data.lstrip().startswith(("{", "[")) and Path(data).suffix in (".json", ".csv"):
        data = Path(data)
    if not isinstance(data, Path):
        return data
    try:
        text = data.read_text(encoding="utf-8")
    except OSError as exc:
        raise PayloadError(f"payload file {str(data)!r} cannot be read ({exc.strerror}); pass an existing JSON or CSV file") from None
    if data.suffix == ".csv":
        return text
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PayloadError(f"payload file {str(data)!r} is not valid JSON ({exc}); fix it or send CSV with a header") from None
