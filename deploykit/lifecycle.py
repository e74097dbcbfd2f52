"""The one deploy flow every target shares, and the library API built on it.

deploy: hash the artifact, check the name, open the target (credentials checked), lock
metadata.yaml, then no-op (same sha256, healthy: the model is never unpickled) / update as a
new revision / create; wait until ready; smoke-score the example row (an update that fails it
is rolled back); record atomically; then, once the record is written, fire the
``deploykit_deployment_changed`` hook (a failing listener is a warning, never a failed deploy).

``open_target`` and ``open_deployment`` are the one way for the core and plugins to construct a
target (credentials validated) and to open a recorded deployment with its target.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.deployment import Deployment, now
from deploykit.errors import DeployKitError, DeploymentError, InvalidNameError, NotDeployedError, SmokeTestError

if TYPE_CHECKING:
    from deploykit.artifact import Artifact
    from deploykit.metadata import MetadataStore, State
    from deploykit.payload import Predictions
    from deploykit.schema import Schema
    from deploykit.target import Target

__all__ = ["DEFAULT_TIMEOUT", "delete", "deploy", "list_deployments", "open_deployment", "open_target", "rollback",
           "save_ids", "score", "status"]

DEFAULT_TIMEOUT = 600.0
PathLike = str | Path
#: (event, deployment) pairs to announce once the transaction that recorded them is written.
_Events = list[tuple[str, Deployment]]


def _store(metadata: PathLike | None) -> MetadataStore:
    from deploykit.metadata import DEFAULT_PATH, MetadataStore

    return MetadataStore(metadata if metadata is not None else DEFAULT_PATH)


def open_target(name: str, credentials: PathLike | None, state_dir: Path,
                progress: Callable[[str], None] | None = None, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Find, import and construct target ``name`` with its validated credentials section.

    ``state_dir`` is where the target keeps its files (``.deploykit/`` beside metadata.yaml).
    Raises UnknownTargetError, TargetUnavailableError (SDK missing) or CredentialsError.
    """
    from deploykit.credentials import load_section, validate_section
    from deploykit.plugins import get_registry
    from deploykit.target import TargetContext

    info = get_registry().info(name)
    cls = info.load()
    section = load_section(name, credentials)
    model = info.settings_model()
    settings = validate_section(model, section, name) if model is not None else section
    context = TargetContext(name, settings, state_dir, progress or (lambda m: None), timeout)
    return cls(context)


def _open(target: str, credentials: PathLike | None, store: MetadataStore, timeout: float,
          progress: Callable[[str], None] | None) -> Target:
    from deploykit.progress import terminal_progress

    return open_target(target, credentials, store.state_dir, progress or terminal_progress(), timeout)  # type: ignore[no-any-return]


def open_deployment(name: str, *, target: str | None = None, credentials: PathLike | None = None,
                    metadata: PathLike | None = None, timeout: float = DEFAULT_TIMEOUT,
                    progress: Callable[[str], None] | None = None) -> tuple[Deployment, Target]:
    """The recorded deployment ``name`` (on ``target``, needed only when the name is on several)
    and its target, constructed with validated credentials: what a plugin needs to act on a
    deployment (batch scoring, a custom command) without rebuilding the lifecycle.

    Nothing is locked or written; record new ids with ``save_ids``. ``progress`` defaults to a
    terminal printer on a TTY. Raises NotDeployedError (listing what is recorded), or the
    target's errors (UnknownTargetError, TargetUnavailableError, CredentialsError).
    """
    store = _store(metadata)
    current = store.read().get(name, target)
    return current, _open(current.target, credentials, store, timeout, progress)


def save_ids(deployment: Deployment, *, metadata: PathLike | None = None) -> Deployment:
    """Merge ``deployment.ids`` into its record in metadata.yaml (locked read-modify-write) and
    return the record written. For ids a target learns after the deploy (a batch deployment).

    The record's other fields are re-read under the lock, so a deploy that finished meanwhile
    is kept; NotDeployedError if the record was deleted meanwhile.
    """
    store = _store(metadata)
    with store.transaction() as state:
        current = state.get(deployment.name, deployment.target)
        merged = {**current.ids, **deployment.ids}
        if merged != current.ids:
            current.ids = merged
            state.put(current)
        return current


@contextlib.contextmanager
def _changes(store: MetadataStore) -> Iterator[tuple[State, _Events]]:
    """A metadata transaction whose recorded events are announced only after it was written.

    A block that raises still writes what it recorded (see ``MetadataStore.transaction``), so
    its events (an automatic rollback) are announced too; a failed write announces nothing.
    """
    events: _Events = []
    state: State | None = None
    try:
        with store.transaction() as state:
            yield state, events
    finally:
        if events and state is not None and not state.changed:
            from deploykit.plugins import notify

            for event, deployment in events:
                notify(event, deployment)


def _safe_for_files(name: str) -> bool:
    """False for a name that would escape ``.deploykit/`` when used as a file or folder name."""
    return isinstance(name, str) and bool(name) and not any(c in name for c in "/\\\0") and name not in (".", "..")


def _deployment_name(name: str | None, artifact: Artifact, state: State, target: str) -> str:
    """The name to deploy as, checked: a NEW deployment must pass ``check_name``; an existing
    record keeps its name unless that name would escape ``.deploykit/``."""
    from deploykit.names import check_name, name_from_file

    if name is None:
        stem = artifact.name
        name = name_from_file(stem)
        if stem != name and _safe_for_files(stem) and state.find(name, target) is None \
                and state.find(stem, target) is not None:
            name = stem  # recorded under the file name before names were checked: keep updating that record
    if not _safe_for_files(name):
        raise InvalidNameError(
            f"deployment name {name!r} would be used as a path outside .deploykit/ (it contains '/', '\\' or NUL, "
            "or is '.' or '..'); use letters, digits and single hyphens (e.g. 'bank-model'); pass --name"
        )
    if state.find(name, target) is None:
        check_name(name)
    return name


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


def _succeed(state: State, events: _Events, deployment: Deployment, action: str) -> Deployment:
    deployment.action = action
    deployment.updated_at = now()
    state.put(deployment)
    events.append((action, deployment))
    return deployment


def deploy(model: PathLike | Artifact, *, target: str = "local", name: str | None = None,
           credentials: PathLike | None = None, metadata: PathLike | None = None,
           schema: PathLike | Schema | None = None, timeout: float = DEFAULT_TIMEOUT, force: bool = False,
           progress: Callable[[str], None] | None = None) -> Deployment:
    """Deploy ``model`` to ``target`` as ``name``: create it, update it as a new revision, or do
    nothing when the same model (sha256) already serves there. Returns the recorded Deployment;
    its ``action`` says which of ``created``, ``updated`` or ``unchanged`` happened.

    ``model`` is a joblib/pickle path, an MLflow model directory or ``models:/NAME@ALIAS``.
    ``name`` defaults to the file name made valid (``bank_model.joblib`` -> ``bank-model``); a
    new deployment's name must pass ``deploykit.names.check_name`` (InvalidNameError, nothing
    written). ``credentials`` defaults to ``./credentials.yaml`` (or environment variables),
    ``metadata`` to ``./metadata.yaml``. ``force`` re-deploys an unchanged model.

    A pickle file is hashed first and unpickled only when something will be deployed, so an
    unchanged deploy costs a hash, a metadata read and one status check.
    """
    from deploykit.artifact import Artifact, load_artifact

    artifact = model if isinstance(model, Artifact) else load_artifact(model, schema, credentials, defer=True)
    store = _store(metadata)
    name = _deployment_name(name, artifact, store.read(), target)
    tgt = _open(target, credentials, store, timeout, progress)
    with _changes(store) as (state, events):
        current = state.find(name, target)
        if current is not None and current.status == "unknown":  # adopted legacy keys
            current = tgt.get(current)
        if current is not None and current.model_sha256 == artifact.sha256 and not force:
            refreshed = tgt.get(current)
            if refreshed.status == "ready":
                refreshed.action = "unchanged"
                return refreshed
        if current is None:
            from deploykit.names import check_name

            check_name(name)  # again under the lock: the record seen before may have been deleted since
            return _create(state, events, tgt, artifact, name, timeout)
        return _update(state, events, tgt, current, artifact, timeout)


def _ready_model(tgt: Target, artifact: Artifact) -> None:
    """Unpickle the model before anything is created, so a file that holds no model fails first.

    A target whose ``loads_model_itself`` is true (its server process loads the file; its deploy
    reads no ``model``/``framework``/``classes``) is spared that when the schema is already known
    (given or a sidecar): the deploying process then never imports scikit-learn, and the model
    is checked only if the deployment fails, to name the cause (see ``_failure``).
    """
    if artifact.loaded:
        return
    if getattr(tgt, "loads_model_itself", False) and "schema" in artifact.__dict__:
        _import_in_background("pandas")  # the smoke test needs it; import it while the server starts
        return
    artifact.load()


def _import_in_background(module: str) -> None:
    import importlib
    import sys
    import threading

    if module not in sys.modules:
        threading.Thread(target=importlib.import_module, args=(module,), name=f"deploykit-import-{module}",
                         daemon=True).start()


def _failure(artifact: Artifact, exc: DeployKitError) -> DeployKitError:
    """The error to report for a failed deployment: the model's own ArtifactError when the file
    holds no model (clearer than a server's log tail), else ``exc``."""
    from deploykit.errors import ArtifactError

    try:
        artifact.load()
    except ArtifactError as error:
        return error
    return exc


def _create(state: State, events: _Events, tgt: Target, artifact: Artifact, name: str, timeout: float) -> Deployment:
    _ready_model(tgt, artifact)
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
    except DeployKitError as failed:
        cause = _failure(artifact, failed)
        try:
            tgt.delete(created)
        except DeployKitError as cleanup:
            created.status = "failed"
            state.put(created)
            raise DeploymentError(
                f"{cause}; removing the failed deployment also failed ({cleanup}), so it is recorded in "
                f"{state.source} with status 'failed': run 'deploykit delete {name} --target {created.target}'",
                deployment=created,
            ) from None
        raise cause from None
    return _succeed(state, events, ready, "created")


def _update(state: State, events: _Events, tgt: Target, current: Deployment, artifact: Artifact,
            timeout: float) -> Deployment:
    _ready_model(tgt, artifact)
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
    except DeployKitError as failed:
        cause = _failure(artifact, failed)
        restored = _restore(state, events, tgt, updated, current, timeout)
        kind = SmokeTestError if isinstance(cause, SmokeTestError) else DeploymentError
        raise kind(
            f"revision {updated.revision} of {current.name!r} on {current.target} failed ({cause}); "
            f"rolled back to revision {restored.revision}, which serves again"
        ) from None
    return _succeed(state, events, ready, "updated")


def _with_history(new: Deployment, current: Deployment, status: str | None = None) -> Deployment:
    new.history = [e for e in current.history if e.get("revision") != current.revision] + [current.snapshot()]
    new.created_at = current.created_at
    if status:
        new.status = status
    return new


def _restore(state: State, events: _Events, tgt: Target, failed_new: Deployment, previous: Deployment, timeout: float) -> Deployment:
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
    return _succeed(state, events, back, "rolled-back")


def rollback(name: str, *, to: int | None = None, target: str | None = None, credentials: PathLike | None = None,
             metadata: PathLike | None = None, timeout: float = DEFAULT_TIMEOUT,
             progress: Callable[[str], None] | None = None) -> Deployment:
    """Serve an earlier revision again (default: the newest revision older than the current one)."""
    store = _store(metadata)
    with _changes(store) as (state, events):
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
        return _succeed(state, events, back, "rolled-back")


def delete(name: str, *, target: str | None = None, credentials: PathLike | None = None,
           metadata: PathLike | None = None) -> Deployment:
    """Remove the deployment from its target and its record from metadata.yaml."""
    store = _store(metadata)
    with _changes(store) as (state, events):
        current = state.get(name, target)
        tgt = _open(current.target, credentials, store, DEFAULT_TIMEOUT, None)
        tgt.delete(current)
        state.remove(current.name, current.target)
        current.status, current.action = "deleted", "deleted"
        events.append(("deleted", current))
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
