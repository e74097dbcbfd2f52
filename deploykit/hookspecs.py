"""Every hook a deploykit plugin can implement; the reference page docs/plugins.md is checked against it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    import click

    from deploykit.artifact import Artifact
    from deploykit.batch import EngineRegistry
    from deploykit.deployment import Deployment
    from deploykit.payload import Format
    from deploykit.registry import TargetRegistry
    from deploykit.schema import Schema

hookspec = pluggy.HookspecMarker("deploykit")
hookimpl = pluggy.HookimplMarker("deploykit")

__all__ = ["hookimpl", "hookspec"]


@hookspec
def deploykit_register_targets(registry: TargetRegistry) -> None:
    """Called once when targets are first needed; call ``registry.add(...)`` for each target you provide."""


@hookspec
def deploykit_register_formats(register: Callable[[Format], None]) -> None:
    """Called once when payload formats are first needed; call ``register(Format(...))`` for each codec you add."""


@hookspec
def deploykit_deployment_changed(event: str, deployment: Deployment) -> None:
    """Called after a deployment was created, updated, rolled back or deleted (``event`` says which); returns nothing."""


@hookspec(firstresult=True)
def deploykit_load_artifact(source: str, schema: str | Path | Schema | None,
                            credentials: str | Path | None) -> Artifact | None:
    """Called to load a model source (a path or URI); return an Artifact if you recognise
    ``source``, else None (first result wins)."""


@hookspec
def deploykit_register_commands(cli: click.Group) -> None:
    """Called once when the ``deploykit`` command line is built; add ``click`` commands to ``cli``."""


@hookspec
def deploykit_register_engines(registry: EngineRegistry) -> None:
    """Called once when batch engines are first needed; call ``registry.add(...)`` for each engine you provide."""
