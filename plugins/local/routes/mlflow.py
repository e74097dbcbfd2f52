"""``POST /invocations``: MLflow's scoring protocol (its four JSON formats, or CSV)."""

from __future__ import annotations

from typing import Any

from deploykit_plugins.local.asgi import Endpoint, HTTPProblem, RouteContext
from fastapi import FastAPI
from starlette.routing import Route

from deploykit.errors import PayloadError
from deploykit.payload import mlflow

__all__ = ["PATH", "mount"]

PATH = "/invocations"


def mount(app: FastAPI, ctx: RouteContext) -> None:
    """Add ``POST /invocations``."""
    async def invocations(scope: dict[str, Any], headers: dict[bytes, bytes], body: bytes) -> tuple[int, Any]:
        obj = ctx.parse(body, headers, allow_csv=True)
        if isinstance(obj, str):
            fmt = "csv"
        else:
            try:
                fmt = mlflow.request_format(obj, ctx.example_body)
            except PayloadError as exc:
                raise HTTPProblem(400, str(exc)) from None
        columns, rows = ctx.validate(obj, fmt)
        preds = await ctx.score(columns, rows, want_proba=False, client=scope.get("client"))
        return 200, preds.encode("mlflow")

    app.router.routes.append(Route(PATH, Endpoint(ctx, "mlflow", invocations), methods=["POST"]))
