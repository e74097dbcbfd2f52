"""What a fast JSON parse cannot tell from the parsed values, read from the body's text.

orjson (like most parsers) keeps the last of two equal keys in one object, and rounds a number
to the nearest float: ``1e-400`` becomes ``0.0`` and ``1.0000000000000001`` becomes ``1.0``,
which an integer column would then accept as the whole numbers 0 and 1. Both are silent
changes of what the client sent. ``duplicate_key`` finds the first, at a cost of one
re-serialisation of the parsed body (a colon count decides whether the slow exact parse is
needed); ``exact_loads`` and ``inexact_integers`` find the second, and are only run when an
integer column holds a float at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from deploykit.errors import PayloadError
from deploykit.payload.table import Table, _short

__all__ = ["InexactNumber", "duplicate_key", "exact_loads", "inexact_integers", "suspect_integer_columns"]

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_ESCAPED_COLON = (b"\\u003a", b"\\u003A")


class InexactNumber:
    """A JSON number whose text is not a whole number although it parses to a whole float; a
    number to the V2 datatype checks (``float()`` of it is that float)."""

    __slots__ = ("text", "value")

    def __init__(self, text: str, value: float) -> None:
        self.text = text
        self.value = value

    def __repr__(self) -> str:
        return self.text

    def __float__(self) -> float:
        return self.value


class _DuplicateKey(Exception):
    """Raised inside ``exact_loads`` on the first repeated key (the key is its argument)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def _exact_float(text: str) -> Any:
    value = float(text)
    if value.is_integer():
        try:
            if Decimal(text) != int(value):
                return InexactNumber(text, value)
        except (InvalidOperation, OverflowError):
            return InexactNumber(text, value)
    return value


def _no_constant(name: str) -> Any:
    raise PayloadError(f"the JSON body holds {name}, which is not JSON; send null, or a finite number")


def exact_loads(body: bytes | str) -> Any:
    """Parse ``body`` (already known to be valid JSON) keeping integers exact, each float that is a
    whole number only by rounding as an :class:`InexactNumber`; PayloadError on a repeated key."""
    try:
        return json.loads(body, object_pairs_hook=_pairs, parse_float=_exact_float, parse_constant=_no_constant)
    except _DuplicateKey as exc:
        raise PayloadError(f"the JSON body repeats the key {_short(exc.args[0])} in one object; a JSON parser "
                           "keeps only one of the values, so send each key once per object") from None


def duplicate_key(body: bytes, obj: Any) -> str | None:
    """Why ``body`` (which orjson parsed into ``obj``) is ambiguous: a key repeated in an object; or None.

    Every key is followed by exactly one colon outside strings, and strings keep their colons when
    ``obj`` is written back out: so as many colons in ``body`` as in ``obj`` re-serialised (with no
    escaped colon in the body) proves no key was dropped. Only when the counts differ (colons inside
    dropped values, or escaped ones) is the body parsed again, exactly.
    """
    if type(obj) is not dict and type(obj) is not list:
        return None
    import orjson

    colons = body.count(b":")
    if colons == 0:
        return None
    try:
        written = orjson.dumps(obj).count(b":")
    except TypeError:  # nested deeper than orjson writes (it reads deeper): the exact parse decides
        written = -1
    if colons == written and not any(e in body for e in _ESCAPED_COLON):
        return None
    try:
        exact_loads(body)
    except PayloadError as exc:
        return str(exc)
    except (ValueError, RecursionError):  # orjson accepted it; the stdlib parser's limits are not the client's
        return None
    return None


def suspect_integer_columns(table: Table, names: Iterable[str]) -> list[str]:
    """The integer columns (of ``names``) of ``table`` that hold a float: only those can hold a
    number rounded into a whole one."""
    found = []
    for name in names:
        values = table.columns.get(name)
        if type(values) is list:
            if float in set(map(type, values)):
                found.append(name)
        elif getattr(getattr(values, "dtype", None), "kind", None) == "f":  # a V2 FP tensor
            found.append(name)
    return found


def inexact_integers(exact: Table, columns: Iterable[str], limit: int = 10) -> list[dict[str, Any]]:
    """The schema-style problems of ``exact`` (the table decoded from ``exact_loads``): each value of
    ``columns`` written as a fraction or exponent that only rounds to a whole number."""
    problems: list[dict[str, Any]] = []
    for name in columns:
        values = exact.columns.get(name)
        if type(values) is not list:
            continue
        bad = [(row, v) for row, v in enumerate(values)
               if type(v) is InexactNumber or (type(v) is int and not _INT_MIN <= v <= _INT_MAX)]
        for row, v in bad[:limit]:
            if not isinstance(v, InexactNumber):
                text = _digits(v)
                problems.append({
                    "column": name, "row": row, "value": text, "expected": "integer",
                    "error": "outside the 64-bit integer range",
                    "message": f"column {name!r} row {row}: expected integer, got {text} (outside the 64-bit integer "
                               f"range); send a whole number between {_INT_MIN} and {_INT_MAX}"})
                continue
            problems.append({
                "column": name, "row": row, "value": _short(v.text), "expected": "integer",
                "error": "not a whole number",
                "message": f"column {name!r} row {row}: expected integer, got {_short(v.text)} (not a whole number: "
                           f"it only rounds to {v.value!r} as a 64-bit float); send the whole number itself"})
        if len(bad) > limit:
            problems.append({"column": name, "row": None, "value": None, "expected": "integer", "error": "more rows",
                             "count": len(bad) - limit,
                             "message": f"column {name!r}: {len(bad) - limit} more rows have problems like these"})
    return problems



def _digits(value: int) -> str:
    if value.bit_length() > 10_000:
        return f"an integer of {value.bit_length()} bits"
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"
