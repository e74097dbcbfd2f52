"""The ``local`` target plugin: a FastAPI server under uvicorn on this machine."""

from __future__ import annotations

from typing import Any

from deploykit.hookspecs import hookimpl


@hookimpl
def deploykit_register_targets(registry: Any) -> None:
    """Register the local target (needs only deploykit's own dependencies)."""
    registry.add("local", "deploykit_plugins.local.target:LocalTarget",
                 settings="deploykit_plugins.local.settings:LocalSettings",
                 requires=("fastapi", "uvicorn"),
                 description="a FastAPI server on this machine (the default)")


@hookimpl
def deploykit_register_commands(cli: Any) -> None:
    """Add ``deploykit serve`` (the local server in the foreground)."""
    from deploykit_plugins.local.commands import serve_command

    cli.add_command(serve_command)
