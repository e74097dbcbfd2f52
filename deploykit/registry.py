"""The target registry: target names to classes, filled by the ``deploykit_register_targets`` hook.

A leaf module (it imports only ``deploykit.errors``), so hookspecs, the plugin manager and
targets can all name it without an import cycle, like tox's ``tox_env/register.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass

from deploykit.errors import TargetUnavailableError, UnknownTargetError

__all__ = ["TargetInfo", "TargetRegistry"]


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

    def __iter__(self) -> Iterator[TargetInfo]:
        return iter(self._targets[n] for n in self.names())
