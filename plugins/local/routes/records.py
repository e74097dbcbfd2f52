"""``POST /predict``: any payload format deploykit knows in, deploykit's response shape (or CSV) out."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.routing import Route

from deploykit_plugins.local.asgi import Endpoint, RouteContext, wants_csv

__all__ = ["PATH", "mount"]

PATH = "/predict"


def mount(app: FastAPI, ctx: RouteContext) -> None:
    """Add ``POST /predict``."""
    async def predict(scope: dict[str, Any], headers: dict[bytes, bytes], body: bytes) -> tuple[int, Any]:
        obj = ctx.parse(body, headers, allow_csv=True)
        columns, rows = ctx.validate(obj, None)
        preds = await ctx.score(columns, rows, want_proba=True, client=scope.get("client"))
        return 200, preds.encode("csv") if wants_csv(headers) else preds.encode("deploykit")

    app.router.routes.append(Route(PATH, Endpoint(ctx, "deploykit", predict), methods=["POST"]))
