"""Payload codecs: every wire format deploykit knows, to and from one table, plus Predictions.

Request formats (``FORMATS``): ``records`` (one object or a list of objects), MLflow's
``dataframe_split`` / ``dataframe_records`` / ``instances`` / ``inputs``, Watson's
``input_data``, Open Inference Protocol V2 (``v2``) and ``csv``. ``decode`` detects the
format of a payload and returns a pandas DataFrame without casting any value; the schema
check (``Schema.validate``) decides what is acceptable. pandas is imported on first use.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deploykit.errors import PayloadError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FORMATS", "Format", "Predictions", "decode", "detect_format", "encode", "jsonable"]

_KNOWN_KEYS = "dataframe_split, dataframe_records, instances, inputs, input_data (Watson), a V2 'inputs' tensor list, or records"


def jsonable(value: Any) -> Any:
    """Return ``value`` with numpy scalars and arrays as Python values, NaN as None, dates ISO 8601."""
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if isinstance(value, float):  # also numpy.float64, a float subclass
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, pandas Series
    if tolist is not None:
        return jsonable(tolist())
    isoformat = getattr(value, "isoformat", None)  # pandas Timestamp
    if isoformat is not None:
        if str(value) == "NaT":
            return None
        return isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@dataclass
class Format:
    """One wire format: a name, a test that recognises a parsed payload, a decoder and an encoder."""

    name: str
    detect: Callable[[Any], bool]
    decode: Callable[[Any, Sequence[str] | None], pd.DataFrame]
    encode: Callable[[pd.DataFrame], Any]
    description: str = ""


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> None:
    """Add a format (the ``deploykit_register_formats`` hook calls this for plugins)."""
    FORMATS[fmt.name] = fmt


# -- decoders ------------------------------------------------------------------------------

def _pd() -> Any:
    import pandas as pd

    return pd


def _from_rows(rows: Any, columns: Sequence[str] | None, what: str) -> pd.DataFrame:
    """Rows are a list of objects (records) or a list of lists (positional, needs columns)."""
    pd = _pd()
    if not isinstance(rows, list):
        raise PayloadError(f"{what} must be a list of rows, got {type(rows).__name__}: {_short(rows)}")
    if not rows:
        return pd.DataFrame(columns=list(columns or []))
    first = rows[0]
    if isinstance(first, dict):
        names: dict[str, None] = {}
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise PayloadError(f"{what}[{i}] is {_short(row)}; every row must be an object like row 0")
            for key in row:
                names.setdefault(key, None)
        # Column-wise construction is several times faster than DataFrame(list_of_dicts).
        # A key absent from a row becomes None, which the schema check reports as a null.
        return pd.DataFrame({k: [r.get(k) for r in rows] for k in names})
    if isinstance(first, list):
        if not columns:
            raise PayloadError(
                f"{what} holds rows as lists but no column names were given; "
                "send objects (records) or name the columns (dataframe_split 'columns')"
            )
        width = len(columns)
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != width:
                raise PayloadError(
                    f"{what}[{i}] has {len(row) if isinstance(row, list) else _short(row)} values; "
                    f"expected {width} (columns {list(columns)})"
                )
        return pd.DataFrame.from_records(rows, columns=list(columns))
    raise PayloadError(f"{what} must hold objects or lists, got {type(first).__name__}: {_short(first)}")


def _from_columns(cols: Mapping[str, Any], what: str) -> pd.DataFrame:
    lengths = {k: len(v) if isinstance(v, list) else None for k, v in cols.items()}
    if any(n is None for n in lengths.values()):
        # a dict of scalars is one record
        return _pd().DataFrame({k: [v] for k, v in cols.items()})
    if len(set(lengths.values())) > 1:
        raise PayloadError(f"{what}: columns have different lengths {lengths}; every column needs one value per row")
    return _pd().DataFrame(dict(cols))


def _decode_records(obj: Any, columns: Sequence[str] | None) -> pd.DataFrame:
    if isinstance(obj, dict):
        return _from_columns(obj, "record")
    return _from_rows(obj, columns, "records")


def _decode_split(obj: Any, columns: Sequence[str] | None) -> pd.DataFrame:
    split = obj["dataframe_split"]
    if not isinstance(split, dict) or "data" not in split:
        raise PayloadError(
            f"dataframe_split must be an object with 'columns' and 'data', got {_short(split)}"
        )
    cols = split.get("columns") or columns
    frame = _from_rows(split["data"], cols, "dataframe_split.data")
    if "index" in split and len(split["index"]) == len(frame):
        frame.index = split["index"]
    return frame


def _decode_df_records(obj: Any, columns: Sequence[str] | None) -> pd.DataFrame:
    return _from_rows(obj["dataframe_records"], columns, "dataframe_records")


def _decode_instances(obj: Any, columns: Sequence[str] | None) -> pd.DataFrame:
    inst = obj["instances"]
    if isinstance(inst, dict):
        return _from_columns(inst, "instances")
    return _from_rows(inst, columns, "instances")


def _is_v2(obj: Any) -> bool:
    inputs = obj.get("inputs") if isinstance(obj, dict) else None
    return (isinstance(inputs, list) and bool(inputs) and isinstance(inputs[0], dict)
            and "datatype" in inputs[0] and "data" in inputs[0])


def _decode_inputs(obj: Any, columns: Sequence[str] | None) -> pd.DataFrame:
    inputs = obj["inputs"]
    if isinstance(inputs, dict):
        return _from_columns(inputs, "inputs")
    return _from_rows(inputs, columns, "inputs")


def _decode_watson(obj: Any, columns: Sequence[str] | None) -> pd.DataFrame:
    data = obj["input_data"]
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise PayloadError(
            f"input_data must be a list like [{{\"fields\": [...], \"values\": [[...]]}}], got {_short(data)}"
        )
    frames = []
    for i, part in enumerate(data):
        if "values" not in part:
            raise PayloadError(f"input_data[{i}] has no 'values'; add the rows as a list of lists")
        frames.append(_from_rows(part["values"], part.get("fields") or columns, f"input_data[{i}].values"))
    return frames[0] if len(frames) == 1 else _pd().concat(frames, ignore_index=True)


_V2_NUMPY = {"BOOL": "bool", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
             "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
             "FP16": "float16", "FP32": "float32", "FP64": "float64", "BYTES": "object"}


def _flat(data: Any) -> list[Any]:
    if data and isinstance(data[0], list):
        return [v for row in data for v in (_flat(row) if row and isinstance(row[0], list) else row)]
    return list(data)


def _decode_v2(obj: Any, columns: Sequence[str] | None) -> pd.DataFrame:
    """One tensor per column (shape [n] or [n,1]), or one 2-D tensor [n, k] with column names."""
    pd = _pd()
    tensors = obj["inputs"]
    if len(tensors) == 1 and len(tensors[0].get("shape", [])) == 2 and tensors[0]["shape"][1] > 1:
        t = tensors[0]
        rows, width = t["shape"]
        values = _flat(t["data"])
        if len(values) != rows * width:
            raise PayloadError(f"V2 input {t.get('name')!r}: shape {t['shape']} needs {rows * width} values, got {len(values)}")
        names = (t.get("parameters") or {}).get("columns") or columns
        if not names or len(names) != width:
            raise PayloadError(
                f"V2 input {t.get('name')!r} is a {rows}x{width} tensor but the column names are unknown; "
                "send one tensor per column named after it"
            )
        return pd.DataFrame([values[i * width:(i + 1) * width] for i in range(rows)], columns=list(names))
    cols: dict[str, list[Any]] = {}
    for i, t in enumerate(tensors):
        if not isinstance(t, dict) or "name" not in t or "data" not in t:
            raise PayloadError(f"V2 inputs[{i}] needs 'name', 'shape', 'datatype' and 'data', got {_short(t)}")
        dtype = str(t.get("datatype", "")).upper()
        if dtype not in _V2_NUMPY:
            raise PayloadError(f"V2 input {t['name']!r} has datatype {t.get('datatype')!r}; use one of {sorted(_V2_NUMPY)}")
        values = _flat(t["data"]) if isinstance(t["data"], list) else [t["data"]]
        shape = t.get("shape") or [len(values)]
        if math.prod(shape) != len(values):
            raise PayloadError(f"V2 input {t['name']!r}: shape {shape} needs {math.prod(shape)} values, got {len(values)}")
        if dtype == "BYTES":
            values = [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]
        cols[t["name"]] = values
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise PayloadError(f"V2 inputs have different lengths { {k: len(v) for k, v in cols.items()} }")
    return pd.DataFrame(cols)


def _decode_csv(obj: Any, columns: Sequence[str] | None) -> pd.DataFrame:
    import io

    text = obj.decode("utf-8") if isinstance(obj, bytes) else obj
    try:
        return _pd().read_csv(io.StringIO(text))
    except Exception as exc:  # pandas raises several parser error types
        raise PayloadError(f"CSV payload could not be parsed ({exc}); send a header line and comma-separated rows") from None


# -- encoders ------------------------------------------------------------------------------

def _rows(frame: pd.DataFrame) -> list[list[Any]]:
    return jsonable(frame.to_numpy(dtype=object).tolist())  # type: ignore[no-any-return]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    names = [str(c) for c in frame.columns]
    return [dict(zip(names, row)) for row in _rows(frame)]


def _v2_type(series: Any) -> str:
    kind = series.dtype.kind
    return {"b": "BOOL", "i": "INT64", "u": "UINT64", "f": "FP64"}.get(kind, "BYTES")


def _encode_v2(frame: pd.DataFrame) -> dict[str, Any]:
    return {"inputs": [
        {"name": str(c), "shape": [len(frame)], "datatype": _v2_type(frame[c]), "data": jsonable(frame[c].tolist())}
        for c in frame.columns
    ]}


for _fmt in (
    Format("dataframe_split", lambda o: isinstance(o, dict) and "dataframe_split" in o, _decode_split,
           lambda f: {"dataframe_split": {"columns": [str(c) for c in f.columns], "data": _rows(f)}},
           "MLflow: {'dataframe_split': {'columns': [...], 'data': [[...]]}}"),
    Format("dataframe_records", lambda o: isinstance(o, dict) and "dataframe_records" in o, _decode_df_records,
           lambda f: {"dataframe_records": _records(f)}, "MLflow: {'dataframe_records': [{...}]}"),
    Format("instances", lambda o: isinstance(o, dict) and "instances" in o, _decode_instances,
           lambda f: {"instances": _records(f)}, "MLflow/TF-serving: {'instances': [{...}]}"),
    Format("v2", _is_v2, _decode_v2, _encode_v2, "Open Inference Protocol V2: {'inputs': [{name, shape, datatype, data}]}"),
    Format("inputs", lambda o: isinstance(o, dict) and "inputs" in o, _decode_inputs,
           lambda f: {"inputs": {str(c): jsonable(f[c].tolist()) for c in f.columns}},
           "MLflow: {'inputs': {'col': [...]}} or {'inputs': [{...}]}"),
    Format("input_data", lambda o: isinstance(o, dict) and "input_data" in o, _decode_watson,
           lambda f: {"input_data": [{"fields": [str(c) for c in f.columns], "values": _rows(f)}]},
           "Watson ML: {'input_data': [{'fields': [...], 'values': [[...]]}]}"),
    Format("records", lambda o: isinstance(o, list) or (isinstance(o, dict) and _scalar_record(o)),
           _decode_records, _records, "one object, or a list of objects, one per row"),
    Format("csv", lambda o: isinstance(o, (str, bytes)), _decode_csv,
           lambda f: f.to_csv(index=False), "CSV with a header line"),
):
    register(_fmt)


def _scalar_record(obj: dict[str, Any]) -> bool:
    return bool(obj) and all(not isinstance(v, (dict, list)) for v in obj.values())


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def detect_format(obj: Any) -> str:
    """Name the format of a parsed payload, or raise PayloadError naming what was seen."""
    for fmt in FORMATS.values():
        if fmt.detect(obj):
            return fmt.name
    if isinstance(obj, dict):
        raise PayloadError(
            f"payload has top-level keys {sorted(obj)[:10]}, which no known format uses; send one of {_KNOWN_KEYS}"
        )
    raise PayloadError(f"payload is a {type(obj).__name__} ({_short(obj)}); send a JSON object or list: {_KNOWN_KEYS}")


def decode(obj: Any, columns: Sequence[str] | None = None, fmt: str | None = None) -> pd.DataFrame:
    """Turn any supported payload into a DataFrame (no casts).

    ``obj`` may be a DataFrame, a numpy array (with ``columns``), a parsed JSON payload of
    any known format, or CSV text. ``columns`` names positional values when the payload
    does not. ``fmt`` skips detection.
    """
    pd = _pd()
    if isinstance(obj, pd.DataFrame):
        return obj
    if type(obj).__module__ == "numpy" and hasattr(obj, "ndim"):
        if obj.ndim == 1:
            obj = obj.reshape(1, -1)
        if not columns or len(columns) != obj.shape[1]:
            raise PayloadError(f"a numpy array of shape {obj.shape} needs {obj.shape[1]} column names, got {columns!r}")
        return pd.DataFrame(obj, columns=list(columns))
    name = fmt or detect_format(obj)
    if name not in FORMATS:
        raise PayloadError(f"unknown payload format {name!r}; known formats: {', '.join(FORMATS)}")
    return FORMATS[name].decode(obj, columns)


def encode(frame: Any, fmt: str = "records", columns: Sequence[str] | None = None) -> Any:
    """Encode a table (or any payload ``decode`` accepts) into the wire format ``fmt``."""
    if fmt not in FORMATS:
        raise PayloadError(f"unknown payload format {fmt!r}; known formats: {', '.join(FORMATS)}")
    return FORMATS[fmt].encode(decode(frame, columns))


# -- predictions ---------------------------------------------------------------------------

@dataclass
class Predictions:
    """What a model answered: one label per row, class probabilities if it gives them, the raw body.

    Everything is plain JSON-safe Python (no numpy scalars, NaN as None).
    """

    labels: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None
    raw: Any = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.labels)

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per row: ``{"prediction": label, "probabilities": {class: p}}``."""
        out = []
        for i, label in enumerate(self.labels):
            row: dict[str, Any] = {"prediction": label}
            if self.probabilities is not None:
                names = self.classes or list(range(len(self.probabilities[i])))
                row["probabilities"] = dict(zip(map(str, names), self.probabilities[i]))
            out.append(row)
        return out

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame with a ``prediction`` column and one ``probability_<class>`` column per class."""
        pd = _pd()
        frame = pd.DataFrame({"prediction": self.labels})
        if self.probabilities is not None:
            names = self.classes or list(range(len(self.probabilities[0]) if self.probabilities else 0))
            for j, name in enumerate(names):
                frame[f"probability_{name}"] = [p[j] for p in self.probabilities]
        return frame

    def to_dict(self) -> dict[str, Any]:
        """deploykit's own response shape: ``{"predictions": [...], "probabilities": [[...]], "classes": [...]}``."""
        out: dict[str, Any] = {"predictions": self.labels}
        if self.probabilities is not None:
            out["probabilities"] = self.probabilities
            out["classes"] = self.classes
        return out

    @classmethod
    def from_model(cls, labels: Any, probabilities: Any = None, classes: Any = None) -> Predictions:
        """Build from numpy outputs of ``predict`` / ``predict_proba`` / ``classes_``."""
        return cls(
            jsonable(labels.tolist() if hasattr(labels, "tolist") else list(labels)),
            None if probabilities is None else jsonable(probabilities.tolist()),
            None if classes is None else jsonable(list(classes)),
        )

    def encode(self, protocol: str = "deploykit") -> Any:
        """The response body of a protocol: ``deploykit``, ``mlflow``, ``watson`` or ``v2``."""
        if protocol == "deploykit":
            return self.to_dict()
        if protocol == "mlflow":
            return {"predictions": self.labels}
        if protocol == "watson":
            if self.probabilities is None:
                return {"predictions": [{"fields": ["prediction"], "values": [[v] for v in self.labels]}]}
            return {"predictions": [{"fields": ["prediction", "probability"],
                                     "values": [[v, p] for v, p in zip(self.labels, self.probabilities)]}]}
        if protocol == "v2":
            n = len(self.labels)
            first = next((v for v in self.labels if v is not None), None)
            kind = "BYTES" if isinstance(first, str) else "BOOL" if isinstance(first, bool) else \
                "INT64" if isinstance(first, int) else "FP64"
            outputs = [{"name": "predict", "shape": [n], "datatype": kind, "data": self.labels}]
            if self.probabilities is not None:
                width = len(self.probabilities[0]) if n else 0
                outputs.append({"name": "predict_proba", "shape": [n, width], "datatype": "FP64",
                                "data": [p for row in self.probabilities for p in row],
                                "parameters": {"classes": self.classes}})
            return {"outputs": outputs}
        raise PayloadError(f"unknown response protocol {protocol!r}; use deploykit, mlflow, watson or v2")

    @classmethod
    def decode(cls, body: Any) -> Predictions:
        """Read any protocol's response body (deploykit, MLflow, Watson, V2) into Predictions."""
        if isinstance(body, dict) and "outputs" in body:  # V2
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
            return cls(labels, probabilities, classes, raw=body)
        if isinstance(body, dict) and isinstance(body.get("predictions"), list):
            preds = body["predictions"]
            if preds and isinstance(preds[0], dict) and "values" in preds[0]:  # Watson
                fields = preds[0].get("fields") or []
                values = preds[0]["values"]
                if "prediction" in fields:
                    li = fields.index("prediction")
                    labels = [row[li] for row in values]
                else:
                    labels = [row[0] for row in values]
                probabilities = None
                if "probability" in fields:
                    pi = fields.index("probability")
                    probabilities = [row[pi] for row in values]
                return cls(labels, probabilities, body.get("classes"), raw=body)
            if preds and isinstance(preds[0], dict):  # records of outputs
                key = "prediction" if "prediction" in preds[0] else next(iter(preds[0]))
                return cls([p.get(key) for p in preds], raw=body)
            return cls(list(preds), body.get("probabilities"), body.get("classes"), raw=body)
        if isinstance(body, list):
            return cls(list(body), raw=body)
        raise PayloadError(f"cannot read predictions from a response of shape {_short(body)}")
