"""Targets: the Deployer and Scorer interfaces every backend implements, and the registry of them.

A plugin registers a target class by name (``registry.add("local", "pkg.mod:LocalTarget")``);
the core owns the deploy flow (``deploykit.lifecycle``) and calls the target through these
two small interfaces only.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from deploykit.errors import DeploymentTimeout, TargetUnavailableError, UnknownTargetError

if TYPE_CHECKING:
    import pandas as pd

    from deploykit.artifact import Artifact
    from deploykit.deployment import Deployment
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


@dataclass
class TargetInfo:
    """A registered target: where its class lives, what it needs, and the install line if missing."""

    name: str
    cls: str | type
    description: str = ""
    requires: tuple[str, ...] = ()
    extra: str | None = None
    settings: str | type | None = None

    @property
    def missing(self) -> list[str]:
        """Modules this target needs that are not importable here."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    @property
    def install_hint(self) -> str:
        """The pip line that makes this target usable."""
        return f"pip install 'deploykit[{self.extra}]'" if self.extra else f"pip install {' '.join(self.missing)}"

    def load(self) -> type:
        """Import and return the target class; TargetUnavailableError if its SDK is missing."""
        if self.missing:
            raise TargetUnavailableError(
                f"target {self.name!r} needs {', '.join(self.missing)}, which is not installed; run: {self.install_hint}"
            )
        return _resolve(self.cls)

    def settings_model(self) -> type | None:
        """The pydantic model that validates this target's credentials section."""
        return _resolve(self.settings) if self.settings is not None else None


def _resolve(ref: str | type) -> type:
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


class TargetRegistry:
    """Target names to classes, filled by the ``deploykit_register_targets`` hook."""

    def __init__(self) -> None:
        self._targets: dict[str, TargetInfo] = {}

    def add(self, name: str, cls: str | type, *, description: str = "", requires: tuple[str, ...] = (),
            extra: str | None = None, settings: str | type | None = None) -> None:
        """Register a target class (or ``"module:Class"`` to import it lazily) under ``name``."""
        self._targets[name] = TargetInfo(name, cls, description, tuple(requires), extra, settings)

    def names(self) -> list[str]:
        """Registered target names, sorted."""
        return sorted(self._targets)

    def info(self, name: str) -> TargetInfo:
        """The TargetInfo of ``name``, or UnknownTargetError listing every registered name."""
        try:
            return self._targets[name]
        except KeyError:
            raise UnknownTargetError(
                f"unknown target {name!r}; installed targets: {', '.join(self.names()) or 'none'}"
                " (a third-party target is a pip-installed plugin; see 'deploykit targets')"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __iter__(self) -> Any:
        return iter(self._targets[n] for n in self.names())


def open_target(name: str, credentials: str | Path | None, state_dir: Path,
                progress: Callable[[str], None] | None = None, timeout: float = 600.0) -> Any:
    """Find, import and construct target ``name`` with its validated credentials section."""
    from deploykit.credentials import load_section, validate_section
    from deploykit.plugins import get_registry

    info = get_registry().info(name)
    cls = info.load()
    section = load_section(name, credentials)
    model = info.settings_model()
    settings = validate_section(model, section, name) if model is not None else section
    context = TargetContext(name, settings, state_dir, progress or (lambda m: None), timeout)
    return cls(context)


def terminal_progress() -> Callable[[str], None] | None:
    """A progress printer for an interactive terminal (stderr), or None when not a TTY."""
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def show(message: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5:
            sys.stderr.write(f"\r\033[K{message}")
            sys.stderr.flush()
            last[0] = now

    return show
