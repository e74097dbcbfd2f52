"""The record of one model running on one target, as stored in metadata.yaml.

Paths in ``ids`` are stored relative to the metadata file's folder, so a project that is moved
or checked out elsewhere (CI) still finds its kept model files. Which ``ids`` keys hold paths
is a naming convention (``is_path_key``): ``log`` and every key ending in ``_file``, ``_dir``,
``_path`` or ``_log``. Targets keep handing and getting absolute paths: the conversion happens
only where a record meets the file (``to_dict(base=...)`` / ``from_dict(base=...)``).
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

from deploykit.errors import MetadataError

__all__ = [
    "PATH_SUFFIXES", "Deployment", "as_text", "check_record", "invalid", "is_path_key", "live_paths", "now",
    "stored_paths",
]

#: ``ids`` keys ending like this (or named ``log``) hold file-system paths.
PATH_SUFFIXES = ("_file", "_dir", "_path", "_log")


def now() -> str:
    """The current UTC time in ISO 8601, seconds precision."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def is_path_key(key: str) -> bool:
    """Whether an ``ids`` key holds a path (``log``, or a name ending in one of ``PATH_SUFFIXES``)."""
    return key == "log" or key.endswith(PATH_SUFFIXES)


def stored_paths(ids: dict[str, Any], base: Path) -> dict[str, Any]:
    """``ids`` as written to the file: absolute paths inside ``base`` become relative (POSIX
    form); paths outside it stay absolute, since they do not move with the project."""
    out = dict(ids)
    for key, value in ids.items():
        if is_path_key(key) and isinstance(value, str) and os.path.isabs(value):
            try:
                out[key] = Path(value).relative_to(base).as_posix()
            except ValueError:
                pass
    return out


def live_paths(ids: dict[str, Any], base: Path) -> dict[str, Any]:
    """``ids`` as targets see them: relative paths resolved against ``base``.

    An absolute path written by an older deploykit that no longer exists but lies under a
    ``.deploykit`` folder is mapped to the same place under ``base/.deploykit`` when that exists
    (the project was moved); otherwise it is returned as written.
    """
    out = dict(ids)
    for key, value in ids.items():
        if not (is_path_key(key) and isinstance(value, str) and value):
            continue
        if not os.path.isabs(value):
            out[key] = str(base / PurePosixPath(value))
        elif not os.path.exists(value):
            parts = Path(value).parts
            if ".deploykit" in parts:
                moved = base.joinpath(*parts[parts.index(".deploykit"):])
                if moved.exists():
                    out[key] = str(moved)
    return out


# -- validation of what was read from the file ---------------------------------------------

def _kind(value: Any) -> str:
    return {"str": "text", "int": "a whole number", "float": "a number", "bool": "a boolean",
            "list": "a list", "dict": "a mapping", "NoneType": "null"}.get(type(value).__name__, type(value).__name__)


def invalid(source: str, key: str, value: Any, want: str) -> MetadataError:
    """The MetadataError for a wrong-typed value at ``key`` (a dotted key path) in ``source``."""
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return MetadataError(
        f"{source}: {key} is {shown} ({_kind(value)}), but it must be {want}; fix that value by hand "
        "(deploykit will not overwrite the file while it cannot read it)"
    )


def as_text(value: Any) -> Any:
    """A date or date-time as ISO 8601 text; anything else as it is."""
    # An unquoted ISO date-time in a hand-edited file is parsed by YAML as a datetime: read it as text.
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    return value


_WANT = {
    "revision": "a whole number such as 2",
    "status": "text such as ready",
    "url": "a URL as text, or null",
    "model_sha256": "a sha256 hex digest as text, or null",
    "ids": "a mapping of id names to values, such as {pid: 4242, port: 8000}",
    "columns": "a list of column names as text",
    "created_at": "an ISO 8601 date-time as text",
    "updated_at": "an ISO 8601 date-time as text",
    "history": "a list of earlier revisions (mappings)",
    "reconciled": "a mapping (the note of a reconciled operation), or null",
}


def check_record(data: Any, source: str, key: str, *, history: bool = True) -> dict[str, Any]:
    """``data`` checked as a stored record (or history entry); date-times read as text.

    Raises MetadataError naming ``source``, the key path and the value for the first wrong-typed field.
    """
    if not isinstance(data, dict):
        raise invalid(source, key, data, "a mapping with revision, status, url, ids, ... (a deployment record)")
    out = dict(data)
    for name in ("created_at", "updated_at"):
        if name in out:
            out[name] = as_text(out[name])
    checks: dict[str, Callable[[Any], bool]] = {
        "revision": lambda v: type(v) is int,
        "status": lambda v: isinstance(v, str),
        "url": lambda v: v is None or isinstance(v, str),
        "model_sha256": lambda v: v is None or isinstance(v, str),
        "ids": lambda v: v is None or (isinstance(v, dict) and all(isinstance(k, str) for k in v)),
        "columns": lambda v: v is None or (isinstance(v, list) and all(isinstance(c, str) for c in v)),
        "created_at": lambda v: isinstance(v, str),
        "updated_at": lambda v: isinstance(v, str),
        "history": lambda v: v is None or isinstance(v, list),
        "reconciled": lambda v: v is None or isinstance(v, dict),
    }
    for name, ok in checks.items():
        if name in out and not ok(out[name]):
            raise invalid(source, f"{key}.{name}", out[name], _WANT[name])
    if history:
        out["history"] = [check_record(entry, source, f"{key}.history[{i}]", history=False)
                          for i, entry in enumerate(out.get("history") or [])]
    return out


@dataclass
class Deployment:
    """One model on one target: its ids, endpoint, model hash, status and earlier revisions.

    ``ids`` holds the target's own identifiers (Watson ``model_uid``/``deployment_uid``, the
    local server's ``pid``/``port``, MLflow's ``version``/``run_id``...). ``history`` holds
    earlier revisions as plain dicts (the fields below minus ``history``), newest last.
    ``reconciled`` is the note left when an interrupted operation on this deployment was
    reconciled (see ``deploykit.operations.Reconciliation``); ``status`` shows it.
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
    reconciled: dict[str, Any] | None = None
    #: what the last call did: created, updated, unchanged, rolled-back (not stored)
    action: str = field(default="", compare=False)

    _STORED = ("revision", "status", "url", "model_sha256", "ids", "columns", "created_at", "updated_at")

    def snapshot(self) -> dict[str, Any]:
        """This revision as a history entry."""
        return {k: getattr(self, k) for k in self._STORED}

    def to_dict(self, *, base: Path | None = None) -> dict[str, Any]:
        """The record as written under ``deployments.<name>.<target>`` in metadata.yaml.

        With ``base`` (the metadata file's folder), paths in ``ids`` and in every history
        entry's ``ids`` are written relative to it (see ``stored_paths``).
        """
        out = self.snapshot()
        out["history"] = self.history
        if self.reconciled is not None:
            out["reconciled"] = self.reconciled
        out.update(self.extra)
        if base is not None:
            out["ids"] = stored_paths(self.ids, base)
            out["history"] = [_map_ids(e, stored_paths, base) for e in self.history]
        return out

    @classmethod
    def from_dict(cls, name: str, target: str, data: dict[str, Any], *, base: Path | None = None,
                  source: str = "metadata.yaml") -> Deployment:
        """Read a record; keys deploykit does not know are kept in ``extra`` and written back.

        Wrong-typed fields are a MetadataError naming ``source`` and the key path. With
        ``base``, relative paths in ``ids`` (and in history) are resolved against it.
        """
        data = check_record(data, source, f"deployments.{name}.{target}")
        known = {f.name for f in fields(cls)} - {"name", "target", "extra", "action"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        kwargs["ids"] = dict(kwargs.get("ids") or {})
        kwargs["history"] = list(kwargs.get("history") or [])
        kwargs["columns"] = list(kwargs.get("columns") or [])
        if base is not None:
            kwargs["ids"] = live_paths(kwargs["ids"], base)
            kwargs["history"] = [_map_ids(e, live_paths, base) for e in kwargs["history"]]
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
        """What ``--json`` prints: name, target, revision, url, status, action, ids (and the
        reconciled note, when an interrupted operation was reconciled)."""
        out = {"name": self.name, "target": self.target, "revision": self.revision, "url": self.url,
               "status": self.status, "model_sha256": self.model_sha256, "ids": self.ids,
               "updated_at": self.updated_at}
        if self.reconciled is not None:
            out["reconciled"] = self.reconciled
        if self.action:
            out["action"] = self.action
        return out


def _map_ids(entry: dict[str, Any], convert: Any, base: Path) -> dict[str, Any]:
    if isinstance(entry.get("ids"), dict):
        return {**entry, "ids": convert(entry["ids"], base)}
    return entry
