"""The record of one model running on one target, as stored in metadata.yaml."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Deployment", "now"]


def now() -> str:
    """The current UTC time in ISO 8601, seconds precision."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class Deployment:
    """One model on one target: its ids, endpoint, model hash, status and earlier revisions.

    ``ids`` holds the target's own identifiers (Watson ``model_uid``/``deployment_uid``, the
    local server's ``pid``/``port``, MLflow's ``version``/``run_id``...). ``history`` holds
    earlier revisions as plain dicts (the fields below minus ``history``), newest last.
    Secrets are never stored here.
    """

    name: str
    target: str
    revision: int = 1
    status: str = "pending"
    url: str | None = None
    model_sha256: str | None = None
    ids: dict[str, Any] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: what the last call did: created, updated, unchanged, rolled-back (not stored)
    action: str = field(default="", compare=False)

    _STORED = ("revision", "status", "url", "model_sha256", "ids", "columns", "created_at", "updated_at")

    def snapshot(self) -> dict[str, Any]:
        """This revision as a history entry."""
        return {k: getattr(self, k) for k in self._STORED}

    def to_dict(self) -> dict[str, Any]:
        """The record as written under ``deployments.<name>.<target>`` in metadata.yaml."""
        out = self.snapshot()
        out["history"] = self.history
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, name: str, target: str, data: dict[str, Any]) -> Deployment:
        """Read a record; keys deploykit does not know are kept in ``extra`` and written back."""
        known = {f.name for f in fields(cls)} - {"name", "target", "extra", "action"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        kwargs["ids"] = dict(kwargs.get("ids") or {})
        kwargs["history"] = list(kwargs.get("history") or [])
        kwargs["columns"] = list(kwargs.get("columns") or [])
        return cls(name=name, target=target, extra=extra, **kwargs)

    def revision_entry(self, revision: int) -> Deployment | None:
        """The earlier revision ``revision`` as a Deployment, or None if history lacks it."""
        for entry in self.history:
            if entry.get("revision") == revision:
                return Deployment.from_dict(self.name, self.target, dict(entry))
        return None

    @property
    def revisions(self) -> list[int]:
        """Every revision known for this deployment, the current one included, ascending."""
        return sorted({int(e["revision"]) for e in self.history if "revision" in e} | {self.revision})

    def summary(self) -> dict[str, Any]:
        """What ``--json`` prints: name, target, revision, url, status, action, ids."""
        out = {"name": self.name, "target": self.target, "revision": self.revision, "url": self.url,
               "status": self.status, "model_sha256": self.model_sha256, "ids": self.ids,
               "updated_at": self.updated_at}
        if self.action:
            out["action"] = self.action
        return out
