"""The local server's FastAPI app: one loaded model, every protocol deploykit speaks.

Routes: ``/health``; ``/predict`` (records, deploykit's shape); ``/invocations`` (MLflow, JSON
and CSV); ``/v2/...`` (Open Inference Protocol); ``/ml/v4/deployments/{id}/predictions``
(Watson). Each answers, errors included, in its own protocol's shape. Bad input is a 4xx
naming the column, the value and the fix; never a 500, never a silent cast.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from deploykit import payload
from deploykit.artifact import Artifact
from deploykit.errors import PayloadError, SchemaError

__all__ = ["ServerConfig", "create_app"]

_JSON = "application/json"


@dataclass
class ServerConfig:
    """How the server runs: name and revision it reports, auth token, body size limit."""

    name: str = "model"
    revision: int = 1
    token: str | None = None
    max_body_bytes: int = 32 * 1024 * 1024


class HTTPProblem(Exception):
    """A 4xx answer: status, a message, and (for schema errors) every offending field."""

    def __init__(self, status: int, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type=_JSON, headers=headers)


# Each protocol's error body shape.
def _err_deploykit(p: HTTPProblem) -> Any:
    out: dict[str, Any] = {"error": p.message}
    if p.problems:
        out["problems"] = p.problems
    return out


def _err_mlflow(p: HTTPProblem) -> Any:
    code = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 404: "RESOURCE_DOES_NOT_EXIST", 413: "BAD_REQUEST",
            415: "BAD_REQUEST", 422: "INVALID_PARAMETER_VALUE"}.get(p.status, "BAD_REQUEST")
    out: dict[str, Any] = {"error_code": code, "message": p.message}
    if p.problems:
        out["problems"] = p.problems
    return out


def _err_v2(p: HTTPProblem) -> Any:
    out: dict[str, Any] = {"error": p.message}
    if p.problems:
        out["problems"] = p.problems
    return out


def _err_watson(p: HTTPProblem) -> Any:
    code = {400: "invalid_input_data", 401: "authentication_failed", 404: "deployment_not_found",
            413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input_data"}.get(p.status, "error")
    return {"errors": [{"code": code, "message": p.message, "more_info": p.problems or None}],
            "trace": os.urandom(8).hex(), "status_code": p.status}


def create_app(artifact: Artifact, config: ServerConfig | None = None) -> FastAPI:
    """Build the app for ``artifact``; the model, schema and codecs are prepared here, once."""
    config = config or ServerConfig()
    schema = artifact.schema
    columns = schema.names or None
    token = config.token.encode() if config.token else None
    example = schema.example
    classes = artifact.classes
    app = FastAPI(title=f"deploykit: {config.name}", version=str(config.revision),
                  description=f"Model {config.name} revision {config.revision} "
                              f"({artifact.framework} {artifact.framework_version or ''}, sha256 {artifact.sha256[:12]})")

    def check_auth(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token):
            raise HTTPProblem(401, "missing or wrong bearer token; send 'Authorization: Bearer <token>' "
                                   "with the token from credentials.yaml local.token")

    async def read_body(request: Request) -> tuple[bytes, str]:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > config.max_body_bytes:
            raise HTTPProblem(413, f"request body is {length} bytes, over the limit of {config.max_body_bytes}; "
                                   "send fewer rows per request or raise local.max_body_bytes")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_body_bytes:
                raise HTTPProblem(413, f"request body is over the limit of {config.max_body_bytes} bytes; "
                                       "send fewer rows per request or raise local.max_body_bytes")
            chunks.append(chunk)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        return b"".join(chunks), ctype

    def parse(body: bytes, ctype: str, allow_csv: bool) -> Any:
        if ctype in ("text/csv", "application/csv") and allow_csv:
            return body.decode("utf-8", "replace")
        if ctype and ctype != _JSON and not ctype.endswith("+json") and ctype != "text/plain":
            accepted = "application/json" + (" or text/csv" if allow_csv else "")
            raise HTTPProblem(415, f"Content-Type {ctype!r} is not supported here; send {accepted}")
        if not body.strip():
            raise HTTPProblem(400, "request body is empty; send a JSON payload, e.g. " + orjson.dumps([example]).decode())
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPProblem(400, f"request body is not valid JSON ({exc}); send a JSON payload") from None

    def to_frame(obj: Any, fmt: str | None = None) -> Any:
        try:
            frame = payload.decode(obj, columns, fmt)
            if len(frame) == 0:
                raise HTTPProblem(400, "the payload has no rows; send at least one row")
            return schema.validate(frame) if schema.columns else frame
        except SchemaError as exc:
            raise HTTPProblem(422, str(exc), exc.problems) from None
        except PayloadError as exc:
            raise HTTPProblem(400, str(exc)) from None

    def predict(frame: Any) -> payload.Predictions:
        try:
            return artifact.predict(frame)
        except (ValueError, TypeError, KeyError) as exc:
            # with the schema enforced, what the model still rejects is input it cannot handle
            raise HTTPProblem(422, f"the model rejected the input: {type(exc).__name__}: {exc}") from None

    def endpoint(protocol: str, err: Callable[[HTTPProblem], Any], allow_csv: bool = False,
                 fmt: str | None = None) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                check_auth(request)
                body, ctype = await read_body(request)
                obj = parse(body, ctype, allow_csv)
                if protocol == "mlflow" and isinstance(obj, dict):
                    known = {"dataframe_split", "dataframe_records", "instances", "inputs"}
                    if not known & set(obj):
                        raise HTTPProblem(400, f"top-level keys {sorted(obj)[:10]} are not an MLflow payload; "
                                               "send one of dataframe_split, dataframe_records, instances, inputs")
                frame = to_frame(obj, fmt if not isinstance(obj, str) else "csv")
                result = await run_in_threadpool(predict, frame)
                return _json(result.encode(protocol))
            except HTTPProblem as p:
                headers = {"WWW-Authenticate": "Bearer"} if p.status == 401 else None
                return _json(err(p), p.status, headers)
        return handle

    body_schema = _openapi_body(schema, example)
    app.add_api_route("/predict", endpoint("deploykit", _err_deploykit), methods=["POST"],
                      summary="Score one record or a list of records (any deploykit payload format)",
                      openapi_extra=body_schema)
    app.add_api_route("/invocations", endpoint("mlflow", _err_mlflow, allow_csv=True), methods=["POST"],
                      summary="MLflow scoring protocol: dataframe_split, dataframe_records, instances, inputs or CSV",
                      openapi_extra=_openapi_body(schema, example, wrap="dataframe_records"))
    watson = endpoint("watson", _err_watson, fmt="input_data")
    app.add_api_route("/ml/v4/deployments/{deployment_id}/predictions", watson, methods=["POST"],
                      summary="Watson ML scoring protocol: input_data fields/values",
                      openapi_extra=_openapi_body(schema, example, wrap="input_data"))
    v2 = endpoint("v2", _err_v2, fmt="v2")

    async def v2_infer(request: Request) -> Response:
        model = request.path_params["model_name"]
        if model != config.name:
            return _json({"error": f"model {model!r} is not served here; this server serves {config.name!r}"}, 404)
        return await v2(request)

    app.add_api_route("/v2/models/{model_name}/infer", v2_infer, methods=["POST"],
                      summary="Open Inference Protocol V2 inference", openapi_extra=_openapi_body(schema, example, wrap="v2"))

    @app.get("/health", summary="Liveness and the model this server serves")
    async def health() -> Response:
        return _json({"status": "ok", "name": config.name, "revision": config.revision,
                      "model_sha256": artifact.sha256, "pid": os.getpid()})

    @app.get("/v2/health/live", summary="V2 liveness")
    async def v2_live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready", summary="V2 readiness")
    async def v2_ready() -> Response:
        return _json({"ready": True})

    @app.get("/v2", summary="V2 server metadata")
    async def v2_server() -> Response:
        return _json({"name": "deploykit", "version": "0.1.0", "extensions": []})

    def v2_model_meta() -> dict[str, Any]:
        datatype = {"integer": "INT64", "float": "FP64", "boolean": "BOOL"}
        return {
            "name": config.name, "versions": [str(config.revision)], "platform": artifact.framework,
            "inputs": [{"name": c.name, "datatype": datatype.get(c.type, "BYTES"), "shape": [-1]} for c in schema.columns],
            "outputs": [{"name": "predict", "datatype": "BYTES", "shape": [-1]}]
            + ([{"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(classes)]}] if classes else []),
        }

    @app.get("/v2/models/{model_name}", summary="V2 model metadata")
    async def v2_model(model_name: str) -> Response:
        if model_name != config.name:
            return _json({"error": f"model {model_name!r} is not served here; this server serves {config.name!r}"}, 404)
        return _json(v2_model_meta())

    @app.get("/v2/models/{model_name}/ready", summary="V2 model readiness")
    async def v2_model_ready(model_name: str) -> Response:
        if model_name != config.name:
            return _json({"error": f"model {model_name!r} is not served here"}, 404)
        return _json({"name": model_name, "ready": True})

    return app


def _openapi_body(schema: Any, example: dict[str, Any], wrap: str | None = None) -> dict[str, Any]:
    """The request body in the OpenAPI docs, pre-filled with the artifact's example row."""
    types = {"integer": {"type": "integer"}, "float": {"type": "number"}, "string": {"type": "string"},
             "boolean": {"type": "boolean"}, "datetime": {"type": "string", "format": "date-time"}, "any": {}}
    props = {c.name: ({"anyOf": [types[c.type], {"type": "null"}]} if c.nullable else types[c.type])
             for c in schema.columns}
    record = {"type": "object", "properties": props, "required": schema.names,
              "additionalProperties": bool(schema.allow_extra_columns)}
    if wrap is None:
        body_schema: dict[str, Any] = {"anyOf": [record, {"type": "array", "items": record, "minItems": 1}]}
        ex: Any = [example]
    elif wrap == "dataframe_records":
        body_schema = {"type": "object", "properties": {"dataframe_records": {"type": "array", "items": record}},
                       "required": ["dataframe_records"]}
        ex = {"dataframe_records": [example]}
    elif wrap == "input_data":
        body_schema = {"type": "object", "required": ["input_data"], "properties": {"input_data": {
            "type": "array", "items": {"type": "object", "required": ["values"],
                                       "properties": {"fields": {"type": "array", "items": {"type": "string"}},
                                                      "values": {"type": "array", "items": {"type": "array"}}}}}}}
        ex = payload.encode([example], "input_data") if example else {"input_data": []}
    else:
        body_schema = {"type": "object", "required": ["inputs"], "properties": {"inputs": {"type": "array", "items": {
            "type": "object", "required": ["name", "shape", "datatype", "data"],
            "properties": {"name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                           "datatype": {"type": "string"}, "data": {"type": "array"}}}}}}
        ex = payload.encode([example], "v2") if example else {"inputs": []}
    return {"requestBody": {"required": True, "content": {_JSON: {"schema": body_schema, "example": ex}}}}
