"""The local server's routes, one module per protocol (each takes its shapes from ``deploykit.payload``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deploykit_plugins.local.routes import health, mlflow, records, script, v2, watson

if TYPE_CHECKING:
    from fastapi import FastAPI

    from deploykit_plugins.local.asgi import RouteContext

__all__ = ["mount"]


def mount(app: FastAPI, ctx: RouteContext) -> None:
    """Add every protocol's routes to ``app`` (a scoring script's own routes for a bundle)."""
    modules = (script, health) if ctx.artifact.flavor == "script" else (records, mlflow, watson, v2, health)
    for module in modules:
        module.mount(app, ctx)
