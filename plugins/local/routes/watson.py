"""``POST /ml/v4/deployments/{deployment_id}/predictions``: Watson ML's scoring protocol."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.routing import Route

from deploykit.payload import watson
from deploykit_plugins.local.asgi import Endpoint, HTTPProblem, RouteContext

__all__ = ["PATH", "mount"]

PATH = "/ml/v4/deployments/{deployment_id}/predictions"


def mount(app: FastAPI, ctx: RouteContext) -> None:
    """Add the Watson scoring route."""
    async def predictions(scope: dict[str, Any], headers: dict[bytes, bytes], body: bytes) -> tuple[int, Any]:
        obj = ctx.parse(body, headers, allow_csv=False)
        problem = watson.missing_input(obj, ctx.schema.example)
        if problem is not None:
            raise HTTPProblem(400, problem, code=watson.MISSING_INPUT_CODE)
        columns, rows = ctx.validate(obj, watson.REQUEST_FORMAT)
        preds = await ctx.score(columns, rows, want_proba=True, client=scope.get("client"))
        return 200, watson.encode_blocks(preds, obj)

    app.router.routes.append(Route(PATH, Endpoint(ctx, "watson", predictions), methods=["POST"]))
