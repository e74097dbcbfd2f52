"""metadata.yaml, the state file: locked read-modify-write, atomic replace, unknown keys kept.

    deployments:
      bank-model:            # deployment name
        local:               # target
          revision: 2
          status: ready
          url: http://127.0.0.1:8000
          model_sha256: 9f2c...
          ids: {pid: 4242, port: 8000}
          history: [{revision: 1, model_sha256: ..., ids: {...}, ...}]

Older Watson scripts wrote flat keys (``model_uid``, ``deployment_uid``, ``space_id``) at the
top; they are read as a ``watsonml`` record and kept in step when that record changes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deploykit.deployment import Deployment
from deploykit.errors import DeployKitError, MetadataError, NotDeployedError

__all__ = ["DEFAULT_PATH", "MetadataStore", "State"]

DEFAULT_PATH = Path("metadata.yaml")
_HEADER = "# deploykit state file: written by `deploykit deploy`; edit with care, keys you add are kept.\n"
_LEGACY_KEYS = ("model_uid", "deployment_uid")


class State:
    """The parsed content of metadata.yaml, with lookups by name and target."""

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data
        self.source = source
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
        return [Deployment.from_dict(name, target, rec)
                for name, targets in sorted(self._section().items()) if isinstance(targets, dict)
                for target, rec in sorted(targets.items()) if isinstance(rec, dict)]

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
        self._section().setdefault(deployment.name, {})[deployment.target] = deployment.to_dict()
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


class MetadataStore:
    """Reads and writes one metadata.yaml; ``transaction()`` holds a file lock for a whole deploy."""

    def __init__(self, path: str | Path = DEFAULT_PATH, lock_timeout: float = 900.0) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout

    @property
    def state_dir(self) -> Path:
        """Where targets keep files next to metadata.yaml: ``.deploykit/`` (artifacts, logs)."""
        return self.path.resolve().parent / ".deploykit"

    def read(self) -> State:
        """Parse the file without locking (for read-only commands). A missing file is empty."""
        import yaml

        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return State({}, str(self.path))
        except OSError as exc:
            raise MetadataError(f"{self.path} cannot be read ({exc.strerror}); check its permissions") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise MetadataError(
                f"{self.path} is not valid YAML{where} ({getattr(exc, 'problem', exc)}); deploykit will not "
                "overwrite it: fix it by hand, or move it away to start a new one"
            ) from None
        if data is None:
            data = {}
        if not isinstance(data, dict) or not isinstance(data.get("deployments", {}), dict):
            raise MetadataError(
                f"{self.path} must be a mapping with a 'deployments' mapping, got {type(data).__name__}; "
                "deploykit will not overwrite it: fix it by hand, or move it away"
            )
        return State(data, str(self.path))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[State]:
        """Lock, read, yield the state, and write it back atomically if it changed.

        The lock is held for the whole block, so two deploys racing on one file both land.
        If the block raises, whatever it recorded before raising is still written (a remote
        asset that exists must not go unrecorded), and the error propagates.
        """
        from filelock import FileLock, Timeout

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path) + ".lock")
        try:
            lock.acquire(timeout=self.lock_timeout)
        except Timeout:
            raise MetadataError(
                f"{self.path} is locked by another deploykit process for over {self.lock_timeout:.0f} s; "
                f"wait for it, or remove {self.path}.lock if no deploykit is running"
            ) from None
        try:
            state = self.read()
            try:
                yield state
            finally:
                if state.changed:
                    self.write(state)
        finally:
            lock.release()

    def write(self, state: State) -> None:
        """Write atomically: a temp file in the same folder, fsync, then rename over the old one."""
        import yaml

        text = _HEADER + yaml.safe_dump(state.data, sort_keys=False, default_flow_style=False, allow_unicode=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, self.path.stat().st_mode & 0o777)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        state.changed = False
