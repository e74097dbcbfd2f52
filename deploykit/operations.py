"""Pending operations: the intent a deploy records before it creates anything that outlives it.

A ``PendingOperation`` names what the deploying process is about to create (its deterministic
names, in ``planned``) and gathers each id the moment the target hands it back (``ids``). It
is written to metadata.yaml under the top-level ``pending:`` mapping, keyed by its id, before
the target is called, so a process killed at any line leaves enough behind for the next
command to find what it created and adopt or remove it. ``owner`` says which process wrote
it (pid, host, boot id, process start time), so a reconciler can tell an operation that is
still running from one whose process died. A ``Reconciliation`` is the note left behind.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from deploykit.deployment import as_text as _text
from deploykit.deployment import invalid, now

__all__ = ["Action", "OperationStatus", "Outcome", "Owner", "OwnerState", "PendingOperation", "Reconciliation"]

#: What the lifecycle was doing when it recorded the intent.
Action = Literal["create", "update", "rollback", "delete"]
#: ``pending`` while in flight or not yet reconciled; ``cleanup-failed`` when a reconcile tried
#: to remove what the operation created and could not (``error`` says why).
OperationStatus = Literal["pending", "cleanup-failed"]
#: What a reconcile did with an interrupted operation's results.
Outcome = Literal["adopted", "removed"]
#: Whether the process that recorded an operation still runs, as far as this machine can tell.
OwnerState = Literal["running", "dead", "unknown"]


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of ``pid`` from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    rest = text.rsplit(")", 1)[-1].split()
    try:
        return rest[0], int(rest[19])
    except (IndexError, ValueError):
        return None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Owner:
    """The process that recorded an operation: pid, host name, boot id and process start time
    (clock ticks since boot, from /proc; None where /proc is missing)."""

    pid: int
    host: str
    boot_id: str | None = None
    started: int | None = None

    @classmethod
    def current(cls) -> Owner:
        """This process."""
        pid = os.getpid()
        stat = _proc_stat(pid)
        return cls(pid, socket.gethostname(), _boot_id(), stat[1] if stat else None)

    def state(self) -> OwnerState:
        """``running``, ``dead`` (exited, a zombie, its pid reused, or the machine rebooted), or
        ``unknown`` (another host: its processes cannot be seen from here)."""
        if self.host != socket.gethostname():
            return "unknown"
        boot = _boot_id()
        if self.boot_id and boot and self.boot_id != boot:
            return "dead"
        stat = _proc_stat(self.pid)
        if stat is None:
            return "running" if (_boot_id() is None and _pid_exists(self.pid)) else "dead"
        letter, started = stat
        if letter in ("Z", "X"):  # killed but not yet reaped by its parent
            return "dead"
        if self.started is not None and started != self.started:
            return "dead"  # the pid now belongs to another process
        return "running"

    def to_dict(self) -> dict[str, Any]:
        """The owner as stored under ``pending.<id>.owner``."""
        return {"pid": self.pid, "host": self.host, "boot_id": self.boot_id, "started": self.started}

    @classmethod
    def from_dict(cls, data: Any, source: str, key: str) -> Owner:
        """Read a stored owner; wrong types are a MetadataError naming ``source`` and ``key``."""
        if not isinstance(data, dict):
            raise invalid(source, key, data, "a mapping with pid and host")
        pid, host = data.get("pid"), data.get("host")
        if type(pid) is not int:
            raise invalid(source, f"{key}.pid", pid, "a process id (a whole number)")
        if not isinstance(host, str):
            raise invalid(source, f"{key}.host", host, "a host name as text")
        boot, started = data.get("boot_id"), data.get("started")
        if boot is not None and not isinstance(boot, str):
            raise invalid(source, f"{key}.boot_id", boot, "a boot id as text, or null")
        if started is not None and type(started) is not int:
            raise invalid(source, f"{key}.started", started, "a whole number, or null")
        return cls(pid, host, boot, started)


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class PendingOperation:
    """The durable intent of one create/update/rollback/delete on (name, target).

    ``planned`` holds the deterministic names the operation will create (an endpoint name, a
    registered-model tag...), so what it made can be found even when no id came back;
    ``ids`` gathers the ids the target returned so far (the same keys as ``Deployment.ids``,
    paths included). ``revision`` is the revision being created or restored.
    """

    name: str
    target: str
    action: Action
    revision: int
    planned: dict[str, Any] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=_new_id)
    started_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    owner: Owner = field(default_factory=Owner.current)
    status: OperationStatus = "pending"
    error: str | None = None

    def owner_state(self) -> OwnerState:
        """Whether the recording process still runs (see ``Owner.state``)."""
        return self.owner.state()

    def is_orphaned(self) -> bool:
        """True when the process that recorded this operation is certainly gone, so a reconcile
        may act on it; False while it runs or when that cannot be told (another host)."""
        return self.owner_state() == "dead"

    def describe(self) -> str:
        """One line for ``deploykit status``."""
        what = f"{self.action} of revision {self.revision} of {self.name!r} on {self.target}"
        who = f"process {self.owner.pid} on {self.owner.host}"
        line = f"pending {what}, started {self.started_at} by {who} ({self.owner_state()})"
        if self.status == "cleanup-failed":
            line += f"; removing what it created failed: {self.error}"
        return line

    def to_dict(self) -> dict[str, Any]:
        """The operation as stored under ``pending.<id>`` (the id is the key)."""
        out: dict[str, Any] = {
            "name": self.name, "target": self.target, "action": self.action, "revision": self.revision,
            "planned": dict(self.planned), "ids": dict(self.ids), "started_at": self.started_at,
            "updated_at": self.updated_at, "owner": self.owner.to_dict(), "status": self.status,
        }
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_dict(cls, op_id: str, data: Any, source: str = "metadata.yaml") -> PendingOperation:
        """Read ``pending.<op_id>``; wrong-typed fields are a MetadataError naming the key path."""
        key = f"pending.{op_id}"
        if not isinstance(data, dict):
            raise invalid(source, key, data, "a mapping (a pending operation)")
        text = {"name": "a deployment name as text", "target": "a target name as text",
                "started_at": "an ISO 8601 date-time as text", "updated_at": "an ISO 8601 date-time as text"}
        values: dict[str, Any] = {}
        for name, want in text.items():
            value = _text(data.get(name))
            if not isinstance(value, str):
                raise invalid(source, f"{key}.{name}", value, want)
            values[name] = value
        action = data.get("action")
        if action not in get_args(Action):
            raise invalid(source, f"{key}.action", action, f"one of {', '.join(get_args(Action))}")
        status = data.get("status", "pending")
        if status not in get_args(OperationStatus):
            raise invalid(source, f"{key}.status", status, f"one of {', '.join(get_args(OperationStatus))}")
        revision = data.get("revision")
        if type(revision) is not int:
            raise invalid(source, f"{key}.revision", revision, "a whole number such as 2")
        for name in ("planned", "ids"):
            value = data.get(name) or {}
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise invalid(source, f"{key}.{name}", value, "a mapping of names to values")
            values[name] = dict(value)
        error = data.get("error")
        if error is not None and not isinstance(error, str):
            raise invalid(source, f"{key}.error", error, "text, or null")
        return cls(action=cast(Action, action), revision=revision, id=op_id, owner=Owner.from_dict(data.get("owner"), source,
                   f"{key}.owner"), status=cast(OperationStatus, status), error=error, **values)


@dataclass
class Reconciliation:
    """The note left when a reconcile adopted or removed what an interrupted operation made.

    Kept on the deployment's record (``Deployment.reconciled``) when one remains, and in the
    top-level ``reconciled:`` list of metadata.yaml (the newest ``MetadataStore.KEEP_RECONCILED``).
    """

    op_id: str
    name: str
    target: str
    action: Action
    revision: int
    outcome: Outcome
    detail: str = ""
    at: str = field(default_factory=now)

    @classmethod
    def of(cls, op: PendingOperation, outcome: Outcome, detail: str = "") -> Reconciliation:
        """The note for ``op``."""
        return cls(op.id, op.name, op.target, op.action, op.revision, outcome, detail)

    def describe(self) -> str:
        """One line for ``deploykit status``."""
        verb = "adopted what it had created" if self.outcome == "adopted" else "removed what it had created"
        text = f"an interrupted {self.action} of revision {self.revision} was reconciled at {self.at}: {verb}"
        return f"{text} ({self.detail})" if self.detail else text

    def to_dict(self) -> dict[str, Any]:
        """The note as stored."""
        return {"op": self.op_id, "name": self.name, "target": self.target, "action": self.action,
                "revision": self.revision, "outcome": self.outcome, "detail": self.detail, "at": self.at}

    @classmethod
    def from_dict(cls, data: Any, source: str, key: str) -> Reconciliation:
        """Read a stored note; wrong types are a MetadataError naming ``source`` and ``key``."""
        if not isinstance(data, dict):
            raise invalid(source, key, data, "a mapping (a reconciled-operation note)")
        for name in ("op", "name", "target", "detail", "at"):
            value = _text(data.get(name, ""))
            if not isinstance(value, str):
                raise invalid(source, f"{key}.{name}", value, "text")
        if data.get("action") not in get_args(Action):
            raise invalid(source, f"{key}.action", data.get("action"), f"one of {', '.join(get_args(Action))}")
        if data.get("outcome") not in get_args(Outcome):
            raise invalid(source, f"{key}.outcome", data.get("outcome"), f"one of {', '.join(get_args(Outcome))}")
        if type(data.get("revision")) is not int:
            raise invalid(source, f"{key}.revision", data.get("revision"), "a whole number")
        return cls(data["op"], data["name"], data["target"], data["action"], data["revision"], data["outcome"],
                   str(data.get("detail", "")), _text(data.get("at", "")))
