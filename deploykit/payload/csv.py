"""CSV: a header line and rows in, ``prediction`` and ``probability_<class>`` columns out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from deploykit.errors import PayloadError
from deploykit.hookspecs import hookimpl
from deploykit.payload.registry import Format, Protocol, simple_error, table_format
from deploykit.payload.table import Table, _iso, _pd, _short

if TYPE_CHECKING:
    import pandas as pd

    from deploykit.payload.predictions import Predictions

__all__ = ["deploykit_register_formats", "missing_header_hint"]

#: Content types read as CSV.
MEDIA_TYPES = ("text/csv", "application/csv")


def _table_csv(obj: Any, columns: Sequence[str] | None, types: Mapping[str, str] | None = None) -> Table:
    """CSV with a header line. An empty field is null (CSV cannot tell it from an empty string);
    with ``types``, a string column keeps text such as "NA" or "123" as it is."""
    import csv
    import io
    import warnings

    if not isinstance(obj, (str, bytes, bytearray)):
        raise PayloadError(f"a CSV payload must be text, got {type(obj).__name__}: {_short(obj)}")
    pd = _pd()
    text = obj.decode("utf-8", "replace") if isinstance(obj, (bytes, bytearray)) else obj
    if not text.strip("\r\n"):  # a header of blank-looking names (" ") is still a header
        raise PayloadError("the CSV payload is empty; send a header line and at least one row")
    nul = text.find("\x00")
    if nul >= 0:  # the C parser would end the field there, or keep it: neither is what was meant
        raise PayloadError(f"the CSV payload holds a NUL character at line {text.count(chr(10), 0, nul) + 1} "
                           f"(character {nul}); send text without NUL, or a JSON format")
    try:
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as exc:
        raise PayloadError(f"the CSV header line could not be parsed ({exc}); send a header line of "
                           "comma-separated column names") from None
    # With one column, a null field is an empty line: it is a row, not a blank line to skip.
    kwargs: dict[str, Any] = {"skip_blank_lines": len(header) != 1}
    if types:
        try:
            from pandas._libs.parsers import STR_NA_VALUES  # type: ignore[import-untyped, unused-ignore]
        except ImportError:  # a pandas that moved it: its documented default list
            STR_NA_VALUES = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                             "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
        # A string column keeps "NA", "null" or "123" as text; only an empty field is null.
        kwargs["keep_default_na"] = False
        kwargs["na_values"] = {h: ([""] if types.get(h) == "string" else sorted(STR_NA_VALUES)) for h in header}
        kwargs["dtype"] = {h: object for h in header if types.get(h) == "string"}
    try:
        with warnings.catch_warnings():
            # a row longer than the header would silently become the index, or lose values
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.StringIO(text), float_precision="round_trip", index_col=False, **kwargs)
    except Exception as exc:  # pandas raises several parser error types
        if isinstance(exc, pd.errors.ParserWarning):
            _check_ragged(text, len(header))
        raise PayloadError(f"the CSV payload could not be parsed ({type(exc).__name__}: {exc}); "
                           "send a header line and comma-separated rows") from None
    if len(header) > 1 and frame.isna().to_numpy().any():
        _check_ragged(text, len(header))
    unnamed = [str(c) for c in frame.columns if str(c).startswith("Unnamed: ")]
    if unnamed:
        raise PayloadError(f"the CSV header has empty column names ({unnamed}); name every column in the first line")
    return Table.from_frame(frame)


def _check_ragged(text: str, width: int) -> None:
    """A row with fewer fields than the header is refused (pandas would fill the rest with nulls);
    only called when the table holds a null, so a well-formed CSV pays nothing."""
    import csv
    import io

    for line, row in enumerate(csv.reader(io.StringIO(text, newline="")), 1):
        if row and len(row) != width:
            raise PayloadError(f"the CSV payload could not be parsed: the row on line {line} has {len(row)} fields "
                               f"but the header has {width}; send every row with one field per column "
                               "(an empty field is a null)")


def missing_header_hint(text: Any, names: Sequence[str]) -> str | None:
    """For a CSV body that did not fit the schema: if its first line names none of the model's
    columns, say it was read as the header (None otherwise)."""
    import csv
    import io

    if not names or not isinstance(text, str):
        return None
    try:
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error:
        return None
    if not header or set(header) & set(names):
        return None
    return (f"the first line was read as the header ({_short(','.join(header))}); CSV needs a header line "
            f"naming the columns first: {','.join(names)}")


def _encode_csv(frame: pd.DataFrame) -> str:
    """RFC 4180 CSV (CRLF line ends, so a field holding a line break is quoted)."""
    out = frame.copy()
    for name in out.columns:
        if "\x00" in str(name):
            raise PayloadError(f"column name {str(name)!r} holds a NUL character, which CSV cannot carry; "
                               "rename the column or send a JSON format")
        if out[name].dtype.kind == "M":
            out[name] = _iso(out[name])
        elif out[name].dtype == object and any(isinstance(v, str) and "\x00" in v for v in out[name].tolist()):
            raise PayloadError(f"column {name!r} holds a NUL character, which CSV cannot carry; "
                               "send this table in a JSON format")
    text: str = out.to_csv(index=False, lineterminator="\r\n", na_rep="")
    return text


def encode_response(preds: Predictions) -> str:
    """RFC 4180 CSV: a ``prediction`` column, then one ``probability_<class>`` column per class."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    names = preds.class_names if preds.probabilities is not None else []
    writer.writerow(["prediction"] + [f"probability_{c}" for c in names])
    for i, label in enumerate(preds.labels):
        writer.writerow([label] + (preds.probabilities[i] if preds.probabilities is not None else []))
    return out.getvalue()


def decode_response(body: Any) -> Predictions | None:
    """CSV text with a ``prediction`` column (and ``probability_<class>`` columns); None for any other body."""
    from deploykit.payload.predictions import Predictions

    if not isinstance(body, (str, bytes, bytearray)):
        return None
    cls = Predictions
    import csv
    import io

    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else body
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or "prediction" not in rows[0]:
        raise PayloadError(f"a CSV response needs a header with a 'prediction' column, got {_short(text)}")
    header = rows[0]
    li = header.index("prediction")
    proba_cols = [(j, h[len("probability_"):]) for j, h in enumerate(header) if h.startswith("probability_")]
    labels = [_csv_scalar(r[li]) for r in rows[1:]]
    if not proba_cols:
        return cls(labels, raw=body)
    probabilities: list[list[float]] = [[_csv_float(r[j]) for j, _ in proba_cols] for r in rows[1:]]  # type: ignore[misc]
    return cls(labels, probabilities, [_csv_scalar(name) for _, name in proba_cols], raw=body)


def _csv_scalar(text: str) -> Any:
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _csv_float(text: str) -> float | None:
    return None if text == "" else float(text)


@hookimpl
def deploykit_register_formats(register: Callable[[Format | Protocol], None]) -> None:
    """Register the CSV request format and the CSV response."""
    register(table_format("csv", lambda o: isinstance(o, (str, bytes, bytearray)), _table_csv, _encode_csv,
                          "CSV with a header line", "text/csv"))
    register(Protocol("csv", encode_response, decode_response, simple_error, formats=("csv",),
                      description="CSV rows with a header line", media_type="text/csv"))
