"""The local server's OpenAPI document: FastAPI's for the GET routes, plus each scoring route
described by its protocol (request schema with an example row, response, error).

The example row is built from the schema's column types (``example_row``), never copied from
the artifact's example, which may be a verbatim training row (a customer's record)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from deploykit import payload
from deploykit_plugins.local.asgi import JSON, RouteContext
from deploykit_plugins.local.routes import mlflow, records, v2, watson

__all__ = ["document", "example_row"]

#: A placeholder value per schema type.
_PLACEHOLDERS: dict[str, Any] = {"integer": 0, "float": 0.0, "string": "string", "boolean": False,
                                 "datetime": "2024-01-01T00:00:00Z", "any": None}


def example_row(schema: Any) -> dict[str, Any]:
    """One row for the docs, from the column names and types only."""
    return {c.name: _PLACEHOLDERS.get(c.type) for c in schema.columns}


def document(app: FastAPI, schema: Any, ctx: RouteContext) -> dict[str, Any]:
    """The OpenAPI document: FastAPI's for the GET routes plus the hand-written scoring routes."""
    if ctx.artifact.flavor == "script":
        return _script_document(app, ctx)
    example = example_row(schema)

    def doc(path: str, summary: str, body: dict[str, Any], ok: dict[str, Any], error: dict[str, Any],
            params: dict[str, dict[str, Any]] | None = None) -> APIRoute:
        async def endpoint() -> None:
            return None

        extra = dict(body)
        if params:
            extra["parameters"] = [{"name": name, "in": "path", "required": True, "schema": param_schema}
                                   for name, param_schema in params.items()]
        responses: dict[int | str, dict[str, Any]] = {
            200: {"description": "Predictions", "content": {JSON: {"schema": ok}}}}
        for status, text in ((400, "Malformed payload"), (401, "Missing or wrong bearer token"),
                             (404, "Unknown model"), (413, "Body over local.max_body_bytes"),
                             (415, "Unsupported Content-Type"), (422, "Payload does not fit the schema")):
            responses[status] = {"description": text, "content": {JSON: {"schema": error}}}
        return APIRoute(path, endpoint, methods=["POST"], summary=summary, openapi_extra=extra,
                        responses=responses)

    served_routes = [(records.PATH, "deploykit", True, None),
                     (mlflow.PATH, "mlflow", True, None),
                     (watson.PATH, "watson", False, {"deployment_id": {"type": "string"}}),
                     (v2.INFER_PATHS[0], "v2", False, {"model_name": {"type": "string", "enum": [ctx.config.name]}})]
    docs = []
    for path, name, csv, params in served_routes:
        proto = payload.protocol(name)
        docs.append(doc(path, proto.description, _openapi_body(schema, example, proto, csv=csv),
                        proto.response_schema, proto.error_schema, params))
    spec = get_openapi(title=app.title, version=app.version, description=app.description,
                       routes=[*app.routes, *docs])
    served = {"model_name": ctx.config.name, "version": str(ctx.config.revision)}
    for operations in spec["paths"].values():  # one model, one version: say which
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param.get("in") == "path" and param["name"] in served:
                    param["schema"] = {"type": "string", "enum": [served[param["name"]]]}
    return spec


def _script_document(app: FastAPI, ctx: RouteContext) -> dict[str, Any]:
    """A scoring script's document: ``POST /predict`` taking the script's own JSON, its example the
    bundle's example request (the author wrote it as an example, so it is shown as it is)."""
    async def endpoint() -> None:
        return None

    proto = payload.protocol("deploykit")
    example = ctx.artifact.schema.example or {}
    body = {"requestBody": {"required": True, "content": {JSON: {"schema": {}, "example": example}}}}
    responses: dict[int | str, dict[str, Any]] = {200: {"description": "The script's answer",
                                                        "content": {JSON: {"schema": {}}}}}
    for status, text in ((400, "Malformed JSON"), (401, "Missing or wrong bearer token"),
                         (409, "An async script: submit a job instead"),
                         (413, "Body over local.max_body_bytes"), (422, "The script rejected the input"),
                         (500, "The script failed")):
        responses[status] = {"description": text, "content": {JSON: {"schema": proto.error_schema}}}
    route = APIRoute(records.PATH, endpoint, methods=["POST"], openapi_extra=body, responses=responses,
                     summary=f"Call the scoring script ({ctx.artifact.extra.get('mode', 'sync')}) with this JSON")
    return get_openapi(title=app.title, version=app.version, description=app.description,
                       routes=[*app.routes, route])


def _openapi_body(schema: Any, example: dict[str, Any], proto: payload.Protocol, csv: bool = False) -> dict[str, Any]:
    """The request body in the OpenAPI docs, pre-filled with ``example`` (see ``example_row``)."""
    types = {"integer": {"type": "integer"}, "float": {"type": "number"}, "string": {"type": "string"},
             "boolean": {"type": "boolean"}, "datetime": {"type": "string", "format": "date-time"}, "any": {}}
    props = {c.name: ({"anyOf": [types[c.type], {"type": "null"}]} if c.nullable else types[c.type])
             for c in schema.columns}
    record = {"type": "object", "properties": props, "required": schema.names,
              "additionalProperties": bool(schema.allow_extra_columns)}
    rows = [example] if example else [{}]
    if proto.request_schema is None:
        body_schema: dict[str, Any] = {"type": "object"}
        ex: Any = rows
    else:
        body_schema, ex = proto.request_schema(record, rows)
    content: dict[str, Any] = {JSON: {"schema": body_schema, "example": ex}}
    if csv:
        header = ",".join(schema.names)
        line = ",".join("" if example.get(n) is None else str(example.get(n)) for n in schema.names)
        content["text/csv"] = {"schema": {"type": "string"}, "example": f"{header}\n{line}\n"}
    return {"requestBody": {"required": True, "content": content}}
