"""The format registry: every request format and response protocol, detected, decoded and encoded by name.

A :class:`Format` is one request shape (``dataframe_split``, ``input_data``, ``v2``...); a
:class:`Protocol` is one response shape and error body (``mlflow``, ``watson``, ``v2``...),
naming the request formats its routes accept. Both are added with :func:`register`. The
built-in protocol modules (``BUILTIN_PROTOCOLS``) register through the same
``deploykit_register_formats(register)`` hook implementation a plugin writes; plugins' are
added by ``deploykit.plugins.load_formats``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deploykit.errors import PayloadError
from deploykit.payload.table import Table, _pd, _short

if TYPE_CHECKING:
    import pandas as pd

    from deploykit.payload.predictions import Predictions

__all__ = ["BUILTIN_PROTOCOLS", "FORMATS", "PROTOCOLS", "Format", "Protocol", "decode", "decode_response",
           "decode_table", "detect_format", "encode", "encode_response", "protocol", "register"]

#: The built-in protocol modules, in detection order: V2 before MLflow's ``inputs`` request, Watson's
#: ``predictions`` blocks before MLflow's ``predictions`` objects.
BUILTIN_PROTOCOLS = ("deploykit.payload.v2", "deploykit.payload.watson", "deploykit.payload.mlflow",
                     "deploykit.payload.records", "deploykit.payload.csv", "deploykit.payload.parquet")


@dataclass
class Format:
    """One wire format: a name, a test that recognises a parsed payload, a decoder and an encoder.

    ``decode(obj, columns) -> DataFrame`` and ``encode(frame) -> payload`` are what a plugin
    provides; built-in formats also give ``decode_table`` (a faster path to a :class:`Table`).
    ``media_type`` is what ``encode`` produces (``text/csv`` for CSV).
    """

    name: str
    detect: Callable[[Any], bool]
    decode: Callable[[Any, Sequence[str] | None], pd.DataFrame]
    encode: Callable[[pd.DataFrame], Any]
    description: str = ""
    decode_table: Callable[..., Table] | None = None
    media_type: str = "application/json"


#: An error body writer: ``(status, message, problems, code) -> body``.
ErrorBody = Callable[[int, str, "list[dict[str, Any]]", "str | None"], Any]


@dataclass
class Protocol:
    """One response protocol: how predictions are written as (and read from) a response body,
    and the shape of its error body.

    ``encode(predictions) -> body`` writes a response; ``decode(body) -> Predictions | None``
    reads one back, answering None for a body that is not this protocol's shape (so the next
    protocol is tried). ``error(status, message, problems, code) -> body`` writes an error
    (default: ``{"error": message, "problems": [...]}``). ``formats`` names the request formats
    the protocol's routes accept; ``encode`` accepts those names as aliases of the protocol.
    ``request_schema(record, rows) -> (JSON Schema, example)``, ``response_schema`` and
    ``error_schema`` describe it in an OpenAPI document.
    """

    name: str
    encode: Callable[[Predictions], Any]
    decode: Callable[[Any], Predictions | None] | None = None
    error: ErrorBody | None = None
    formats: tuple[str, ...] = ()
    description: str = ""
    media_type: str = "application/json"
    request_schema: Callable[[dict[str, Any], list[dict[str, Any]]], tuple[dict[str, Any], Any]] | None = None
    response_schema: dict[str, Any] = field(default_factory=dict)
    error_schema: dict[str, Any] = field(default_factory=dict)

    def error_body(self, status: int, message: str, problems: Sequence[Mapping[str, Any]] | None = None,
                   code: str | None = None) -> Any:
        """The protocol's error body for a ``status`` answer (``problems``: ``deploykit.errors.Problem``
        dicts, at most a few dozen)."""
        listed = [dict(p) for p in problems or ()]
        if self.error is not None:
            return self.error(status, message, listed, code)
        return simple_error(status, message, listed, code)


def simple_error(status: int, message: str, problems: list[dict[str, Any]], code: str | None) -> Any:
    """deploykit's own error body: ``{"error": message, "problems": [...]}`` (problems when any)."""
    out: dict[str, Any] = {"error": message}
    if problems:
        out["problems"] = problems
    return out


FORMATS: dict[str, Format] = {}
PROTOCOLS: dict[str, Protocol] = {}

# Shapes so general that every other format (or protocol) is tried before them.
_FALLBACKS = ("records", "csv")
_RESPONSE_FALLBACKS = ("deploykit", "records")


def register(item: Format | Protocol) -> None:
    """Add (or replace) a request format or a response protocol; the ``deploykit_register_formats``
    hook is called with this function."""
    if isinstance(item, Format):
        FORMATS[item.name] = item
    elif isinstance(item, Protocol):
        PROTOCOLS[item.name] = item
    else:
        raise TypeError(f"register() takes a deploykit.payload.Format, got {type(item).__name__}: {_short(item)}; "
                        "pass a Format (a request codec) or a Protocol (a response codec and error body)")


def load_builtins() -> None:
    """Register the built-in protocol modules through their ``deploykit_register_formats`` hooks."""
    for module in BUILTIN_PROTOCOLS:
        importlib.import_module(module).deploykit_register_formats(register=register)


def _detect_order() -> list[Format]:
    return [f for f in FORMATS.values() if f.name not in _FALLBACKS] + \
        [FORMATS[n] for n in _FALLBACKS if n in FORMATS]


def protocol(name: str) -> Protocol:
    """The response protocol ``name``, or the protocol whose routes accept the request format ``name``."""
    found = PROTOCOLS.get(name)
    if found is None:
        found = next((p for p in PROTOCOLS.values() if name in p.formats), None)
    if found is None:
        raise PayloadError(f"unknown response protocol {name!r}; use one of {', '.join(PROTOCOLS)}")
    return found


def encode_response(predictions: Predictions, name: str) -> Any:
    """The response body of protocol ``name`` (or of the protocol of request format ``name``)."""
    return protocol(name).encode(predictions)


def decode_response(body: Any) -> Predictions:
    """Read a response body of any registered protocol (the first that recognises it)."""
    order = [p for p in PROTOCOLS.values() if p.name not in _RESPONSE_FALLBACKS] + \
        [PROTOCOLS[n] for n in _RESPONSE_FALLBACKS if n in PROTOCOLS]
    for proto in order:
        if proto.decode is not None:
            found = proto.decode(body)
            if found is not None:
                return found
    raise PayloadError(f"cannot read predictions from a response of shape {_short(body)}; "
                       "expected a deploykit, MLflow, Watson, V2 or CSV response body")


def table_format(name: str, detect: Callable[[Any], bool], table: Callable[..., Table],
                 encoder: Callable[[pd.DataFrame], Any], description: str,
                 media_type: str = "application/json") -> Format:
    """A built-in style Format: decoded straight to a :class:`Table` (the DataFrame decoder follows)."""
    return Format(name, detect, _frame_decoder(table), encoder, description, table, media_type)


_KNOWN = "records, dataframe_split, dataframe_records, instances, inputs (MLflow), input_data (Watson), " \
         "a V2 'inputs' tensor list, or CSV"


def detect_format(obj: Any) -> str:
    """Name the format of a parsed payload, or raise PayloadError naming what was seen."""
    for fmt in _detect_order():
        try:
            if fmt.detect(obj):
                return fmt.name
        except Exception:  # a plugin's detect() must not break detection of the others
            continue
    if isinstance(obj, dict):
        raise PayloadError(
            f"payload has top-level keys {sorted(map(str, obj))[:10]}, which no known format uses; send {_KNOWN}"
        )
    raise PayloadError(f"payload is a {type(obj).__name__} ({_short(obj)}); send a JSON object or list: {_KNOWN}")


def _is_array(obj: Any) -> bool:
    return type(obj).__module__ == "numpy" and hasattr(obj, "ndim")


def decode_table(obj: Any, columns: Sequence[str] | None = None, fmt: str | None = None, *,
                 types: Mapping[str, str] | None = None) -> Table:
    """Turn any supported payload into a :class:`Table` without casting a value.

    ``obj`` may be a DataFrame, a numpy array (with ``columns``), a parsed JSON payload of any
    known format, or CSV text. ``columns`` names positional values when the payload does not;
    ``types`` (column -> schema type) lets CSV keep string columns as text; ``fmt`` skips detection.
    """
    pd = _pd() if type(obj).__module__.startswith("pandas") else None
    if pd is not None and isinstance(obj, pd.DataFrame):
        return Table.from_frame(obj)
    if _is_array(obj):
        return _array_table(obj, columns)
    name = fmt or detect_format(obj)
    format_ = FORMATS.get(name)
    if format_ is None:
        raise PayloadError(f"unknown payload format {name!r}; known formats: {', '.join(FORMATS)}")
    if format_.decode_table is not None:
        return format_.decode_table(obj, columns, types)
    try:
        frame = format_.decode(obj, columns)
    except PayloadError:
        raise
    except Exception as exc:  # a plugin decoder: name it in the message
        raise PayloadError(f"format {name!r} could not decode the payload ({type(exc).__name__}: {exc})") from None
    return Table.from_frame(frame)


def _array_table(arr: Any, columns: Sequence[str] | None) -> Table:
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise PayloadError(f"a numpy array of shape {arr.shape} is not a table; pass a 2-D array (rows x columns)")
    if not columns or len(columns) != arr.shape[1]:
        raise PayloadError(f"a numpy array of shape {arr.shape} needs {arr.shape[1]} column names, got {columns!r}")
    return Table({str(c): arr[:, j] for j, c in enumerate(columns)}, arr.shape[0])


def decode(obj: Any, columns: Sequence[str] | None = None, fmt: str | None = None, *,
           types: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Turn any supported payload into a DataFrame (no casts; see ``Table.to_frame`` for dtypes).

    ``obj`` may be a DataFrame (returned as is), a numpy array (with ``columns``), a parsed JSON
    payload of any known format, or CSV text. ``columns`` names positional values when the
    payload does not. ``fmt`` skips detection.
    """
    pd = _pd()
    if isinstance(obj, pd.DataFrame):
        return obj
    name = fmt or (None if _is_array(obj) else detect_format(obj))
    if name is not None and name in FORMATS and FORMATS[name].decode_table is None:
        return FORMATS[name].decode(obj, columns)  # a plugin's own DataFrame decoder
    return decode_table(obj, columns, name, types=types).to_frame()


def encode(frame: Any, fmt: str = "records", columns: Sequence[str] | None = None) -> Any:
    """Encode a table (or any payload ``decode`` accepts) into the wire format ``fmt``."""
    if fmt not in FORMATS:
        raise PayloadError(f"unknown payload format {fmt!r}; known formats: {', '.join(FORMATS)}")
    return FORMATS[fmt].encode(decode(frame, columns))


def _frame_decoder(table_decoder: Callable[..., Table]) -> Callable[[Any, Sequence[str] | None], pd.DataFrame]:
    def decode_frame(obj: Any, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return table_decoder(obj, columns).to_frame()
    return decode_frame
