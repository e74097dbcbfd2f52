"""The one deploy flow every target shares, and the library API built on it.

deploy: hash the artifact, check the name, open the target (credentials checked), take the
deployment's lock (``MetadataStore.deployment_lock``: deploys of other names run in parallel),
reconcile what interrupted operations on that name left (``Deployer.reconcile``), then no-op
(same sha256, healthy: the model is never unpickled) / update as a new revision / create;
wait until ready; smoke-score the example row (an update that fails it is rolled back);
record atomically; then, once the record is written, fire the ``deploykit_deployment_changed``
hook (a failing listener is a warning, never a failed deploy).

Crash safety: before the target creates anything that outlives this process, the intent is
recorded durably (``store.begin``: a pending operation with the planned model sha256 and
revision); the target's ``context.note(**ids)`` adds each id to it at once; the final record
and the dropped operation are one write (``store.finish``). A process killed anywhere leaves a
pending operation whose owner is dead, and the next command on that name (or ``reconcile``)
settles it. ``crash_point`` marks each step boundary for the crash tests (``deploykit.faults``).
Metadata transactions are short (read-modify-write); nothing slow runs under the metadata lock.

``open_target`` and ``open_deployment`` are the one way for the core and plugins to construct a
target (credentials validated) and to open a recorded deployment with its target.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.deployment import Deployment, now
from deploykit.errors import (
    DeployKitError,
    DeploymentError,
    InvalidNameError,
    MetadataError,
    NotDeployedError,
    PendingOperationError,
    SmokeTestError,
)
from deploykit.faults import crash_point

if TYPE_CHECKING:
    import pandas as pd

    from deploykit.artifact import Artifact
    from deploykit.bundle import Script
    from deploykit.metadata import MetadataStore, State
    from deploykit.operations import PendingOperation, ReconcileReport, Reconciliation
    from deploykit.payload import Predictions
    from deploykit.schema import Schema
    from deploykit.target import Target, TargetContext

__all__ = ["DEFAULT_TIMEOUT", "delete", "deploy", "list_deployments", "logged_inputs", "open_deployment", "open_target",
           "reconcile", "rollback", "save_ids", "score", "smoke_test_skipped", "status"]

DEFAULT_TIMEOUT = 600.0
PathLike = str | Path


def _store(metadata: PathLike | None) -> MetadataStore:
    from deploykit.metadata import DEFAULT_PATH, MetadataStore

    return MetadataStore(metadata if metadata is not None else DEFAULT_PATH)


def _construct(name: str, credentials: PathLike | None, state_dir: Path, progress: Callable[[str], None] | None,
               timeout: float, secrets_optional: bool) -> tuple[Any, TargetContext]:
    from deploykit.credentials import load_section, validate_section
    from deploykit.errors import CredentialsError
    from deploykit.plugins import get_registry
    from deploykit.target import TargetContext

    info = get_registry().info(name)
    cls = info.load()
    section = load_section(name, credentials, secrets_optional=secrets_optional)
    unset = section.pop("__unset__", None)
    model = info.settings_model()
    try:
        settings = validate_section(model, section, name) if model is not None else section
    except CredentialsError:
        if unset:  # the target needs a secret that was left out: the unset variable is the real cause
            load_section(name, credentials)
        raise
    context = TargetContext(name, settings, state_dir, progress or (lambda m: None), timeout)
    return cls(context), context


def open_target(name: str, credentials: PathLike | None, state_dir: Path,
                progress: Callable[[str], None] | None = None, timeout: float = DEFAULT_TIMEOUT, *,
                secrets_optional: bool = False) -> Any:
    """Find, import and construct target ``name`` with its validated credentials section.

    ``state_dir`` is where the target keeps its files (``.deploykit/`` beside metadata.yaml).
    ``secrets_optional`` (what ``status`` and ``delete`` use): a secret whose ``${VAR}`` is unset
    is left out rather than refused, so a command that does not need it works; if the target's
    settings then do not validate, the unset variable is the error. Raises UnknownTargetError,
    TargetUnavailableError (SDK missing) or CredentialsError.
    """
    return _construct(name, credentials, state_dir, progress, timeout, secrets_optional)[0]


def _open(target: str, credentials: PathLike | None, store: MetadataStore, timeout: float,
          progress: Callable[[str], None] | None, *, secrets_optional: bool = False) -> tuple[Target, TargetContext]:
    from deploykit.progress import terminal_progress

    return _construct(target, credentials, store.state_dir, progress or terminal_progress(), timeout, secrets_optional)


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
    return current, _open(current.target, credentials, store, timeout, progress)[0]


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


def _announce(event: str, deployment: Deployment) -> None:
    """Fire ``deploykit_deployment_changed``; called only after the record was written."""
    from deploykit.plugins import notify

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


def smoke_test_skipped(artifact: Artifact, target: Any = None) -> str | None:
    """Why deploy does not smoke-score a scoring-script bundle (None when it does, and for model files).

    An async bundle is smoke-tested only on a target (class or instance) whose
    ``smokes_async_bundles`` is true: one whose ``score`` sends the rows as the script's input file."""
    if artifact.flavor != "script":
        return None
    if artifact.extra.get("mode") == "async" and not getattr(target, "smokes_async_bundles", False):
        return "an async scoring script scores files as jobs, not a request"
    if not artifact.example:
        return "the bundle has no schema or example request; pass --schema example.json (one request) to have it run"
    return None


def _smoke(tgt: Target, deployment: Deployment, artifact: Artifact, progress: Callable[[str], None]) -> None:
    skipped = smoke_test_skipped(artifact, tgt)
    if skipped is not None:
        progress(f"smoke test skipped: {skipped}")
        return
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


def _finish(store: MetadataStore, op: PendingOperation, deployment: Deployment, action: str) -> Deployment:
    """Record ``deployment`` and drop ``op`` in one write, then announce ``action``."""
    deployment.action = action
    deployment.updated_at = now()
    store.finish(op, deployment)
    _announce(action, deployment)
    return deployment


def _planned(model_sha256: str | None, columns: list[str], previous: int | None = None) -> dict[str, Any]:
    """What an operation will make, for a reconcile to recognise it: the model it serves, its
    columns, and the revision it replaces."""
    planned: dict[str, Any] = {"model_sha256": model_sha256, "columns": list(columns)}
    if previous is not None:
        planned["previous_revision"] = previous
    return planned


def _recorder(store: MetadataStore, op: PendingOperation) -> Callable[..., None]:
    """``context.note`` for ``op``: each id is written into the pending operation at once."""

    def note(**ids: Any) -> None:
        store.note(op, **ids)

    return note


def _note_ids(store: MetadataStore, op: PendingOperation, ids: dict[str, Any]) -> None:
    """Record the ids a target call returned that it did not ``note`` itself (one write, or none)."""
    new = {k: v for k, v in ids.items() if op.ids.get(k) != v}
    if new:
        store.note(op, **new)


# -- reconciling interrupted operations ------------------------------------------------------

def _blocker(op: PendingOperation, force: bool = False) -> str | None:
    """Why ``op`` must not be reconciled now, or None when it may (its process is gone).

    Called with the deployment's lock held: an operation this very process recorded is then
    not in flight (a call that raised unexpectedly left it), so it is settled like a dead one.
    """
    from deploykit.operations import Owner

    if op.owner == Owner.current():
        return None
    state = op.owner_state()
    if state == "dead" or (state == "unknown" and force):
        return None
    who, what = op.owner, f"a pending {op.action} of revision {op.revision}"
    if state == "running":
        return (f"another deploykit process (pid {who.pid} on {who.host} since {op.started_at}) is deploying "
                f"{op.name!r} on {op.target} ({what}); wait for it to finish, or stop it (kill {who.pid}) and run "
                "the command again: the next command reconciles what it left")
    return (f"{what} of {op.name!r} on {op.target} was started by process {who.pid} on host {who.host} at "
            f"{op.started_at}, which cannot be checked from this machine, so deploykit never reconciles it behind "
            f"that host's back; wait for it to finish there, or, once you know it has stopped, run "
            f"'deploykit reconcile {op.name} --target {op.target} --force'")


def _adopted_record(op: PendingOperation, adopted: Deployment, current: Deployment | None) -> Deployment:
    """The record for what an interrupted ``op`` completed: the revision, model and columns it
    planned, the history it would have written."""
    adopted.revision = op.revision
    adopted.model_sha256 = op.planned.get("model_sha256") or adopted.model_sha256
    if isinstance(op.planned.get("columns"), list):
        adopted.columns = list(op.planned["columns"])
    if current is not None and op.action in ("update", "rollback"):
        adopted.history = [e for e in current.history if e.get("revision") not in (current.revision, op.revision)] \
            + [current.snapshot()]
        adopted.created_at = current.created_at
    else:
        adopted.history = []
    adopted.updated_at = now()
    adopted.action = "reconciled"
    return adopted


def _reconcile_one(store: MetadataStore, tgt: Target, context: TargetContext, op: PendingOperation) -> Reconciliation:
    """Settle one interrupted operation (the caller holds the deployment lock): adopt what it
    completed, or remove what it made; an interrupted delete is completed. A failed clean-up
    marks it ``cleanup-failed`` and raises PendingOperationError."""
    current = store.read().find(op.name, op.target)
    what = f"the interrupted {op.action} of revision {op.revision} of {op.name!r} on {op.target}"
    try:
        with context.noting(_recorder(store, op)):
            if op.action == "delete":
                if current is not None:
                    tgt.delete(current)
                return store.resolve(op, "removed", "completed the interrupted delete", forget=True)
            reconcile = getattr(tgt, "reconcile", None)
            if reconcile is None:
                raise PendingOperationError(
                    f"{what} cannot be reconciled: target {op.target} has no reconcile method (it predates crash "
                    "safety); upgrade its plugin, or remove what that operation created by hand, then delete "
                    f"pending.{op.id} from {store.path}", operation=op)
            adopted = reconcile(op, current)
    except PendingOperationError:
        raise
    except DeployKitError as exc:
        store.fail_cleanup(op, str(exc))
        raise PendingOperationError(
            f"reconciling {what} failed ({exc}); what it created may still exist: fix the cause and run "
            f"'deploykit reconcile {op.name} --target {op.target}'", operation=op) from None
    if adopted is None:
        found = ", ".join(f"{k}={v}" for k, v in sorted(op.ids.items())) or "nothing recorded by id"
        keeps = f"revision {current.revision} keeps serving" if current is not None else "nothing was recorded"
        return store.resolve(op, "removed", f"removed what it created ({found}); {keeps}")
    record = _adopted_record(op, adopted, current)
    return store.resolve(op, "adopted", f"revision {op.revision} was complete and serving", record)


def _settle(store: MetadataStore, tgt: Target, context: TargetContext, name: str, target: str) -> list[Reconciliation]:
    """Reconcile every pending operation of (name, target) before acting on it (deployment lock
    held); an operation whose process still runs, or runs elsewhere, is a PendingOperationError."""
    notes = []
    for op in store.pending(name, target):
        why = _blocker(op)
        if why is not None:
            raise PendingOperationError(why, operation=op)
        notes.append(_reconcile_one(store, tgt, context, op))
    return notes


def reconcile(name: str | None = None, *, target: str | None = None, credentials: PathLike | None = None,
              metadata: PathLike | None = None, force: bool = False, timeout: float = DEFAULT_TIMEOUT,
              progress: Callable[[str], None] | None = None) -> ReconcileReport:
    """Reconcile every interrupted operation (of ``name``, on ``target``; default: all) against its
    target: adopt what it completed, remove what it left half-made, finish an interrupted delete.

    An operation whose process still runs is skipped, and so is one recorded on another host
    (its process cannot be checked from here) unless ``force``: pass it only once you know that
    process has stopped. Returns a ReconcileReport (``reconciled`` notes, ``skipped`` and
    ``failed`` operations with the reason); ``report.ok`` is False when a clean-up failed.
    """
    from deploykit.operations import ReconcileReport

    store = _store(metadata)
    report = ReconcileReport()
    for dep_name, dep_target in sorted({(op.name, op.target) for op in store.pending(name, target)}):
        try:
            tgt, context = _open(dep_target, credentials, store, timeout, progress)
        except DeployKitError as exc:
            report.failed += [(op, f"target {dep_target} cannot be opened: {exc}") for op in store.pending(dep_name, dep_target)]
            continue
        try:
            with store.deployment_lock(dep_name, dep_target, timeout=0):
                for op in store.pending(dep_name, dep_target):
                    why = _blocker(op, force)
                    if why is not None:
                        report.skipped.append((op, why))
                        continue
                    try:
                        report.reconciled.append(_reconcile_one(store, tgt, context, op))
                    except PendingOperationError as exc:
                        report.failed.append((op, str(exc)))
        except MetadataError as busy:  # the deployment's lock is held: its operation is in flight
            report.skipped += [(op, str(busy)) for op in store.pending(dep_name, dep_target)
                               if op.id not in {o.id for o, _ in report.skipped + report.failed}]
    return report


# -- the flow ----------------------------------------------------------------------------------

def deploy(model: PathLike | Artifact | Script, *, target: str = "local", name: str | None = None,
           credentials: PathLike | None = None, metadata: PathLike | None = None,
           schema: PathLike | Schema | None = None, timeout: float = DEFAULT_TIMEOUT, force: bool = False,
           progress: Callable[[str], None] | None = None, trusted_types: Sequence[str] = ()) -> Deployment:
    """Deploy ``model`` to ``target`` as ``name``: create it, update it as a new revision, or do
    nothing when the same model (sha256) already serves there. Returns the recorded Deployment;
    its ``action`` says which of ``created``, ``updated`` or ``unchanged`` happened.

    ``model`` is a joblib/pickle path, an MLflow model directory or ``models:/NAME@ALIAS``, or a
    scoring script: ``deploykit.Script(...)``, ``"app.py:score"`` or a folder holding a
    ``deploykit.yaml`` (see ``deploykit.bundle``; ``schema`` and ``trusted_types`` do not apply).
    A script's smoke test is skipped, and ``progress`` told why (``smoke_test_skipped``), when
    it has no example request, or is an async script on a target that cannot score rows as its
    input file (local, where async scripts run as jobs).
    ``name`` defaults to the file name made valid (``bank_model.joblib`` -> ``bank-model``); a
    new deployment's name must pass ``deploykit.names.check_name`` (InvalidNameError, nothing
    written). ``credentials`` defaults to ``./credentials.yaml`` (or environment variables),
    ``metadata`` to ``./metadata.yaml``. ``force`` re-deploys an unchanged model.
    ``trusted_types`` lists the types a ``skops`` model file may hold beyond those skops trusts
    by default (see ``load_artifact``); a joblib/pickle file runs its code when loaded, whatever
    this says.

    What an interrupted earlier operation on the name left is reconciled first (see
    ``reconcile``); one whose process still runs is a PendingOperationError.

    A pickle file is hashed first and unpickled only when something will be deployed, so an
    unchanged deploy costs a hash, a metadata read and one status check.
    """
    from deploykit.artifact import Artifact, load_artifact

    artifact = model if isinstance(model, Artifact) else load_artifact(model, schema, credentials, defer=True,
                                                                           trusted_types=trusted_types)
    store = _store(metadata)
    name = _deployment_name(name, artifact, store.read(), target)
    tgt, context = _open(target, credentials, store, timeout, progress)
    with store.deployment_lock(name, target):
        _settle(store, tgt, context, name, target)
        current = store.read().find(name, target)
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
            return _create(store, tgt, context, artifact, name, timeout)
        return _update(store, tgt, context, current, artifact, timeout)


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


def _create(store: MetadataStore, tgt: Target, context: TargetContext, artifact: Artifact, name: str,
            timeout: float) -> Deployment:
    _ready_model(tgt, artifact)
    op = store.begin(name, context.name, action="create", revision=1,
                     planned=_planned(artifact.sha256, artifact.schema.names))
    crash_point("create:intent-recorded")
    with context.noting(_recorder(store, op)):
        with _settled_on_failure(store, op, _marked_failed):
            created = tgt.deploy(artifact, name)
        _note_ids(store, op, created.ids)
        crash_point("create:target-created")
        created.revision, created.model_sha256 = 1, artifact.sha256
        created.columns = artifact.schema.names
        try:
            ready = tgt.wait_ready(created, timeout)
            crash_point("create:ready")
            _smoke(tgt, ready, artifact, context.progress)
            crash_point("create:smoke-tested")
        except DeployKitError as failed:
            cause = _failure(artifact, failed)
            try:
                tgt.delete(created)
            except DeployKitError as cleanup:
                created.status = "failed"
                store.finish(op, created)
                raise DeploymentError(
                    f"{cause}; removing the failed deployment also failed ({cleanup}), so it is recorded in "
                    f"{store.path} with status 'failed': run 'deploykit delete {name} --target {created.target}'",
                    deployment=created,
                ) from None
            store.abandon(op)
            raise cause from None
    return _finish(store, op, ready, "created")


def _update(store: MetadataStore, tgt: Target, context: TargetContext, current: Deployment, artifact: Artifact,
            timeout: float) -> Deployment:
    _ready_model(tgt, artifact)
    op = store.begin(current.name, current.target, action="update", revision=_next_revision(current),
                     planned=_planned(artifact.sha256, artifact.schema.names, current.revision))
    crash_point("update:intent-recorded")
    with context.noting(_recorder(store, op)):
        with _settled_on_failure(store, op, lambda failed: _with_history(failed, current, status="failed")):
            updated = tgt.update(current, artifact)
        _note_ids(store, op, updated.ids)
        crash_point("update:target-updated")
        updated = _with_history(updated, current)
        updated.revision, updated.model_sha256 = op.revision, artifact.sha256
        updated.columns = artifact.schema.names
        try:
            ready = tgt.wait_ready(updated, timeout)
            crash_point("update:ready")
            _smoke(tgt, ready, artifact, context.progress)
            crash_point("update:smoke-tested")
        except DeployKitError as failed:
            cause = _failure(artifact, failed)
            restored = _restore(store, op, tgt, updated, current, timeout)
            kind = SmokeTestError if isinstance(cause, SmokeTestError) else DeploymentError
            raise kind(
                f"revision {updated.revision} of {current.name!r} on {current.target} failed ({cause}); "
                f"rolled back to revision {restored.revision}, which serves again"
            ) from None
    return _finish(store, op, ready, "updated")


@contextlib.contextmanager
def _settled_on_failure(store: MetadataStore, op: PendingOperation,
                        record: Callable[[Deployment], Deployment] | None) -> Iterator[None]:
    """Around the target call of ``op``: when it raises, settle ``op`` before the error goes on. A
    DeploymentError carrying the deployment that exists remotely is recorded (``record`` turns it
    into the failed record) rather than orphaned; anything else abandons ``op``. With ``record``
    None every failure abandons it."""
    try:
        yield
    except DeploymentError as exc:
        if record is not None and exc.deployment is not None:
            store.finish(op, record(exc.deployment))
        else:
            store.abandon(op)
        raise
    except DeployKitError:
        store.abandon(op)
        raise


def _marked_failed(deployment: Deployment) -> Deployment:
    deployment.status = "failed"
    return deployment


def _with_history(new: Deployment, current: Deployment, status: str | None = None) -> Deployment:
    new.history = [e for e in current.history if e.get("revision") != current.revision] + [current.snapshot()]
    new.created_at = current.created_at
    if status:
        new.status = status
    return new


def _restore(store: MetadataStore, op: PendingOperation, tgt: Target, failed_new: Deployment, previous: Deployment,
             timeout: float) -> Deployment:
    """Automatic rollback after a failed update: serve ``previous`` again and record it (finishing ``op``)."""
    try:
        back = tgt.rollback(failed_new, previous)
        back = tgt.wait_ready(back, timeout)
    except DeployKitError as exc:
        failed_new.status = "failed"
        store.finish(op, failed_new)
        raise DeploymentError(
            f"revision {failed_new.revision} failed and rolling back to revision {previous.revision} failed too "
            f"({exc}); recorded with status 'failed': run 'deploykit rollback {previous.name}' or delete it",
            deployment=failed_new,
        ) from None
    back.revision, back.model_sha256, back.columns = previous.revision, previous.model_sha256, previous.columns
    back.history = previous.history
    return _finish(store, op, back, "rolled-back")


def rollback(name: str, *, to: int | None = None, target: str | None = None, credentials: PathLike | None = None,
             metadata: PathLike | None = None, timeout: float = DEFAULT_TIMEOUT,
             progress: Callable[[str], None] | None = None) -> Deployment:
    """Serve an earlier revision again (default: the newest revision older than the current one).

    A failure once the target has started serving the earlier revision leaves the operation
    pending: the next command on the name (or ``reconcile``) settles it with the target.
    """
    store = _store(metadata)
    found = store.read().get(name, target)
    tgt, context = _open(found.target, credentials, store, timeout, progress)
    with store.deployment_lock(found.name, found.target):
        _settle(store, tgt, context, found.name, found.target)
        current = store.read().get(found.name, found.target)
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
        op = store.begin(current.name, current.target, action="rollback", revision=to,
                         planned=_planned(previous.model_sha256, previous.columns, current.revision))
        crash_point("rollback:intent-recorded")
        with context.noting(_recorder(store, op)):
            with _settled_on_failure(store, op, None):
                back = tgt.rollback(current, previous)
            _note_ids(store, op, back.ids)
            crash_point("rollback:target-rolled-back")
            try:
                back = tgt.wait_ready(back, timeout)
            except DeployKitError as exc:
                kind = type(exc) if isinstance(exc, DeploymentError) else DeploymentError
                raise kind(
                    f"{exc}; the rollback to revision {to} is left pending in {store.path}: the next command on "
                    f"{current.name!r} reconciles it, or run 'deploykit reconcile {current.name} --target {current.target}'"
                ) from None
            crash_point("rollback:ready")
        back.revision, back.model_sha256, back.columns = previous.revision, previous.model_sha256, previous.columns
        back.history = [e for e in current.history if e.get("revision") != to] + [current.snapshot()]
        back.created_at = current.created_at
        return _finish(store, op, back, "rolled-back")


def _target_of(store: MetadataStore, name: str, target: str | None) -> str:
    """The target of ``name``: its record's, or (no record) that of its pending operations."""
    found = store.read().find(name, target)
    if found is not None:
        return found.target
    targets = sorted({op.target for op in store.pending(name, target)})
    if len(targets) == 1:
        return targets[0]
    return store.read().get(name, target).target  # NotDeployedError, or the several-targets error


def delete(name: str, *, target: str | None = None, credentials: PathLike | None = None,
           metadata: PathLike | None = None) -> Deployment:
    """Remove the deployment from its target and its record from metadata.yaml.

    Interrupted operations on the name are reconciled first (an interrupted create leaves no
    record, only a pending operation: deleting its name removes what it made). Secrets the
    target does not need to delete may be unset (see ``open_target``'s ``secrets_optional``).
    """
    store = _store(metadata)
    where = _target_of(store, name, target)
    tgt, context = _open(where, credentials, store, DEFAULT_TIMEOUT, None, secrets_optional=True)
    with store.deployment_lock(name, where):
        _settle(store, tgt, context, name, where)
        current = store.read().find(name, where)
        if current is None:  # only an interrupted create was there, and reconciling it removed it
            gone = Deployment(name=name, target=where, status="deleted")
            gone.action = "deleted"
            return gone
        op = store.begin(current.name, current.target, action="delete", revision=current.revision)
        crash_point("delete:intent-recorded")
        with context.noting(_recorder(store, op)):
            try:
                tgt.delete(current)
            except DeployKitError:
                store.abandon(op)
                raise
        crash_point("delete:target-deleted")
        store.finish(op, None)
    current.status, current.action = "deleted", "deleted"
    _announce("deleted", current)
    return current


def status(name: str, *, target: str | None = None, credentials: PathLike | None = None,
           metadata: PathLike | None = None) -> Deployment:
    """The recorded deployment with its status refreshed from the target (nothing is written).

    Secrets the target does not need to check the status may be unset (``secrets_optional``).
    Pending operations and reconcile notes: ``MetadataStore.pending`` / ``reconciliations``
    (``deploykit status`` prints them).
    """
    store = _store(metadata)
    current = store.read().get(name, target)
    tgt, _ = _open(current.target, credentials, store, DEFAULT_TIMEOUT, None, secrets_optional=True)
    return tgt.get(current)


def logged_inputs(name: str, *, target: str | None = None, credentials: PathLike | None = None,
                  metadata: PathLike | None = None, since: Any = None) -> pd.DataFrame | None:
    """The inputs the deployment's own platform logged (SageMaker's data capture), one row per
    scored row with ``__time``; None when its target keeps no such log (the local server's
    logged inputs are files under ``.deploykit/input-logs/NAME``: ``deploykit.drift.read_logged_inputs``)."""
    from deploykit.plugins import get_registry

    store = _store(metadata)
    current = store.read().get(name, target)
    if not hasattr(get_registry().info(current.target).load(), "logged_inputs"):
        return None  # its credentials are not needed, nor checked
    tgt, _ = _open(current.target, credentials, store, DEFAULT_TIMEOUT, None, secrets_optional=True)
    return tgt.logged_inputs(current, since)  # type: ignore[attr-defined]


def list_deployments(metadata: PathLike | None = None) -> list[Deployment]:
    """Every deployment recorded in metadata.yaml (no target is contacted)."""
    return _store(metadata).read().all()


def score(name: str, data: Any, *, target: str | None = None, credentials: PathLike | None = None,
          metadata: PathLike | None = None) -> Predictions:
    """Score ``data`` on the deployment ``name`` through its real endpoint.

    ``data`` may be a DataFrame, one record (dict), a list of records, any wire format
    deploykit knows (MLflow, Watson ``input_data``, V2, ...), or a path to a JSON or CSV file.
    A target with ``score_payload(deployment, data)`` may take ``data`` as it is (a scoring
    script's JSON; it answers None for a model, which is then scored as a table).
    """
    from deploykit import payload
    from deploykit.plugins import load_formats

    store = _store(metadata)
    current = store.read().get(name, target)
    if current.status not in ("ready", "unknown"):
        raise NotDeployedError(
            f"{name!r} on {current.target} has status {current.status!r}; redeploy it or roll it back before scoring"
        )
    tgt, _ = _open(current.target, credentials, store, DEFAULT_TIMEOUT, None)
    data = read_payload(data)
    as_is = getattr(tgt, "score_payload", None)  # a scoring script's deployment takes its own JSON
    if as_is is not None:
        answered = as_is(current, data)
        if answered is not None:
            return answered  # type: ignore[no-any-return]
    load_formats()
    frame = payload.decode(data, current.columns or None)
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
        raise PayloadError(f"payload file {str(data)!r} cannot be read ({exc.strerror}); "
                           "pass an existing JSON or CSV file") from None
    if data.suffix == ".csv":
        return text
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PayloadError(f"payload file {str(data)!r} is not valid JSON ({exc}); fix it or send CSV with a header") from None
