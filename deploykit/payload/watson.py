"""Watson ML's scoring protocol: ``input_data`` requests (fields and values blocks), the
``{"predictions": [{"fields", "values"}]}`` response and Watson's error body."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from deploykit.errors import PayloadError
from deploykit.hookspecs import hookimpl
from deploykit.payload.registry import Format, Protocol, table_format
from deploykit.payload.table import Table, _concat_tables, _rows, _rows_to_table, _short

if TYPE_CHECKING:
    from deploykit.payload.predictions import Predictions

__all__ = ["MISSING_INPUT_CODE", "REQUEST_FORMAT", "deploykit_register_formats", "encode_blocks", "missing_input"]

#: The request format of the Watson scoring route.
REQUEST_FORMAT = "input_data"

#: The error code Watson answers with when a request has no ``input_data``.
MISSING_INPUT_CODE = "missing_input_data"


def _table_watson(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    data = obj["input_data"]
    if not isinstance(data, list) or not data or not all(isinstance(part, dict) for part in data):
        raise PayloadError(
            f"input_data must be a non-empty list like [{{\"fields\": [...], \"values\": [[...]]}}], got {_short(data)}"
        )
    tables = []
    for i, part in enumerate(data):
        if "values" not in part:
            raise PayloadError(f"input_data[{i}] has no 'values'; add the rows as a list of lists")
        fields = part.get("fields") or columns
        if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)):
            raise PayloadError(f"input_data[{i}].fields must be a list of column names, got {_short(fields)}")
        tables.append(_rows_to_table(part["values"], fields, f"input_data[{i}].values"))
    return _concat_tables(tables, "input_data")


def _encode(frame: Any) -> dict[str, Any]:
    return {"input_data": [{"fields": [str(c) for c in frame.columns], "values": _rows(frame)}]}


def missing_input(obj: Any, example: dict[str, Any] | None) -> str | None:
    """Why ``obj`` is not a Watson request (naming an example made of ``example``), or None."""
    if isinstance(obj, dict) and "input_data" in obj:
        return None
    import orjson

    from deploykit.payload.registry import encode

    return ('the request body must contain "input_data", e.g. '
            f'{orjson.dumps(encode(example and [example] or [{}], "input_data")).decode()}')


def encode_response(preds: Predictions) -> dict[str, Any]:
    """One predictions block: fields ``prediction`` (and ``probability``), one value row per row."""
    if preds.probabilities is None:
        return {"predictions": [{"fields": ["prediction"], "values": [[v] for v in preds.labels]}]}
    return {"predictions": [{"fields": ["prediction", "probability"],
                             "values": [[v, p] for v, p in zip(preds.labels, preds.probabilities)]}]}


def encode_blocks(preds: Predictions, request: dict[str, Any]) -> dict[str, Any]:
    """The response to ``request``: one predictions block per input block, as Watson answers."""
    blocks = [len(b.get("values") or []) for b in request["input_data"]]
    if len(blocks) == 1:
        return encode_response(preds)
    out, start = [], 0
    for n in blocks:
        out.extend(encode_response(preds[start:start + n])["predictions"])
        start += n
    return {"predictions": out}


def decode_response(body: Any) -> Predictions | None:
    """A ``{"predictions": [{"fields": [...], "values": [[...]]}]}`` body; None for any other shape."""
    from deploykit.payload.predictions import Predictions

    preds = body.get("predictions") if isinstance(body, dict) else None
    if not (isinstance(preds, list) and preds and isinstance(preds[0], dict) and "values" in preds[0]):
        return None
    labels, probabilities = [], []
    for block in preds:
        fields = block.get("fields") or []
        li = fields.index("prediction") if "prediction" in fields else 0
        pi = fields.index("probability") if "probability" in fields else None
        for row in block["values"]:
            labels.append(row[li])
            if pi is not None:
                probabilities.append(row[pi])
    has_proba = bool(probabilities) or any("probability" in (b.get("fields") or []) for b in preds)
    return Predictions(labels, probabilities if has_proba else None, body.get("classes"), raw=body)


_CODES = {400: "invalid_input_data", 401: "authentication_failed", 404: "deployment_not_found",
          413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input_data",
          500: "internal_error"}


def error_body(status: int, message: str, problems: list[dict[str, Any]], code: str | None) -> Any:
    """``{"trace", "errors": [{"code", "message", "target"}], "status_code"}`` as Watson answers."""
    code = code or _CODES.get(status, "invalid_request")
    errors: list[dict[str, Any]] = [{"code": code, "message": message}]
    if problems:
        errors = [{"code": code, "message": q.get("message") or message,
                   "target": {"type": "field", "name": q["column"]}} for q in problems]
    return {"trace": os.urandom(16).hex(), "errors": errors, "status_code": status}


def _request_schema(record: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    from deploykit.payload.registry import encode

    body = {"type": "object", "required": ["input_data"], "properties": {"input_data": {
        "type": "array", "items": {"type": "object", "required": ["values"],
                                   "properties": {"fields": {"type": "array", "items": {"type": "string"}},
                                                  "values": {"type": "array", "items": {"type": "array"}}}}}}}
    example = encode(rows, "input_data") if rows and rows[0] else {"input_data": [{"fields": [], "values": []}]}
    return body, example


PROTOCOL = Protocol(
    "watson", encode_response, decode_response, error_body, formats=("input_data",),
    description="Watson ML scoring protocol: input_data fields/values",
    request_schema=_request_schema,
    response_schema={"type": "object", "required": ["predictions"], "properties": {"predictions": {"type": "array"}}},
    error_schema={"type": "object", "required": ["errors", "trace", "status_code"],
                  "properties": {"errors": {"type": "array"}, "trace": {"type": "string"},
                                 "status_code": {"type": "integer"}}})


@hookimpl
def deploykit_register_formats(register: Callable[[Format | Protocol], None]) -> None:
    """Register the ``input_data`` request format and Watson's response protocol."""
    register(table_format("input_data", _is_input_data, _table_watson, _encode,
                          "Watson ML: {'input_data': [{'fields': [...], 'values': [[...]]}]}"))
    register(PROTOCOL)


def _is_input_data(obj: Any) -> bool:
    return type(obj) is dict and "input_data" in obj
