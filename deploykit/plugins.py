"""The plugin manager: built-in targets and third-party plugins, loaded through one entry-point group.

``DEPLOYKIT_PLUGINS=local,watsonml`` restricts which plugins load (by entry-point name);
``DEPLOYKIT_TRACE_HOOKS=1`` prints every hook call to stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

import pluggy

from deploykit import hookspecs

if TYPE_CHECKING:
    from deploykit.target import TargetRegistry

__all__ = ["BUILTIN_PLUGINS", "get_plugin_manager", "get_registry", "notify"]

#: Built-in plugins, registered by module like any entry point (so they work from a source tree too).
BUILTIN_PLUGINS = {
    "local": "deploykit_plugins.local",
    "memory": "deploykit_plugins.memory",
    "watsonml": "deploykit_plugins.watsonml",
    "mlflow": "deploykit_plugins.mlflow",
    "batch": "deploykit_plugins.batch",
}

_pm: pluggy.PluginManager | None = None
_registry: TargetRegistry | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide PluginManager, built on first use."""
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("deploykit")
        pm.add_hookspecs(hookspecs)
        allowed = os.environ.get("DEPLOYKIT_PLUGINS")
        only = {p.strip() for p in allowed.split(",")} if allowed else None
        for name, module in BUILTIN_PLUGINS.items():
            if only is None or name in only:
                try:
                    pm.register(importlib.import_module(module), name=name)
                except ModuleNotFoundError:  # a trimmed install without that backend
                    continue
        if only is not None:
            for ep_name in _entry_point_names():
                if ep_name not in only:
                    pm.set_blocked(ep_name)
        pm.load_setuptools_entrypoints("deploykit")
        if os.environ.get("DEPLOYKIT_TRACE_HOOKS"):
            pm.trace.root.setwriter(sys.stderr.write)
            pm.enable_tracing()
        _pm = pm
    return _pm


def _entry_point_names() -> list[str]:
    from importlib.metadata import entry_points

    return [ep.name for ep in entry_points(group="deploykit")]


def get_registry() -> TargetRegistry:
    """The registry of every target the loaded plugins registered."""
    global _registry
    if _registry is None:
        from deploykit.target import TargetRegistry

        registry = TargetRegistry()
        get_plugin_manager().hook.deploykit_register_targets(registry=registry)
        _registry = registry
    return _registry


def load_formats() -> None:
    """Let plugins add payload formats (idempotent)."""
    from deploykit import payload

    if getattr(load_formats, "done", False):
        return
    get_plugin_manager().hook.deploykit_register_formats(register=payload.register)
    load_formats.done = True  # type: ignore[attr-defined]


def notify(event: str, deployment: Any) -> None:
    """Fire ``deploykit_deployment_changed`` for every plugin that listens."""
    get_plugin_manager().hook.deploykit_deployment_changed(event=event, deployment=deployment)


def reset() -> None:
    """Forget the manager and registry (tests that install or block plugins call this)."""
    global _pm, _registry
    _pm = None
    _registry = None
    load_formats.done = False  # type: ignore[attr-defined]
