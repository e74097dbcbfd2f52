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

__all__ = ["PARAMS_ERROR_CODE", "REQUEST_FORMATS", "ModelFacts", "check_params", "content_type_problem",
           "deploykit_register_formats", "model_facts", "request_format"]

#: The request formats of MLflow's ``/invocations`` (CSV aside), one top-level key each.
REQUEST_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")

#: The request key beside the input that holds the inference params (``predict(params=...)``).
PARAMS_KEY = "params"

#: MLflow's error code for a param that does not fit the model's params schema.
PARAMS_ERROR_CODE = "INVALID_PARAMETER_VALUE"


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


def content_type_problem(content_type: str) -> str | None:
    """Why MLflow's scoring server refuses ``content_type`` with a 415, or None: a media-type
    parameter other than ``charset``, or a charset other than UTF-8 (the media type itself is
    checked where the body is read)."""
    _, *pairs = [part.strip() for part in content_type.split(";")]
    parameters = {key.strip().lower(): value.strip().strip('"') for key, _, value in
                  (pair.partition("=") for pair in pairs if pair)}
    unknown = sorted(set(parameters) - {"charset"})
    if unknown:
        return (f"Content-Type {content_type!r} has the parameter(s) {unknown}, which the MLflow scoring protocol "
                "does not know; send 'application/json', 'text/csv' or 'application/vnd.apache.parquet', with "
                "at most '; charset=utf-8'")
    charset = parameters.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        return (f"Content-Type {content_type!r} asks for charset {parameters['charset']!r}; the MLflow scoring "
                "protocol reads UTF-8 only: send the body as UTF-8 with '; charset=utf-8' or no charset")
    return None


class ModelFacts:
    """What an MLflow model directory tells its scoring server: the MLflow version that saved it
    (``/version``) and the signature's params schema (``[{"name", "type", "default", "shape"}]``,
    or None when the signature declares no params)."""

    def __init__(self, mlflow_version: str | None = None, params: list[dict[str, Any]] | None = None) -> None:
        self.mlflow_version = mlflow_version
        self.params = params


def model_facts(path: Any) -> ModelFacts:
    """Read the ``MLmodel`` file of the model directory ``path``; empty facts if there is none
    (a joblib or pickle file)."""
    import json
    from pathlib import Path

    mlmodel = Path(path) / "MLmodel"
    if not mlmodel.is_file():
        return ModelFacts()
    import yaml

    try:
        meta = yaml.safe_load(mlmodel.read_text()) or {}
        params = json.loads(((meta.get("signature") or {}).get("params")) or "null")
    except (OSError, ValueError, yaml.YAMLError, AttributeError) as exc:
        raise PayloadError(f"the MLmodel file {str(mlmodel)!r} cannot be read ({exc}); re-save the model") from None
    version = meta.get("mlflow_version") if isinstance(meta, dict) else None
    return ModelFacts(str(version) if version is not None else None, params if isinstance(params, list) else None)


_PARAM_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "string": ((str,), "a string"), "boolean": ((bool,), "true or false"),
    "integer": ((int,), "a whole number"), "long": ((int,), "a whole number"),
    "float": ((int, float), "a number"), "double": ((int, float), "a number"),
    "datetime": ((str,), "an ISO 8601 date-time string"), "binary": ((str, bytes), "a string")}


def _param_problem(name: str, value: Any, kind: str) -> str | None:
    allowed, what = _PARAM_TYPES.get(kind, ((object,), "any value"))
    if type(value) is bool and bool not in allowed or not isinstance(value, allowed):
        return f"expected {what} ({kind})"
    if kind == "integer" and isinstance(value, int) and not -2**31 <= value < 2**31:
        return f"expected a whole number within 32 bits ({kind})"
    if kind == "datetime" and isinstance(value, str):
        from datetime import datetime

        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return f"expected {what} such as '2023-07-01T00:00:00' ({kind})"
    return None


def check_params(params: Any, schema: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The request's ``params`` checked against the model's params ``schema``: the declared ones
    that were sent (None if none). A param the schema does not declare is ignored, as MLflow
    does; a wrong value is a PayloadError naming the param, the value and the expected type."""
    if params is None:
        return None
    if not isinstance(params, dict):
        raise PayloadError(f"'{PARAMS_KEY}' must be an object of name -> value, got {_short(params)}; "
                           'send e.g. {"dataframe_records": [...], "params": {"name": value}}')
    if not schema:
        return None
    declared = {str(spec.get("name")): spec for spec in schema if isinstance(spec, dict)}
    checked: dict[str, Any] = {}
    for name, value in params.items():
        spec = declared.get(name)
        if spec is None:
            continue
        kind, shape = str(spec.get("type")), spec.get("shape")
        values = value if shape is not None and isinstance(value, list) else [value]
        problem = "expected a list" if shape is not None and not isinstance(value, list) else \
            next((p for p in (_param_problem(name, v, kind) for v in values) if p), None)
        if problem is not None:
            default = spec.get("default")
            raise PayloadError(f"param {name!r} is {_short(value)}: {problem}{' list' if shape is not None else ''}, "
                               f"as the model's params schema declares; send e.g. {_short(default)} or leave "
                               f"{name!r} out to use its default")
        checked[name] = value
    return checked or None


def encode_response(preds: Predictions) -> dict[str, Any]:
    """``{"predictions": [label, ...]}``."""
    return {"predictions": preds.labels}


def decode_response(body: Any) -> Predictions | None:
    """A model that answered with a table: ``{"predictions": [{col: v}]}`` or ``{"predictions": {col: [...]}}``.
    A ``prediction`` column with ``probability_<class>`` columns (what deploykit's MLflow models of
    classifiers answer, named as in CSV responses) gives labels and probabilities. A plain
    ``{"predictions": [...]}`` list is read by the deploykit protocol."""
    from deploykit.payload.csv import _csv_scalar
    from deploykit.payload.predictions import Predictions

    preds = body.get("predictions") if isinstance(body, dict) else None
    if isinstance(preds, list) and preds and isinstance(preds[0], dict):
        key = "prediction" if "prediction" in preds[0] else next(iter(preds[0]))
        labels = [p.get(key) for p in preds]
        proba = [k for k in preds[0] if isinstance(k, str) and k.startswith("probability_")] if key == "prediction" else []
        if proba and all(isinstance(p, dict) and all(isinstance(p.get(k), (int, float)) for k in proba) for p in preds):
            return Predictions(labels, [[float(p[k]) for k in proba] for p in preds],
                               [_csv_scalar(k[len("probability_"):]) for k in proba], raw=body)
        return Predictions(labels, raw=body)
    if isinstance(preds, dict):
        key = "prediction" if "prediction" in preds else next(iter(preds))
        return Predictions(list(preds[key]), raw=body)
    return None


_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 404: "RESOURCE_DOES_NOT_EXIST",
          413: "BAD_REQUEST", 415: "BAD_REQUEST", 422: "INVALID_PARAMETER_VALUE", 500: "INTERNAL_ERROR"}


def error_body(status: int, message: str, problems: list[dict[str, Any]], code: str | None) -> Any:
    """``{"error_code": "BAD_REQUEST", "message": ..., "problems": [...]}`` as MLflow answers."""
    out: dict[str, Any] = {"error_code": code or _CODES.get(status, "BAD_REQUEST"), "message": message}
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
