"""MLflow's scoring protocol: ``dataframe_split``, ``dataframe_records``, ``instances`` and
``inputs`` requests, the ``{"predictions": ...}`` response and MLflow's error body."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from deploykit.errors import PayloadError
from deploykit.hookspecs import hookimpl
from deploykit.payload.registry import Format, Protocol, table_format
from deploykit.payload.table import (
    Table,
    _columns,
    _columns_to_table,
    _records,
    _rows,
    _rows_to_table,
    _short,
)

if TYPE_CHECKING:
    from deploykit.payload.predictions import Predictions

__all__ = ["REQUEST_FORMATS", "deploykit_register_formats", "request_format"]

#: The request formats of MLflow's ``/invocations`` (CSV aside), one top-level key each.
REQUEST_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def _table_split(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    split = obj["dataframe_split"]
    if not isinstance(split, dict) or "data" not in split:
        raise PayloadError(
            f"dataframe_split must be an object with 'columns' and 'data', got {_short(split)}; "
            'send {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}'
        )
    cols = split.get("columns") or columns
    if cols is not None and (not isinstance(cols, list) or not all(isinstance(c, (str, int)) for c in cols)):
        raise PayloadError(f"dataframe_split.columns must be a list of names, got {_short(cols)}")
    table = _rows_to_table(split["data"], cols, "dataframe_split.data")
    index = split.get("index")
    if isinstance(index, list) and len(index) == table.rows and all(isinstance(i, (str, int)) for i in index):
        table.index = index
    return table


def _table_df_records(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    return _rows_to_table(obj["dataframe_records"], columns, "dataframe_records")


def _table_instances(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    inst = obj["instances"]
    if isinstance(inst, dict):
        return _columns_to_table(inst, "instances")
    return _rows_to_table(inst, columns, "instances")


def _table_inputs(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    inputs = obj["inputs"]
    if isinstance(inputs, dict):
        return _columns_to_table(inputs, "inputs")
    return _rows_to_table(inputs, columns, "inputs")


def _is_mlflow(key: str) -> Callable[[Any], bool]:
    return lambda o: type(o) is dict and key in o


def request_format(obj: Any, example: str) -> str:
    """Which MLflow request format ``obj`` is; PayloadError (quoting the ``example`` rows) unless
    it has exactly one of the keys."""
    keys = [k for k in REQUEST_FORMATS if isinstance(obj, dict) and k in obj]
    if len(keys) != 1:
        seen = sorted(map(str, obj))[:10] if isinstance(obj, dict) else type(obj).__name__
        raise PayloadError(f"an MLflow payload is a JSON object with exactly one of the keys "
                           f"{', '.join(REQUEST_FORMATS)}; got {seen}. Example: "
                           f'{{"dataframe_records": {example}}}')
    return keys[0]


def encode_response(preds: Predictions) -> dict[str, Any]:
    """``{"predictions": [label, ...]}``."""
    return {"predictions": preds.labels}


def decode_response(body: Any) -> Predictions | None:
    """A model that answered with a table: ``{"predictions": [{col: v}]}`` or ``{"predictions": {col: [...]}}``.
    A plain ``{"predictions": [...]}`` list is read by the deploykit protocol."""
    from deploykit.payload.predictions import Predictions

    preds = body.get("predictions") if isinstance(body, dict) else None
    if isinstance(preds, list) and preds and isinstance(preds[0], dict):
        key = "prediction" if "prediction" in preds[0] else next(iter(preds[0]))
        return Predictions([p.get(key) for p in preds], raw=body)
    if isinstance(preds, dict):
        key = "prediction" if "prediction" in preds else next(iter(preds))
        return Predictions(list(preds[key]), raw=body)
    return None


_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 404: "RESOURCE_DOES_NOT_EXIST",
          413: "BAD_REQUEST", 415: "BAD_REQUEST", 422: "INVALID_PARAMETER_VALUE", 500: "INTERNAL_ERROR"}


def error_body(status: int, message: str, problems: list[dict[str, Any]], code: str | None) -> Any:
    """``{"error_code": "BAD_REQUEST", "message": ..., "problems": [...]}`` as MLflow answers."""
    out: dict[str, Any] = {"error_code": _CODES.get(status, "BAD_REQUEST"), "message": message}
    if problems:
        out["problems"] = problems
    return out


def _request_schema(record: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    return ({"type": "object", "properties": {"dataframe_records": {"type": "array", "items": record}},
             "required": ["dataframe_records"]}, {"dataframe_records": rows})


PROTOCOL = Protocol(
    "mlflow", encode_response, decode_response, error_body, formats=REQUEST_FORMATS,
    description="MLflow scoring protocol: dataframe_split, dataframe_records, instances, inputs, or CSV",
    request_schema=_request_schema,
    response_schema={"type": "object", "required": ["predictions"], "properties": {"predictions": {}}},
    error_schema={"type": "object", "required": ["error_code", "message"],
                  "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}}})


@hookimpl
def deploykit_register_formats(register: Callable[[Format | Protocol], None]) -> None:
    """Register MLflow's four request formats and its response protocol."""
    register(table_format("dataframe_split", _is_mlflow("dataframe_split"), _table_split,
                          lambda f: {"dataframe_split": {"columns": [str(c) for c in f.columns], "data": _rows(f)}},
                          "MLflow: {'dataframe_split': {'columns': [...], 'data': [[...]]}}"))
    register(table_format("dataframe_records", _is_mlflow("dataframe_records"), _table_df_records,
                          lambda f: {"dataframe_records": _records(f)}, "MLflow: {'dataframe_records': [{...}]}"))
    register(table_format("instances", _is_mlflow("instances"), _table_instances,
                          lambda f: {"instances": _records(f)}, "MLflow/TF-serving: {'instances': [{...}]}"))
    register(table_format("inputs", _is_mlflow("inputs"), _table_inputs, lambda f: {"inputs": _columns(f)},
                          "MLflow: {'inputs': {'col': [...]}} (columns) or {'inputs': [{...}]} (rows)"))
    register(PROTOCOL)
