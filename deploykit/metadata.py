"""metadata.yaml, the state file: locked read-modify-write, atomic replace, unknown keys kept.

    deployments:
      bank-model:            # deployment name
        local:               # target
          revision: 2
          status: ready
          url: http://127.0.0.1:8000
          model_sha256: 9f2c...
          ids: {pid: 4242, port: 8000, model_file: .deploykit/artifacts/9f2c.../model.joblib}
          history: [{revision: 1, model_sha256: ..., ids: {...}, ...}]
    pending:                 # operations in flight, or interrupted (see deploykit.operations)
      5b0e...:               # operation id
        {name: bank-model, target: local, action: update, revision: 3, planned: {...}, ids: {...},
         owner: {pid: 4242, host: ci-7, boot_id: ..., started: ...}, status: pending, ...}
    reconciled: [...]        # notes of the newest reconciled operations

Older Watson scripts wrote flat keys (``model_uid``, ``deployment_uid``, ``space_id``) at the
top; they are read as a ``watsonml`` record and kept in step when that record changes.
Older deploykit versions ignore (and keep) ``pending:`` and ``reconciled:``.

Two kinds of lock (both ``filelock`` locks, released by the OS when their process dies):
``transaction()`` takes the metadata lock (``metadata.yaml.lock``) for one read-modify-write;
``deployment_lock(name, target)`` (``.deploykit/locks/``) is held for the long part of a
deploy, so deploys of different names run in parallel. Both are re-entrant within a thread,
and a transaction opened inside another on the same file (same thread) shares its state, so
``begin``/``note``/``finish`` work inside or outside an open transaction.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import socket
import sys
import threading
from collections.abc import Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.deployment import Deployment, invalid, now
from deploykit.errors import DeployKitError, MetadataError, NotDeployedError
from deploykit.files import atomic_write
from deploykit.operations import Action, Outcome, PendingOperation, Reconciliation

if TYPE_CHECKING:
    from filelock import BaseFileLock

__all__ = ["DEFAULT_PATH", "MetadataStore", "State"]

DEFAULT_PATH = Path("metadata.yaml")
_HEADER = "# deploykit state file: written by `deploykit deploy`; edit with care, keys you add are kept.\n"
_LEGACY_KEYS = ("model_uid", "deployment_uid")


class State:
    """The parsed content of metadata.yaml, with lookups by name and target.

    ``base`` is the metadata file's folder: record paths are stored relative to it.
    """

    def __init__(self, data: dict[str, Any], source: str, base: Path | None = None) -> None:
        self.data = data
        self.source = source
        self.base = base
        self.changed = False

    def _section(self) -> dict[str, Any]:
        return self.data.setdefault("deployments", {})  # type: ignore[no-any-return]

    def _legacy(self) -> Deployment | None:
        if not all(k in self.data for k in _LEGACY_KEYS):
            return None
        ids: dict[str, Any] = {k: self.data[k] for k in ("model_uid", "deployment_uid", "space_id") if k in self.data}
        return Deployment(name=str(self.data.get("name") or self.data.get("model_name") or "model"),
                          target="watsonml", status="unknown", ids=ids,
                          url=self.data.get("scoring_url"), created_at="", updated_at="")

    def _records(self) -> list[Deployment]:
        out = []
        for name, targets in sorted(self._section().items(), key=lambda kv: str(kv[0])):
            if not isinstance(targets, dict):
                raise invalid(self.source, f"deployments.{name}", targets,
                              "a mapping from target name to record, such as {local: {revision: 1, ...}}")
            for target, rec in sorted(targets.items(), key=lambda kv: str(kv[0])):
                out.append(Deployment.from_dict(str(name), str(target), rec, base=self.base, source=self.source))
        return out

    def check(self) -> None:
        """Read every record and operation once, so a wrong-typed value is a MetadataError now."""
        self._records()
        self.pending()
        self.reconciliations()

    def all(self) -> list[Deployment]:
        """Every recorded deployment, sorted by name then target."""
        out = self._records()
        legacy = self._legacy()
        if legacy and not any(d.target == "watsonml" for d in out):
            out.append(legacy)
        return out

    def find(self, name: str, target: str | None = None) -> Deployment | None:
        """The record of ``name`` (on ``target``); with no target, the only one of that name."""
        matches = [d for d in self.all() if d.name == name and (target is None or d.target == target)]
        if not matches and target == "watsonml":
            legacy = self._legacy()  # an older script's flat keys: adopt them under this name
            if legacy and not any(d.target == "watsonml" for d in self._records()):
                legacy.name = name
                return legacy
        if len(matches) > 1:
            raise DeployKitError(
                f"{name!r} is deployed to several targets ({', '.join(d.target for d in matches)}) "
                f"in {self.source}; pass --target to choose one"
            )
        return matches[0] if matches else None

    def get(self, name: str, target: str | None = None) -> Deployment:
        """Like ``find`` but a missing record is a NotDeployedError listing what is recorded."""
        found = self.find(name, target)
        if found is None:
            known = ", ".join(f"{d.name} ({d.target})" for d in self.all()) or "nothing"
            on = f" on target {target!r}" if target else ""
            raise NotDeployedError(
                f"no deployment named {name!r}{on} in {self.source} (recorded: {known}); "
                "deploy it first, or pass the right --metadata/--target"
            )
        return found

    def put(self, deployment: Deployment) -> None:
        """Record (or replace) a deployment."""
        self._section().setdefault(deployment.name, {})[deployment.target] = deployment.to_dict(base=self.base)
        if deployment.target == "watsonml" and any(k in self.data for k in _LEGACY_KEYS):
            for key in ("model_uid", "deployment_uid", "space_id"):
                if key in deployment.ids:
                    self.data[key] = deployment.ids[key]
        self.changed = True

    def remove(self, name: str, target: str) -> None:
        """Forget a deployment (and the legacy flat keys if they described it)."""
        targets = self._section().get(name, {})
        targets.pop(target, None)
        if not targets:
            self._section().pop(name, None)
        if target == "watsonml":
            for key in _LEGACY_KEYS:
                self.data.pop(key, None)
        self.changed = True

    # -- pending operations and reconciled notes --------------------------------------------
    def _pending_section(self) -> dict[str, Any]:
        section = self.data.get("pending")
        if section is None:
            return {}
        if not isinstance(section, dict):
            raise invalid(self.source, "pending", section, "a mapping from operation id to pending operation")
        return section

    def pending(self, name: str | None = None, target: str | None = None) -> list[PendingOperation]:
        """Pending operations (of ``name`` on ``target`` when given), oldest first."""
        ops = []
        for op_id, data in self._pending_section().items():
            op = PendingOperation.from_dict(str(op_id), data, self.source)
            if self.base is not None:
                from deploykit.deployment import live_paths

                op.ids = live_paths(op.ids, self.base)
            if (name is None or op.name == name) and (target is None or op.target == target):
                ops.append(op)
        return sorted(ops, key=lambda op: (op.started_at, op.id))

    def put_operation(self, op: PendingOperation) -> None:
        """Record (or replace) a pending operation."""
        from deploykit.deployment import stored_paths

        data = op.to_dict()
        if self.base is not None:
            data["ids"] = stored_paths(op.ids, self.base)
        section = self._pending_section()
        section[op.id] = data
        self.data["pending"] = section
        self.changed = True

    def remove_operation(self, op: PendingOperation | str) -> None:
        """Forget a pending operation (the ``pending:`` key goes when it empties)."""
        op_id = op if isinstance(op, str) else op.id
        section = self._pending_section()
        section.pop(op_id, None)
        if not section:
            self.data.pop("pending", None)
        self.changed = True

    def reconciliations(self, name: str | None = None, target: str | None = None) -> list[Reconciliation]:
        """Notes of reconciled operations (of ``name`` on ``target`` when given), oldest first."""
        notes = self.data.get("reconciled") or []
        if not isinstance(notes, list):
            raise invalid(self.source, "reconciled", notes, "a list of reconciled-operation notes")
        out = [Reconciliation.from_dict(n, self.source, f"reconciled[{i}]") for i, n in enumerate(notes)]
        return [n for n in out if (name is None or n.name == name) and (target is None or n.target == target)]

    def add_reconciliation(self, note: Reconciliation, keep: int) -> None:
        """Append a note, keeping the newest ``keep``."""
        notes = [n.to_dict() for n in self.reconciliations()] + [note.to_dict()]
        self.data["reconciled"] = notes[-keep:]
        self.changed = True


# -- locks ---------------------------------------------------------------------------------

_LOCKS: dict[str, BaseFileLock] = {}
_LOCKS_GUARD = threading.Lock()


def _file_lock(path: Path) -> BaseFileLock:
    """One FileLock object per lock file in this process, so nested use re-enters it."""
    from filelock import FileLock

    key = os.path.abspath(path)  # one object whatever relative path named it
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = FileLock(key)
        return lock


def _holder_file(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".owner")


@contextlib.contextmanager
def _holding(lock_path: Path, timeout: float, what: str, fix: str, poll: float = 0.05) -> Iterator[None]:
    """Hold the file lock at ``lock_path``; record who holds it beside it, for the error a
    waiting process shows when its ``timeout`` (seconds) runs out."""
    from filelock import Timeout

    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(lock_path.parent, exc, f"create the lock folder for {what}") from None
    lock = _file_lock(lock_path)
    try:
        lock.acquire(timeout=timeout, poll_interval=poll)
    except Timeout:
        raise MetadataError(_timeout_message(lock_path, timeout, what, fix)) from None
    except OSError as exc:
        raise _write_error(lock_path.parent, exc, f"lock {what}") from None
    outermost = lock.lock_counter == 1
    holder = _holder_file(lock_path)
    if outermost:
        with contextlib.suppress(OSError):
            holder.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now(),
                                          "command": " ".join(sys.argv)[:300]}), encoding="utf-8")
    try:
        yield
    finally:
        if outermost:  # before the release, so the next holder's record is never removed
            with contextlib.suppress(OSError):
                holder.unlink()
        lock.release()


def _timeout_message(lock_path: Path, timeout: float, what: str, fix: str) -> str:
    from deploykit.operations import Owner

    try:
        who = json.loads(_holder_file(lock_path).read_text(encoding="utf-8"))
        owner = Owner(int(who["pid"]), str(who["host"]))
        state = owner.state()
        holder = (f"process {owner.pid} on {owner.host} ({who.get('command') or 'deploykit'}), holding it since "
                  f"{who.get('since')}")
    except (OSError, ValueError, KeyError, TypeError):
        state, holder = "unknown", "another process (it did not record who)"
    if state == "dead":
        return (f"{what} is still locked ({lock_path}) by {holder}, which no longer runs; "
                f"remove {lock_path} and run the command again")
    return (f"{what} is locked by {holder}; gave up after {timeout:.0f} s: {fix}, "
            f"or stop that process if it hangs (the lock file is {lock_path})")


def _safe_file_name(name: str, target: str) -> str:
    """A lock file name for (name, target): readable, no path separators, unique by a digest."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{target}--{name}")[:80].lstrip(".") or "_"
    digest = hashlib.sha256(f"{target}\0{name}".encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{slug}-{digest}.lock"


# -- writing -------------------------------------------------------------------------------

_ERRNO_FIX = {
    errno.EROFS: "the file system is read-only: make it writable, or pass --metadata with a writable folder",
    errno.ENOSPC: "the disk is full: free some space and run the command again",
    errno.EDQUOT: "the disk quota is used up: free some space and run the command again",
    errno.EACCES: "permission denied: make the folder writable for this user, or pass --metadata elsewhere",
    errno.EPERM: "permission denied: make the folder writable for this user, or pass --metadata elsewhere",
    errno.EIO: "an I/O error on the disk: check the device, then run the command again",
}


def _write_error(folder: Path, exc: OSError, doing: str) -> MetadataError:
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    meaning = exc.strerror or os.strerror(exc.errno or 0)
    fix = _ERRNO_FIX.get(exc.errno or 0, "check the folder and run the command again")
    return MetadataError(f"cannot {doing} in {folder} ({code}: {meaning}); {fix}")


class MetadataStore:
    """Reads and writes one metadata.yaml, records pending operations, and hands out locks."""

    #: How many reconciled-operation notes the top-level ``reconciled:`` list keeps.
    KEEP_RECONCILED = 20

    def __init__(self, path: str | Path = DEFAULT_PATH, lock_timeout: float = 900.0) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout

    @property
    def base(self) -> Path:
        """The metadata file's folder (resolved): paths in records are relative to it."""
        return self.path.resolve().parent

    @property
    def state_dir(self) -> Path:
        """Where targets keep files next to metadata.yaml: ``.deploykit/`` (artifacts, logs)."""
        return self.base / ".deploykit"

    def read(self) -> State:
        """Parse the file without locking (for read-only commands). A missing file is empty.

        Every record and operation is checked: a wrong-typed value, text that is not UTF-8 or
        not YAML is a MetadataError naming the place and the fix.
        """
        import yaml

        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return State({}, str(self.path), self.base)
        except OSError as exc:
            raise MetadataError(f"{self.path} cannot be read ({exc.strerror}); check its permissions") from None
        bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
        try:
            text = raw[bom:].decode("utf-8")
        except UnicodeDecodeError as exc:
            at = exc.start + bom
            line = raw[:at].count(b"\n") + 1
            raise MetadataError(
                f"{self.path} is not UTF-8 text: byte {at} (line {line}) is 0x{raw[at]:02x}; "
                "deploykit will not overwrite it: re-save it as UTF-8, or move it away to start a new one"
            ) from None
        try:
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: ~10x faster
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise MetadataError(
                f"{self.path} is not valid YAML{where} ({getattr(exc, 'problem', exc)}); deploykit will not "
                "overwrite it: fix it by hand, or move it away to start a new one"
            ) from None
        except RecursionError:
            raise MetadataError(f"{self.path} is nested too deeply to read; fix it by hand, or move it away") from None
        if data is None:
            data = {}
        if not isinstance(data, dict) or not isinstance(data.get("deployments", {}), dict):
            raise MetadataError(
                f"{self.path} must be a mapping with a 'deployments' mapping, got {type(data).__name__}; "
                "deploykit will not overwrite it: fix it by hand, or move it away"
            )
        state = State(data, str(self.path), self.base)
        state.check()
        return state

    # -- transactions and locks --------------------------------------------------------------
    _active = threading.local()

    def _open_states(self) -> dict[str, State]:
        states: dict[str, State] | None = getattr(self._active, "states", None)
        if states is None:
            states = self._active.states = {}
        return states

    @contextlib.contextmanager
    def transaction(self, timeout: float | None = None) -> Iterator[State]:
        """Lock, read, yield the state, and write it back atomically if it changed.

        Keep the block short (read-modify-write); hold ``deployment_lock`` for long work.
        If the block raises, whatever it recorded before raising is still written (a remote
        asset that exists must not go unrecorded), and the error propagates. Opened inside
        another transaction on the same file in this thread, it yields that same state and
        writes it at its own end if it changed.
        """
        key = os.path.abspath(self.path)
        lock_path = self.path.with_name(self.path.name + ".lock")
        # held for milliseconds: poll often, so writers queued behind it do not idle
        with _holding(lock_path, self.lock_timeout if timeout is None else timeout, str(self.path),
                      "wait for the other deploykit command to finish", poll=0.002):
            states = self._open_states()
            outer = states.get(key)
            if outer is None:
                self._remove_stale_temps()
            state = outer if outer is not None else self.read()
            states[key] = state
            try:
                yield state
            finally:
                if outer is None:
                    states.pop(key, None)
                if state.changed:
                    self.write(state)

    def _remove_stale_temps(self) -> None:
        # Under the lock no other writer is between its temp file and its rename: any temp
        # file left is from a process killed mid-write.
        for stale in self.path.parent.glob(f".{glob_escape(self.path.name)}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()

    def deployment_lock(self, name: str, target: str, timeout: float | None = None) -> contextlib.AbstractContextManager[None]:
        """Hold the lock of one deployment (``.deploykit/locks/<target>--<name>-<digest>.lock``)
        for the long part of a deploy, update, rollback or delete.

        Re-entrant within a thread. When ``timeout`` (default: the store's ``lock_timeout``)
        runs out, a MetadataError names the process that holds it and what to do.
        """
        lock_path = self.state_dir / "locks" / _safe_file_name(name, target)
        return _holding(lock_path, self.lock_timeout if timeout is None else timeout,
                        f"deployment {name!r} on {target}",
                        f"wait for the other command on {name!r} to finish")

    def write(self, state: State) -> None:
        """Write atomically (``deploykit.files.atomic_write``); a failure is a MetadataError naming the
        folder and the reason, with the old file intact and no temp file left behind."""
        import yaml

        text = _HEADER + yaml.dump(state.data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False,
                                   default_flow_style=False, allow_unicode=True)
        try:
            mode = self.path.stat().st_mode & 0o777
        except OSError:
            mode = 0o644
        try:
            atomic_write(self.path, text.encode("utf-8"), mode=mode)
        except OSError as exc:  # a FileWriteError: report the OS error under it in metadata's own words
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            raise _write_error(self.path.resolve().parent, cause, f"write {self.path.name}") from None
        state.changed = False

    # -- pending operations -------------------------------------------------------------------
    def begin(self, name: str, target: str, *, action: Action, revision: int,
              planned: dict[str, Any] | None = None, **ids: Any) -> PendingOperation:
        """Record the intent to ``action`` revision ``revision`` of (name, target) durably, and
        return it. ``planned`` holds the deterministic names the target will create; ``ids``
        any ids already known. Call it before the target creates anything that outlives us."""
        op = PendingOperation(name=name, target=target, action=action, revision=revision,
                              planned=dict(planned or {}), ids=dict(ids))
        with self.transaction() as state:
            state.put_operation(op)
        return op

    def note(self, op: PendingOperation, **ids: Any) -> PendingOperation:
        """Add ids to ``op`` the moment the target hands them back; written durably at once."""
        op.ids.update(ids)
        op.updated_at = now()
        with self.transaction() as state:
            state.put_operation(op)
        return op

    def finish(self, op: PendingOperation, deployment: Deployment | None = None) -> None:
        """In one atomic write: record ``deployment`` (a finished create/update/rollback) or,
        with None (a finished delete), remove the record; and drop ``op``."""
        with self.transaction() as state:
            if deployment is not None:
                state.put(deployment)
            else:
                state.remove(op.name, op.target)
            state.remove_operation(op)

    def abandon(self, op: PendingOperation) -> None:
        """Drop ``op`` after its results were cleaned up (a failed deploy that removed what it made)."""
        with self.transaction() as state:
            state.remove_operation(op)

    def fail_cleanup(self, op: PendingOperation, error: str) -> None:
        """Keep ``op`` with status ``cleanup-failed`` and ``error``: what it made is still there."""
        op.status, op.error, op.updated_at = "cleanup-failed", error, now()
        with self.transaction() as state:
            state.put_operation(op)

    def resolve(self, op: PendingOperation, outcome: Outcome, detail: str = "",
                deployment: Deployment | None = None, *, forget: bool = False) -> Reconciliation:
        """A reconcile's verdict on an interrupted ``op``, in one atomic write: drop it, append
        its note to ``reconciled:``, and record ``deployment`` (when given) with the note on it;
        ``forget`` removes the record of (name, target) instead (nothing of it remains)."""
        note = Reconciliation.of(op, outcome, detail)
        with self.transaction() as state:
            if deployment is not None:
                deployment.reconciled = note.to_dict()
                state.put(deployment)
            elif forget:
                state.remove(op.name, op.target)
            state.remove_operation(op)
            state.add_reconciliation(note, self.KEEP_RECONCILED)
        return note

    def pending(self, name: str | None = None, target: str | None = None) -> list[PendingOperation]:
        """Pending operations (of ``name`` on ``target``), read without locking, oldest first."""
        return self.read().pending(name, target)

    def reconciliations(self, name: str | None = None, target: str | None = None) -> list[Reconciliation]:
        """Notes of reconciled operations (of ``name`` on ``target``), oldest first."""
        return self.read().reconciliations(name, target)
