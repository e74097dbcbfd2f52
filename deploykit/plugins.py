"""The plugin manager: built-in targets and third-party plugins, loaded through one entry-point group.

``DEPLOYKIT_PLUGINS=local,watsonml`` restricts which plugins load (by entry-point name);
``DEPLOYKIT_TRACE_HOOKS=1`` prints every hook call to stderr. A hook implementation whose name
or arguments match no hook in ``deploykit.hookspecs`` (a misspelling) is a PluginError naming
the plugin and the hook, raised when the manager is built.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any

import pluggy

from deploykit import hookspecs
from deploykit.errors import PluginError
from deploykit.registry import TargetRegistry

if TYPE_CHECKING:
    from deploykit.deployment import Deployment

__all__ = ["BUILTIN_PLUGINS", "ListenerWarning", "get_plugin_manager", "get_registry", "notify"]

#: Built-in plugins, registered by module like any entry point (so they work from a source tree too).
BUILTIN_PLUGINS = {
    "local": "deploykit_plugins.local",
    "memory": "deploykit_plugins.memory",
    "watsonml": "deploykit_plugins.watsonml",
    "mlflow": "deploykit_plugins.mlflow",
    "batch": "deploykit_plugins.batch",
    "sagemaker": "deploykit_plugins.sagemaker",
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
                plugin = _import_builtin(name, module)
                if plugin is not None:
                    _register(pm, plugin, name)
        if only is not None:
            for ep_name in _entry_point_names():
                if ep_name not in only:
                    pm.set_blocked(ep_name)
        try:
            pm.load_setuptools_entrypoints("deploykit")
        except pluggy.PluginValidationError as exc:
            raise _invalid(exc) from None
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise _invalid(exc) from None
        if os.environ.get("DEPLOYKIT_TRACE_HOOKS"):
            pm.trace.root.setwriter(sys.stderr.write)
            pm.enable_tracing()
        _pm = pm
    return _pm


def _import_builtin(name: str, module: str) -> Any:
    """The built-in plugin module, or None when the module itself is absent (a trimmed install).

    A dependency the plugin imports being absent is a broken install, not a trimmed one, so it
    is an error naming both rather than a target that silently disappears.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            return None
        raise PluginError(
            f"built-in plugin {name!r} ({module}) cannot be imported: it needs the module {exc.name!r}, which is "
            f"not installed; reinstall deploykit (pip install --force-reinstall deploykit), or leave the plugin out "
            f"with DEPLOYKIT_PLUGINS"
        ) from None


def _register(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: pluggy.PluginValidationError) -> PluginError:
    """A PluginError naming the plugin and the hook implementation pluggy refused."""
    plugin = exc.plugin
    name = getattr(plugin, "__name__", None) or type(plugin).__qualname__
    known = ", ".join(n for n in dir(hookspecs) if n.startswith("deploykit_"))
    return PluginError(
        f"plugin {name!r} has an invalid hook implementation: {exc}; a hook implementation must be named "
        f"and take arguments like one of the hooks in deploykit.hookspecs ({known}); fix the plugin or "
        "leave it out with DEPLOYKIT_PLUGINS"
    )


def _label(name: str, plugin: Any) -> str:
    """A plugin's registered name, or its module or class name when it was registered without one."""
    if name != str(id(plugin)):
        return name
    return str(getattr(plugin, "__name__", None) or type(plugin).__qualname__)


def _entry_point_names() -> list[str]:
    """Every ``deploykit`` entry-point name of every installed distribution, as pluggy's
    ``load_setuptools_entrypoints`` walks them (``entry_points()`` keeps only the first copy of a
    distribution installed twice, so a name only a second copy declares would not be blocked)."""
    from importlib.metadata import distributions

    return sorted({ep.name for dist in distributions() for ep in dist.entry_points if ep.group == "deploykit"})


def get_registry() -> TargetRegistry:
    """The registry of every target the loaded plugins registered."""
    global _registry
    if _registry is None:
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


class ListenerWarning(UserWarning):
    """A ``deploykit_deployment_changed`` listener raised; the change it was told about stands."""


def notify(event: str, deployment: Deployment) -> None:
    """Fire ``deploykit_deployment_changed`` for every plugin that listens, one listener at a time.

    The change is already recorded when this runs, so a listener that raises cannot undo it: its
    error is reported as a ListenerWarning naming the plugin (shown on stderr by Python's default
    warning filter) and the other listeners still hear of the change.
    """
    pm = get_plugin_manager()
    caller = pm.hook.deploykit_deployment_changed
    arguments = {"event": event, "deployment": deployment}
    for impl in reversed(caller.get_hookimpls()):  # pluggy's own order: last registered first
        try:
            impl.function(*[arguments[a] for a in impl.argnames])
        except Exception as exc:
            warnings.warn(
                f"plugin {_label(impl.plugin_name, impl.plugin)!r} failed in deploykit_deployment_changed for {event} of "
                f"{deployment.name!r} on {deployment.target} ({type(exc).__name__}: {exc}); the deployment is "
                "recorded and serving; fix or disable the plugin (DEPLOYKIT_PLUGINS)",
                ListenerWarning, stacklevel=2,
            )


def reset() -> None:
    """Forget the manager and registry (tests that install or block plugins call this)."""
    global _pm, _registry
    _pm = None
    _registry = None
    load_formats.done = False  # type: ignore[attr-defined]
