"""Open Inference Protocol V2 (KServe, Triton, Seldon): tensor requests (JSON or the binary
tensor extension), the ``outputs`` response, model metadata and the error body.

Datatypes are defined once here (``DATATYPES``: V2 name -> numpy dtype); the local server's
V2 routes take every field name and datatype from this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from deploykit.errors import PayloadError
from deploykit.hookspecs import hookimpl
from deploykit.payload.jsontext import InexactNumber
from deploykit.payload.registry import Format, Protocol, simple_error, table_format
from deploykit.payload.table import _NONE, Table, _columns, _np, _rows, _short

if TYPE_CHECKING:
    import pandas as pd

    from deploykit.payload.predictions import Predictions

__all__ = ["BINARY_HEADER", "BINARY_MEDIA_TYPE", "DATATYPES", "EXTENSIONS", "PROBABILITIES", "binary_outputs",
           "decode_binary_request", "decode_v2_binary", "deploykit_register_formats", "encode_binary_response",
           "infer_response", "label_datatype", "model_index", "model_metadata", "request_problem",
           "requested_outputs"]

#: The V2 datatypes and the numpy dtype of each (little-endian on the wire).
DATATYPES = {"BOOL": "bool", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
             "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
             "FP16": "float16", "FP32": "float32", "FP64": "float64", "BYTES": "object"}
_V2_NUMPY = DATATYPES

#: The schema column types that have a V2 datatype of their own (every other one is BYTES).
_SCHEMA_DATATYPES = {"integer": "INT64", "float": "FP64", "boolean": "BOOL"}

#: The HTTP header of the binary tensor extension: the byte length of the JSON header.
BINARY_HEADER = "inference-header-content-length"

#: The Content-Type of a response that carries binary tensors after its JSON header.
BINARY_MEDIA_TYPE = "application/octet-stream"

#: BF16 has no numpy dtype and no JSON form: it is read from binary data only, as float32.
BF16 = "BF16"

#: The extensions this server implements, as ``GET /v2`` lists them (Triton's names).
EXTENSIONS = ["binary_tensor_data"]

_BINARY_HINT = "binary data (parameters.binary_data_size and the Inference-Header-Content-Length header)"


def _is_v2(obj: Any) -> bool:
    inputs = obj.get("inputs") if type(obj) is dict else None
    if not isinstance(inputs, list) or not inputs:
        return False
    first = inputs[0]
    params = first.get("parameters") if isinstance(first, dict) else None
    return isinstance(first, dict) and "name" in first and "datatype" in first and \
        ("data" in first or (isinstance(params, dict) and "binary_data_size" in params))


def _parameters(t: Mapping[str, Any], name: Any) -> dict[str, Any]:
    """A tensor's ``parameters`` object ({} when absent); PayloadError for any other JSON value."""
    params = t.get("parameters")
    if params is None:
        return {}
    if type(params) is not dict:
        raise PayloadError(f"V2 input {_short(name)}: 'parameters' must be an object such as "
                           f'{{"columns": ["a", "b"]}}, got {type(params).__name__}: {_short(params)}; '
                           "send an object or leave 'parameters' out")
    return params


#: Nesting deeper than this is no tensor a client means to send (and must not cost a deep recursion).
MAX_DATA_DEPTH = 32


def _flat(data: Any, name: Any = None) -> list[Any]:
    """Row-major values of a nested list (V2 allows nested or flat ``data``), without recursion:
    nesting deeper than ``MAX_DATA_DEPTH`` is a PayloadError."""
    if not isinstance(data, list):
        return [data]
    if not any(type(v) is list for v in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if type(v) is list:
                if len(stack) >= MAX_DATA_DEPTH:
                    raise PayloadError(f"V2 input {_short(name)}: 'data' is nested more than {MAX_DATA_DEPTH} "
                                       "lists deep; send the values flat (row-major) with their 'shape'")
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def _v2_values(t: Mapping[str, Any], i: int) -> tuple[Any, list[int], str]:
    """A tensor's flat values (a list, or a numpy array for binary data), shape and datatype."""
    name = t.get("name") if isinstance(t, dict) else None
    if not isinstance(t, dict) or not isinstance(name, str) or "datatype" not in t:
        raise PayloadError(f"V2 inputs[{i}] needs 'name', 'shape', 'datatype' and 'data', got {_short(t)}")
    dtype = str(t["datatype"]).upper()
    if dtype == BF16 and type(t.get("data")).__name__ != "ndarray":
        raise PayloadError(f"V2 input {name!r} is BF16 with JSON data, which has no BF16 form; send BF16 as "
                           f"{_BINARY_HINT}, or send the values as FP32")
    if dtype not in _V2_NUMPY and dtype != BF16:
        raise PayloadError(f"V2 input {name!r} has datatype {t['datatype']!r}; use one of "
                           f"{', '.join(_V2_NUMPY)}, or BF16 as binary data")
    _parameters(t, name)
    if "data" not in t:
        raise PayloadError(f"V2 input {name!r} has no 'data'; send the values, or binary data with "
                           "parameters.binary_data_size and the Inference-Header-Content-Length header")
    data = t["data"]
    if type(data) is dict:
        raise PayloadError(f"V2 input {name!r}: 'data' is an object ({_short(data)}); send a list of values")
    values = data if type(data).__name__ == "ndarray" else _flat(data, name)
    shape = t.get("shape")
    if shape is None:
        shape = [len(values)]
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise PayloadError(f"V2 input {name!r} has shape {_short(shape)}; send a list of non-negative sizes like [2, 1]")
    if math.prod(shape) != len(values):
        raise PayloadError(f"V2 input {name!r}: shape {shape} needs {math.prod(shape)} values, got {len(values)}")
    if type(values).__name__ != "ndarray":
        values = _v2_check(values, dtype, name)
    return values, shape, dtype


# An InexactNumber (``jsontext.exact_loads``) is a number: the integer-column check looks for it.
_V2_ALLOWED: dict[str, tuple[type, ...]] = {"BOOL": (bool,), "INT": (int,), "UINT": (int,),
                                            "FP": (int, float, InexactNumber), "BYTES": (str, bytes)}


def _v2_check(values: list[Any], dtype: str, name: str) -> list[Any]:
    """The JSON values of a tensor must be of its datatype (nulls pass to the schema check)."""
    family = "UINT" if dtype.startswith("UINT") else "INT" if dtype.startswith("INT") else \
        "FP" if dtype.startswith("FP") else dtype
    allowed = set(_V2_ALLOWED[family]) | {_NONE}
    if family == "BYTES":
        # Strings (or bytes) by the spec; other JSON scalars are let through to the schema check,
        # so one 2-D BYTES tensor can carry a table of mixed column types.
        return [_utf8(v, name, i) if type(v) is bytes else v for i, v in enumerate(values)] \
            if bytes in set(map(type, values)) else values
    if set(map(type, values)) <= allowed and \
            (family != "UINT" or all(v is None or v >= 0 for v in values)):
        return values
    for v in values:
        if family == "UINT" and type(v) is int and v < 0:
            raise PayloadError(f"V2 input {name!r} is {dtype} but holds {v}; send whole numbers >= 0, "
                               "or declare INT64")
        if type(v) not in allowed:
            hint = {"BOOL": "true or false", "INT": "whole numbers", "UINT": "whole numbers >= 0",
                    "FP": "numbers"}[family]
            raise PayloadError(f"V2 input {name!r} is {dtype} but holds {_short(v)} ({type(v).__name__}); "
                               f"send {hint}, or declare the datatype that matches the values")
    return values


def _utf8(raw: bytes, name: str, index: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"V2 input {name!r}: BYTES element {index} is not valid UTF-8 (byte "
                           f"0x{raw[exc.start]:02x} at offset {exc.start}: {exc.reason}); send UTF-8 text") from None


def _v2_typed(values: Any, dtype: str) -> Any:
    """Typed array of a tensor's values when they are complete; a list when nulls are present."""
    if type(values).__name__ == "ndarray" or dtype == "BYTES":
        return values
    np = _np()
    types = set(map(type, values))
    if _NONE in types or InexactNumber in types:
        return values
    if dtype.startswith("FP"):
        return np.array(values, dtype=np.float64)
    if dtype.startswith(("INT", "UINT")):
        try:
            return np.array(values, dtype=_V2_NUMPY[dtype])
        except OverflowError:
            return values
    return np.array(values, dtype=bool)


def _table_v2(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    """One tensor per column (shape [n] or [n, 1]), or one 2-D tensor [n, k] with column names."""
    tensors = obj["inputs"]
    if not isinstance(tensors, list) or not tensors:
        raise PayloadError("V2 'inputs' must be a non-empty list of tensors {name, shape, datatype, data}")
    parsed = [_v2_values(t, i) for i, t in enumerate(tensors)]
    if len(tensors) == 1:
        values, shape, dtype = parsed[0]
        t = tensors[0]
        names = _parameters(t, t["name"]).get("columns") or columns
        if names is not None and (type(names) is not list or not all(type(n) is str for n in names)):
            raise PayloadError(f"V2 input {t['name']!r}: parameters.columns must be a list of column names, "
                               f"got {_short(names)}")
        known = set(columns or [])
        if len(shape) == 2 and (shape[1] > 1 or (t["name"] not in known and names and len(names) == 1)):
            rows, width = shape
            if not names or len(names) != width:
                raise PayloadError(
                    f"V2 input {t['name']!r} is a {rows}x{width} tensor but the column names are unknown "
                    f"(got {_short(names)}); send one tensor per column named after it"
                )
            if type(values).__name__ == "ndarray":
                matrix = values.reshape(rows, width)
                split = {str(n): matrix[:, j] for j, n in enumerate(names)}
            else:
                split = {str(n): values[j::width] for j, n in enumerate(names)}
            return Table({k: _v2_typed(v, dtype) for k, v in split.items()}, rows)
    cols: dict[str, Any] = {}
    for (values, shape, dtype), t in zip(parsed, tensors):
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise PayloadError(f"V2 input {t['name']!r} has shape {shape}; a column tensor has shape [n] or [n, 1]")
        if t["name"] in cols:
            raise PayloadError(f"V2 input {t['name']!r} appears twice; send each column once")
        cols[t["name"]] = _v2_typed(values, dtype)
    lengths = {k: len(v) for k, v in cols.items()}
    if len(set(lengths.values())) > 1:
        raise PayloadError(f"V2 inputs have different lengths {lengths}; every column needs one value per row")
    return Table(cols, next(iter(lengths.values())))


def decode_v2_binary(body: bytes, header_length: int) -> Any:
    """Parse a V2 request that uses the binary tensor extension (what ``tritonclient`` sends by
    default): a JSON header of ``header_length`` bytes, then each input's raw bytes in order."""
    import orjson

    if not 0 < header_length <= len(body):
        raise PayloadError(f"Inference-Header-Content-Length is {header_length} but the body has {len(body)} bytes; "
                           "send the length of the JSON header")
    try:
        header = orjson.loads(body[:header_length])
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"the V2 JSON header is not valid JSON ({exc}); check Inference-Header-Content-Length") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise PayloadError("the V2 JSON header needs an 'inputs' list of tensors")
    np = _np()
    offset = header_length
    for i, t in enumerate(header["inputs"]):
        if not isinstance(t, dict):
            raise PayloadError(f"V2 inputs[{i}] needs 'name', 'shape', 'datatype' and 'data', got {_short(t)}")
        size = _parameters(t, t.get("name")).get("binary_data_size")
        if size is None:
            continue
        name, dtype = t.get("name"), str(t.get("datatype", "")).upper()
        if type(size) is not int or size < 0 or offset + size > len(body):
            raise PayloadError(f"V2 input {name!r}: binary_data_size {size!r} runs past the end of the body "
                               f"({len(body) - offset} bytes left)")
        raw = body[offset:offset + size]
        offset += size
        if dtype == "BYTES":
            t["data"] = _bytes_tensor(raw, name, offset - size)
        elif dtype == BF16:
            if size % 2:
                raise PayloadError(f"V2 input {name!r}: {size} bytes is not a whole number of BF16 values")
            # a BF16 value is the upper half of a float32
            t["data"] = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype in _V2_NUMPY:
            item = np.dtype(_V2_NUMPY[dtype]).newbyteorder("<")
            if size % item.itemsize:
                raise PayloadError(f"V2 input {name!r}: {size} bytes is not a whole number of {dtype} values")
            t["data"] = np.frombuffer(raw, dtype=item).astype(item.newbyteorder("="))
        else:
            raise PayloadError(f"V2 input {name!r} has datatype {t.get('datatype')!r}; use one of {', '.join(_V2_NUMPY)}")
    if offset != len(body):
        raise PayloadError(f"the V2 body has {len(body) - offset} bytes after the last binary input; "
                           "check each input's binary_data_size")
    return header


def _bytes_tensor(raw: bytes, name: Any, start: int = 0) -> list[str]:
    """The elements of a binary BYTES tensor (4-byte little-endian length, then the bytes), each
    decoded as UTF-8; invalid UTF-8 is a PayloadError naming the byte offset in the body
    (``start`` is where the tensor's data begins)."""
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise PayloadError(f"V2 input {name!r}: BYTES data ends inside a 4-byte length prefix")
        n = int.from_bytes(raw[pos:pos + 4], "little")
        pos += 4
        if pos + n > len(raw):
            raise PayloadError(f"V2 input {name!r}: a BYTES element of {n} bytes runs past its data")
        try:
            out.append(raw[pos:pos + n].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise PayloadError(f"V2 input {_short(name)}: BYTES element {len(out)} is not valid UTF-8 "
                               f"(byte 0x{raw[pos + exc.start]:02x} at body offset {start + pos + exc.start}: "
                               f"{exc.reason}); send UTF-8 text") from None
        pos += n
    return out


def decode_binary_request(body: bytes, header_length: bytes | str) -> Any:
    """A binary-extension request whose ``Inference-Header-Content-Length`` header is ``header_length``."""
    text = header_length.decode("latin-1") if isinstance(header_length, bytes) else header_length
    if not text.strip().isdigit():
        raise PayloadError(f"Inference-Header-Content-Length is {text!r}; send the byte length of the JSON header")
    return decode_v2_binary(body, int(text))


def request_problem(obj: Any) -> str | None:
    """Why ``obj`` is not a V2 inference request, or None."""
    if isinstance(obj, dict) and isinstance(obj.get("inputs"), list):
        return None
    return ("a V2 inference request is a JSON object with an 'inputs' list of tensors "
            '{"name", "shape", "datatype", "data"}')


#: The output holding class probabilities (``predict`` holds the labels).
PROBABILITIES = "predict_proba"


def output_names(has_proba: bool) -> set[str]:
    """The outputs a model has: ``predict``, and ``predict_proba`` when it gives probabilities."""
    return {"predict"} | ({PROBABILITIES} if has_proba else set())


def requested_outputs(obj: dict[str, Any], has_proba: bool) -> set[str] | None:
    """The output names a request asks for (None: every output); PayloadError for unknown ones."""
    outputs = obj.get("outputs")
    if outputs is None:
        return None
    known = output_names(has_proba)
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                for o in outputs):
        raise PayloadError("V2 'outputs' must be a list of {\"name\": ...}; "
                           f"this model has outputs {sorted(known)}")
    names = {o["name"] for o in outputs}
    unknown = sorted(names - known)
    if unknown:
        raise PayloadError(f"V2 output(s) {unknown} do not exist; this model has outputs {sorted(known)}")
    return names


def infer_response(preds: Predictions, request: dict[str, Any], requested: set[str] | None,
                   model_name: str, model_version: str) -> dict[str, Any]:
    """The answer to an inference ``request``: the model, the request's id and the ``requested`` outputs."""
    answer = encode_response(preds)
    if requested is not None:
        answer["outputs"] = [o for o in answer["outputs"] if o["name"] in requested]
    out: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if isinstance(request.get("id"), str):
        out["id"] = request["id"]
    out.update(answer)
    return out


def binary_outputs(request: dict[str, Any], names: Sequence[str]) -> set[str]:
    """Which of the answer's outputs ``names`` go as binary data: a requested output's own
    ``parameters.binary_data`` wins; else the request's ``parameters.binary_data_output``."""
    parameters = request.get("parameters")
    every = isinstance(parameters, dict) and parameters.get("binary_data_output") is True
    settings = {o["name"]: o["parameters"].get("binary_data") for o in request.get("outputs") or []
                if isinstance(o, dict) and isinstance(o.get("parameters"), dict)}
    return {n for n in names if settings.get(n) is True or (settings.get(n) is None and every)}


def _tensor_bytes(values: list[Any], datatype: str) -> bytes:
    """Row-major little-endian bytes of a tensor; BYTES as a 4-byte length and UTF-8 per element."""
    if datatype == "BYTES":
        parts = []
        for v in values:
            raw = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(len(raw).to_bytes(4, "little") + raw)
        return b"".join(parts)
    np = _np()
    packed: bytes = np.asarray(values, dtype=np.dtype(_V2_NUMPY[datatype]).newbyteorder("<")).tobytes()
    return packed


def encode_binary_response(answer: dict[str, Any], request: dict[str, Any]) -> tuple[bytes, int] | None:
    """``answer`` with the outputs ``request`` asks to get as binary data (``binary_outputs``)
    moved after the JSON header as raw bytes, each announced by ``parameters.binary_data_size``:
    (body, header length), or None when no output goes binary (the answer stays plain JSON)."""
    import orjson

    outputs = answer.get("outputs") or []
    binary = binary_outputs(request, [o["name"] for o in outputs])
    chosen = [o for o in outputs if o["name"] in binary]
    if not chosen:
        return None
    raws = []
    for out in chosen:
        raw = _tensor_bytes(_flat(out.pop("data")), out["datatype"])
        out["parameters"] = {**(out.get("parameters") or {}), "binary_data_size": len(raw)}
        raws.append(raw)
    header = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    return header + b"".join(raws), len(header)


def model_index(names: Sequence[str]) -> dict[str, Any]:
    """The repository index ``GET /v2/models`` answers (KServe's list of models)."""
    return {"models": list(names)}


def model_metadata(name: str, version: str, platform: str, columns: Sequence[tuple[str, str]],
                   classes: list[Any] | None, has_proba: bool) -> dict[str, Any]:
    """The model metadata document: one ``[-1, 1]`` input per ``(column, schema type)``, and the outputs."""
    label_type = label_datatype(classes) if classes else "FP64"
    return {
        "name": name, "versions": [version], "platform": platform,
        "inputs": [{"name": c, "datatype": _SCHEMA_DATATYPES.get(t, "BYTES"), "shape": [-1, 1]} for c, t in columns],
        "outputs": [{"name": "predict", "datatype": label_type, "shape": [-1]}]
        + ([{"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(classes)]}]
           if classes and has_proba else []),
    }


def _v2_type(series: Any) -> str:
    dtype = series.dtype
    kind = dtype.kind
    if kind == "b":
        return "BOOL"
    if kind == "i":
        return "INT64"
    if kind == "u":
        return "UINT64"
    if kind == "f":
        return "FP32" if getattr(dtype, "itemsize", 8) == 4 else "FP64"
    if kind == "O":
        types = set(map(type, series.dropna().tolist()))
        if types and types <= {bool}:
            return "BOOL"
        if types and types <= {int}:
            return "INT64"
        if types and types <= {int, float}:
            return "FP64"
    return "BYTES"


def _encode_v2(frame: pd.DataFrame) -> dict[str, Any]:
    cols = _columns(frame)
    return {"inputs": [
        {"name": name, "shape": [len(frame)], "datatype": _v2_type(frame.iloc[:, i]), "data": values}
        for i, (name, values) in enumerate(cols.items())
    ]}


def _encode_v2_matrix(frame: pd.DataFrame) -> dict[str, Any]:
    kinds = {_v2_type(frame.iloc[:, i]) for i in range(frame.shape[1])}
    dtype = kinds.pop() if len(kinds) == 1 else "FP64" if kinds <= {"INT64", "FP64", "FP32"} else "BYTES"
    rows = _rows(frame)
    return {"inputs": [{"name": "input-0", "shape": [len(frame), frame.shape[1]], "datatype": dtype,
                        "data": [v for row in rows for v in row],
                        "parameters": {"columns": [str(c) for c in frame.columns]}}]}


def label_datatype(labels: list[Any]) -> str:
    """The datatype of a label tensor holding ``labels``."""
    types = set(map(type, labels)) - {_NONE}
    if not types:
        return "BYTES"
    if types <= {bool}:
        return "BOOL"
    if types <= {int}:
        return "INT64"
    if types <= {int, float}:
        return "FP64"
    return "BYTES"


def encode_response(preds: Predictions) -> dict[str, Any]:
    """``{"outputs": [predict, predict_proba]}``; the classes ride in predict_proba's parameters."""
    n = len(preds.labels)
    outputs: list[dict[str, Any]] = [
        {"name": "predict", "shape": [n], "datatype": label_datatype(preds.labels), "data": preds.labels}]
    if preds.probabilities is not None:
        width = len(preds.probabilities[0]) if n else len(preds.classes or [])
        proba: dict[str, Any] = {"name": "predict_proba", "shape": [n, width], "datatype": "FP64",
                                 "data": [p for row in preds.probabilities for p in row]}
        if preds.classes is not None:
            proba["parameters"] = {"classes": preds.classes}
        outputs.append(proba)
    return {"outputs": outputs}


def decode_response(body: Any) -> Predictions | None:
    """An ``{"outputs": [...]}`` body; None for any other shape."""
    from deploykit.payload.predictions import Predictions

    if not (isinstance(body, dict) and isinstance(body.get("outputs"), list)):
        return None
    outs = {o.get("name"): o for o in body["outputs"]}
    first = body["outputs"][0]
    labels = _flat((outs.get("predict") or first)["data"])
    proba = outs.get("predict_proba")
    probabilities = classes = None
    if proba is not None:
        flat = _flat(proba["data"])
        width = proba["shape"][1] if len(proba.get("shape", [])) == 2 else 1
        probabilities = [flat[i * width:(i + 1) * width] for i in range(len(labels))]
        classes = (proba.get("parameters") or {}).get("classes")
    return Predictions(list(labels), probabilities, classes, raw=body)


def _request_schema(record: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    from deploykit.payload.registry import encode

    names = list(record.get("properties") or {})
    body = {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "inputs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "shape", "datatype", "data"],
            "properties": {"name": {"type": "string", "enum": names} if names else {"type": "string"},
                           "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                           "datatype": {"type": "string", "enum": [*DATATYPES, BF16]}, "data": {"type": "array"}}}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                               "properties": {"name": {"type": "string"}}}}}}
    example = encode(rows, "v2") if rows and rows[0] else {"inputs": []}
    return body, example


PROTOCOL = Protocol(
    "v2", encode_response, decode_response, simple_error, formats=("v2", "v2_matrix"),
    description="Open Inference Protocol V2 inference (JSON or binary tensors)",
    request_schema=_request_schema,
    response_schema={"type": "object", "required": ["model_name", "outputs"], "properties": {
        "model_name": {"type": "string"}, "outputs": {"type": "array"}}},
    error_schema={"type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string"}, "problems": {"type": "array"}}})


@hookimpl
def deploykit_register_formats(register: Callable[[Format | Protocol], None]) -> None:
    """Register the V2 request formats (one tensor per column; one 2-D tensor) and the V2 response."""
    register(table_format("v2", _is_v2, _table_v2, _encode_v2,
                          "Open Inference Protocol V2: {'inputs': [{name, shape, datatype, data}]}, "
                          "one tensor per column"))
    register(table_format("v2_matrix", lambda o: False, _table_v2, _encode_v2_matrix,
                          "Open Inference Protocol V2, one 2-D tensor [rows, columns] (decoded by 'v2')"))
    register(PROTOCOL)
