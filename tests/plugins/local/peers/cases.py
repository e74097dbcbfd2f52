"""What a replayed case is: a request, the answers it gets, and why ours differs where it does.

Both replays (``cases_mlflow``, ``cases_v2``) are plain data in these shapes; the tests send each
request to the live servers and ``report.py`` renders docs/protocols.md from the same data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Request:
    """One HTTP request. ``body`` is JSON-encoded unless it is ``bytes`` or ``str``; ``headers``
    go as given (``content_type=None`` sends no Content-Type at all)."""

    method: str
    path: str
    body: Any = None
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    def content(self) -> bytes | None:
        """The body as bytes."""
        if self.body is None:
            return None
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()

    def all_headers(self) -> dict[str, str]:
        """Content-Type (if any) and the extra headers."""
        out = dict(self.headers)
        if self.content_type is not None:
            out["content-type"] = self.content_type
        return out


@dataclass(frozen=True)
class Answer:
    """What a server answers, as far as a case compares it: the status and, for an MLflow JSON
    error body, its ``error_code`` (None: no JSON error body, e.g. MLflow's text/plain 415)."""

    status: int
    error_code: str | None = None

    def __str__(self) -> str:
        return f"{self.status}" + (f" `{self.error_code}`" if self.error_code else "")


@dataclass(frozen=True)
class MlflowCase:
    """One MLflow scoring-server case on one model.

    ``asserted``: what MLflow's own test asserts (None for cases from its server's code or for
    schema enforcement, which its tests do not assert). ``mlflow``: what ``mlflow models serve``
    answers on the same model directory (checked live). ``ours``: deploykit's answer when it
    differs from MLflow's, with ``deliberate`` saying why; None means the same answer, and for a
    200 the same predictions. ``same_predictions_as``: for a 200 only deploykit gives, the body
    whose MLflow predictions ours must equal. ``compare_body``: the bodies must be equal too.
    ``client``: the case is a call of MLflow's ``ScoringServerClient`` instead of a request.
    """

    id: str
    title: str
    source: str
    request: Request | None
    mlflow: Answer
    asserted: Answer | None = None
    ours: Answer | None = None
    deliberate: str | None = None
    model: str = "mixed"
    same_predictions_as: Request | None = None
    compare_body: bool = False
    client: str | None = None

    @property
    def deploykit(self) -> Answer:
        """deploykit's answer: ``ours`` if it differs, else MLflow's."""
        return self.ours or self.mlflow


@dataclass(frozen=True)
class V2Case:
    """One Open Inference Protocol V2 expectation, from KServe's spec, tests or e2e data.

    ``expect`` is KServe's expectation as a check on the live response (raises AssertionError),
    ``expected`` the same in words. A deliberate difference names ``ours`` (in words), ``check_ours``
    (the check deploykit's answer passes instead) and ``deliberate`` (why); every other case must
    meet the expectation.
    """

    id: str
    title: str
    source: str
    request: Request | Callable[[str, str], Any]
    expected: str
    expect: Callable[[Any], None]
    ours: str = ""
    check_ours: Callable[[Any], None] | None = None
    deliberate: str | None = None
    model: str = "iris"

    @property
    def meets(self) -> bool:
        """True when deploykit meets KServe's expectation (every case that is not deliberate)."""
        return self.deliberate is None
