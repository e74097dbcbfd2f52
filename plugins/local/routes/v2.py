"""Open Inference Protocol V2: ``infer`` (JSON or binary tensors), model metadata, health and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.routing import Route

from deploykit.errors import PayloadError
from deploykit.payload import v2
from deploykit_plugins.local.asgi import (
    JSON,
    Endpoint,
    HTTPProblem,
    Raw,
    RouteContext,
    dumps,
    headers_of,
)

__all__ = ["INFER_PATHS", "mount"]

INFER_PATHS = ("/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{version}/infer")
_BINARY_HEADER = v2.BINARY_HEADER.encode()


def mount(app: FastAPI, ctx: RouteContext) -> None:
    """Add the V2 inference, metadata and health routes."""
    config = ctx.config
    version_served = str(config.revision)

    def check_model(name: Any, version: Any) -> None:
        if name != config.name:
            raise HTTPProblem(404, f"model {name!r} is not served here; this server serves {config.name!r}")
        if version is not None and version != version_served:
            raise HTTPProblem(404, f"version {version!r} of {config.name!r} is not served here; "
                                   f"this server serves version {config.revision}")

    async def infer(scope: dict[str, Any], headers: dict[bytes, bytes], body: bytes) -> tuple[int, Any]:
        params = scope.get("path_params", {})
        check_model(params.get("model_name"), params.get("version"))
        header_length = headers.get(_BINARY_HEADER)
        try:
            obj = v2.decode_binary_request(body, header_length) if header_length is not None else \
                ctx.parse(body, headers, allow_csv=False)
            problem = v2.request_problem(obj)
            if problem is not None:
                raise HTTPProblem(400, problem)
            requested = v2.requested_outputs(obj, ctx.scorer.has_proba)
        except PayloadError as exc:
            raise HTTPProblem(400, str(exc)) from None
        columns, rows = ctx.validate(obj, "v2")
        want_proba = requested is None or v2.PROBABILITIES in requested
        preds = await ctx.score(columns, rows, want_proba=want_proba, client=scope.get("client"))
        answer = v2.infer_response(preds, obj, requested, config.name, version_served)
        binary = v2.encode_binary_response(answer, obj)
        if binary is None:
            return 200, answer
        content, json_length = binary
        return 200, Raw(content, v2.BINARY_MEDIA_TYPE, [(_BINARY_HEADER, str(json_length).encode())])

    for path in INFER_PATHS:
        app.router.routes.append(Route(path, Endpoint(ctx, "v2", infer), methods=["POST"]))

    # Metadata and health (not on the hot path: ordinary FastAPI routes)
    errors = v2.PROTOCOL

    def guard(request: Request, name: str, version: str | None = None) -> Response | None:
        try:
            ctx.check_auth(headers_of(request.scope))
            check_model(name, version)
        except HTTPProblem as p:
            return Response(dumps(errors.error_body(p.status, p.message, p.problems, p.code)), status_code=p.status,
                            media_type=JSON, headers={"WWW-Authenticate": "Bearer"} if p.status == 401 else None)
        return None

    columns = [(c.name, c.type) for c in ctx.schema.columns]
    model_meta = v2.model_metadata(config.name, version_served, ctx.artifact.framework, columns,
                                   ctx.artifact.classes, ctx.scorer.has_proba)

    @app.get("/v2/health/live", summary="V2 liveness")
    async def v2_live() -> Response:
        return Response(b'{"live":true}', media_type=JSON)

    @app.get("/v2/health/ready", summary="V2 readiness (the model is loaded before the server listens)")
    async def v2_ready() -> Response:
        return Response(b'{"ready":true}', media_type=JSON)

    @app.get("/v2", summary="V2 server metadata")
    async def v2_server() -> Response:
        from deploykit import __version__

        return Response(dumps({"name": "deploykit", "version": __version__, "extensions": v2.EXTENSIONS}),
                        media_type=JSON)

    @app.get("/v2/models", summary="V2 repository index: the models served here")
    async def v2_models(request: Request) -> Response:
        return guard(request, config.name) or Response(dumps(v2.model_index([config.name])), media_type=JSON)

    @app.get("/v2/models/{model_name}", summary="V2 model metadata")
    async def v2_model(request: Request, model_name: str) -> Response:
        return guard(request, model_name) or Response(dumps(model_meta), media_type=JSON)

    @app.get("/v2/models/{model_name}/versions/{version}", summary="V2 model metadata of one version")
    async def v2_model_version(request: Request, model_name: str, version: str) -> Response:
        return guard(request, model_name, version) or Response(dumps(model_meta), media_type=JSON)

    @app.get("/v2/models/{model_name}/ready", summary="V2 model readiness")
    async def v2_model_ready(request: Request, model_name: str) -> Response:
        return guard(request, model_name) or Response(dumps({"name": model_name, "ready": True}), media_type=JSON)

    @app.get("/v2/models/{model_name}/versions/{version}/ready", summary="V2 model readiness of one version")
    async def v2_model_version_ready(request: Request, model_name: str, version: str) -> Response:
        return guard(request, model_name, version) or Response(
            dumps({"name": model_name, "ready": True}), media_type=JSON)
