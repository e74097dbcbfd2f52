"""deploykit's own protocol: records in (one object, a list of objects, or columns), and the
``deploykit`` (``{"predictions", "probabilities", "classes"}``) and ``records`` responses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from deploykit.hookspecs import hookimpl
from deploykit.payload.registry import Format, Protocol, simple_error, table_format
from deploykit.payload.table import Table, _columns_to_table, _records, _rows_to_table

if TYPE_CHECKING:
    from deploykit.payload.predictions import Predictions

__all__ = ["deploykit_register_formats"]


def _scalar_record(obj: dict[str, Any]) -> bool:
    return bool(obj) and all(type(v) not in (dict, list) for v in obj.values())


def _columnar_record(obj: dict[str, Any]) -> bool:
    return bool(obj) and all(type(v) is list for v in obj.values()) and \
        all(type(x) is not dict for v in obj.values() for x in v[:1])


def _table_records(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    if isinstance(obj, dict):
        return _columns_to_table(obj, "the record")
    return _rows_to_table(obj, columns, "records")


def _is_records(obj: Any) -> bool:
    return type(obj) is list or (type(obj) is dict and (_scalar_record(obj) or _columnar_record(obj)))


def encode_deploykit(preds: Predictions) -> dict[str, Any]:
    """``{"predictions": [...], "probabilities": [[...]], "classes": [...]}`` (probabilities when known)."""
    out: dict[str, Any] = {"predictions": preds.labels}
    if preds.probabilities is not None:
        out["probabilities"] = preds.probabilities
        out["classes"] = preds.classes
    return out


def decode_deploykit(body: Any) -> Predictions | None:
    """A ``{"predictions": [...]}`` body (MLflow's plain list too); None for any other shape."""
    from deploykit.payload.predictions import Predictions

    if not isinstance(body, dict) or not isinstance(body.get("predictions"), list):
        return None
    return Predictions(list(body["predictions"]), body.get("probabilities"), body.get("classes"), raw=body)


def encode_records(preds: Predictions) -> list[dict[str, Any]]:
    """One object per row: ``{"prediction": label, "probabilities": {class: p}}``."""
    if preds.probabilities is None:
        return [{"prediction": label} for label in preds.labels]
    names = preds.class_names
    return [{"prediction": label, "probabilities": dict(zip(names, p))}
            for label, p in zip(preds.labels, preds.probabilities)]


def decode_records(body: Any) -> Predictions | None:
    """A list: deploykit records (``{"prediction": ...}`` objects) or plain labels."""
    from deploykit.payload.predictions import Predictions

    if not isinstance(body, list):
        return None
    if body and isinstance(body[0], dict) and "prediction" in body[0]:
        labels = [r["prediction"] for r in body]
        if "probabilities" in body[0]:
            classes = list(body[0]["probabilities"])
            return Predictions(labels, [list(r["probabilities"].values()) for r in body], classes, raw=body)
        return Predictions(labels, raw=body)
    return Predictions(list(body), raw=body)


def _request_schema(record: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    return {"anyOf": [record, {"type": "array", "items": record, "minItems": 1}]}, rows


_ERROR_SCHEMA = {"type": "object", "required": ["error"],
                 "properties": {"error": {"type": "string"}, "problems": {"type": "array"}}}

RECORDS = table_format("records", _is_records, _table_records, _records,
                       "one object, a list of objects (one per row), or {column: [values]}")
DEPLOYKIT = Protocol(
    "deploykit", encode_deploykit, decode_deploykit, simple_error,
    description="Score one record, a list of records, or any payload format deploykit knows (JSON or CSV)",
    request_schema=_request_schema,
    response_schema={"type": "object", "required": ["predictions"], "properties": {
        "predictions": {"type": "array"}, "probabilities": {"type": "array"},
        "classes": {"type": ["array", "null"]}}},
    error_schema=_ERROR_SCHEMA)
RECORDS_RESPONSE = Protocol("records", encode_records, decode_records, simple_error,
                            description="one object per row: {prediction, probabilities}")


@hookimpl
def deploykit_register_formats(register: Callable[[Format | Protocol], None]) -> None:
    """Register the records request format and the deploykit and records responses."""
    register(RECORDS)
    register(DEPLOYKIT)
    register(RECORDS_RESPONSE)
