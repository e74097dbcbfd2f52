"""``GET /health``: liveness, and the model this server serves."""

from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi.responses import Response

from deploykit_plugins.local.asgi import JSON, RouteContext, dumps

__all__ = ["mount"]


def mount(app: FastAPI, ctx: RouteContext) -> None:
    """Add ``GET /health``."""
    config, artifact = ctx.config, ctx.artifact

    @app.get("/health", summary="Liveness, and the model this server serves")
    async def health() -> Response:
        return Response(dumps({"status": "ok", "name": config.name, "revision": config.revision,
                               "model_sha256": artifact.sha256, "pid": os.getpid(),
                               "scored": {"requests": ctx.batcher.requests,
                                          "predict_calls": ctx.batcher.batches}}), media_type=JSON)
