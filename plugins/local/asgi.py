"""ASGI plumbing of the scoring routes: auth, body reading and decompression, parsing, the schema
check, and problem responses in each protocol's error shape."""

from __future__ import annotations

import hmac
import logging
import zlib
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson

from deploykit import payload
from deploykit.errors import PayloadError, Problem, SchemaError
from deploykit.inference import ModelScorer
from deploykit.payload import jsontext
from deploykit.payload.csv import MEDIA_TYPES as _CSV_TYPES
from deploykit_plugins.local.batcher import Batcher, ModelError

if TYPE_CHECKING:
    from deploykit.artifact import Artifact
    from deploykit_plugins.local.app import ServerConfig

__all__ = ["Endpoint", "HTTPProblem", "Raw", "RouteContext", "dumps", "headers_of", "respond", "wants_csv"]

log = logging.getLogger("deploykit.server")

JSON = "application/json"
_JSON_TYPES = (JSON, "text/json", "text/plain", "application/octet-stream")

#: The JSON text of the request being handled (each request runs in its own task): read again
#: only when a parsed value may hide what the client wrote (see ``deploykit.payload.jsontext``).
_JSON_BODY: ContextVar[bytes | None] = ContextVar("deploykit_json_body", default=None)

#: A route handler: ``(scope, headers, body) -> (status, answer)``; a str answer is sent as CSV.
Handler = Callable[[dict[str, Any], dict[bytes, bytes], bytes], Awaitable[tuple[int, Any]]]


class HTTPProblem(Exception):
    """A 4xx answer: status, a message, and (for schema errors) every offending field."""

    def __init__(self, status: int, message: str, problems: list[Problem] | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []
        self.code = code


@dataclass(frozen=True)
class Raw:
    """An answer sent as it is: bytes, their media type and extra headers (V2 binary tensors)."""

    body: bytes
    media_type: str
    headers: list[tuple[bytes, bytes]]


def headers_of(scope: Mapping[str, Any]) -> dict[bytes, bytes]:
    return dict(scope["headers"])


async def respond(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, body: bytes,
                media_type: str = JSON, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class RouteContext:
    """What every scoring route shares: config, schema, scorer, batcher; and the steps each takes
    (auth, body, parsing, the schema check, scoring)."""

    def __init__(self, artifact: Artifact, config: ServerConfig) -> None:
        self.artifact = artifact
        self.config = config
        self.schema = artifact.schema
        self.columns = self.schema.names or None
        self.types = {c.name: c.type for c in self.schema.columns} or None
        self.integer_columns = [c.name for c in self.schema.columns if c.type == "integer"]
        self.token = config.token.encode() if config.token else None
        self.scorer = ModelScorer(artifact)
        self.batcher = Batcher(self.scorer, max(0.0, config.batch_wait_ms) / 1000.0, config.max_batch_rows)
        self.example_body = orjson.dumps([self.schema.example]).decode() if self.schema.example else \
            '[{"column": "value"}]'

    # auth, body, parsing ------------------------------------------------------------------
    def check_auth(self, headers: dict[bytes, bytes]) -> None:
        if self.token is None:
            return
        scheme, _, value = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), self.token):
            raise HTTPProblem(401, "missing or wrong bearer token; send 'Authorization: Bearer <token>' "
                                   "with the token from credentials.yaml local.token")

    async def read_body(self, headers: dict[bytes, bytes], receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes:
        limit = self.config.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise HTTPProblem(413, f"request body is {int(length)} bytes, over the limit of {limit}; "
                                   "send fewer rows per request or raise local.max_body_bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HTTPProblem(400, "the client closed the connection before sending the whole body")
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise HTTPProblem(413, f"request body is over the limit of {limit} bytes; "
                                           "send fewer rows per request or raise local.max_body_bytes")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"", b"identity"):
            body = self._decompress(body, encoding)
        return body

    def _decompress(self, body: bytes, encoding: bytes) -> bytes:
        """Inflate a gzip (every member: RFC 1952 allows several, and ``cat a.gz b.gz`` makes them)
        or deflate body, never past ``max_body_bytes`` of output; a truncated stream, or bytes
        after the deflate stream, is a 400, not a silently shorter body."""
        limit = self.config.max_body_bytes
        if encoding not in (b"gzip", b"x-gzip", b"deflate"):
            raise HTTPProblem(415, f"Content-Encoding {encoding.decode('latin-1')!r} is not supported; "
                                   "send the body as is, gzip or deflate")
        name = encoding.decode()
        gzipped = encoding != b"deflate"
        wbits = 31 if gzipped else (15 if body[:1] == b"\x78" else -15)
        parts: list[bytes] = []
        size, rest, members = 0, body, 0
        while True:
            inflater = zlib.decompressobj(wbits)
            try:
                out = inflater.decompress(rest, limit + 1 - size)
            except zlib.error as exc:
                what = f"member {members + 1} of the {name} body" if members else f"the {name} body"
                raise HTTPProblem(400, f"{what} could not be decompressed ({exc}); "
                                       "send valid compressed data or drop Content-Encoding") from None
            size += len(out)
            parts.append(out)
            if size > limit or inflater.unconsumed_tail:
                raise HTTPProblem(413, f"the decompressed body is over the limit of {limit} bytes; "
                                       "send fewer rows per request or raise local.max_body_bytes")
            members += 1
            if not inflater.eof:
                raise HTTPProblem(400, f"the {name} body is truncated (its stream ends after {len(body)} bytes "
                                       "without the end marker); send the whole compressed body")
            rest = inflater.unused_data
            if not rest:
                break
            if not gzipped:
                raise HTTPProblem(400, f"the deflate body has {len(rest)} bytes after the end of its stream; "
                                       "send one deflate stream, or gzip members")
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def parse(self, body: bytes, headers: dict[bytes, bytes], allow_csv: bool) -> Any:
        """JSON (also without a Content-Type) or, where the protocol has it, CSV."""
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
        if ctype in _CSV_TYPES:
            if not allow_csv:
                raise HTTPProblem(415, f"Content-Type {ctype!r} is not supported here; send application/json")
            try:
                return body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HTTPProblem(400, f"the CSV body is not UTF-8 ({exc}); send UTF-8 text") from None
        accepted = "application/json" + (" or text/csv" if allow_csv else "")
        # curl -d sends JSON labelled as a form: accept it when it parses as JSON.
        form = ctype == "application/x-www-form-urlencoded"
        if ctype and not form and ctype not in _JSON_TYPES and not ctype.endswith("+json"):
            raise HTTPProblem(415, f"Content-Type {ctype!r} is not supported here; send {accepted}")
        if not body.strip():
            raise HTTPProblem(400, f"request body is empty; send a JSON payload such as {self.example_body}")
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if form:
                raise HTTPProblem(415, f"Content-Type {ctype!r} is not supported here; send {accepted}") from None
            raise HTTPProblem(400, f"request body is not valid JSON ({exc}); send a JSON payload such as "
                                   f"{self.example_body}") from None
        duplicate = jsontext.duplicate_key(body, obj)
        if duplicate is not None:
            raise HTTPProblem(400, duplicate)
        _JSON_BODY.set(body)
        return obj

    def validate(self, obj: Any, fmt: str | None) -> tuple[dict[str, Any], int]:
        """Decode and check the payload: the model's columns as typed arrays, and the row count."""
        try:
            table = payload.decode_table(obj, self.columns, fmt, types=self.types)
            if table.rows == 0:
                raise HTTPProblem(400, f"the payload has no rows; send at least one row, e.g. {self.example_body}")
            if not self.schema.columns:
                return {k: payload.column_array(v) for k, v in table.columns.items()}, table.rows
            if self.integer_columns:
                self._check_exact_integers(table, fmt)
            return self.schema.check(table, allow_extra_columns=self.config.allow_extra_columns), table.rows
        except SchemaError as exc:
            raise HTTPProblem(422, str(exc), exc.problems) from None
        except PayloadError as exc:
            raise HTTPProblem(400, str(exc)) from None

    def _check_exact_integers(self, table: payload.Table, fmt: str | None) -> None:
        """An integer column holding a float written as a fraction or exponent that merely rounds to
        a whole number (``1e-400``, ``1.0000000000000001``) is a 422, not the whole number: the body
        is read again exactly, which only happens when an integer column holds a float at all."""
        suspects = jsontext.suspect_integer_columns(table, self.integer_columns)
        body = _JSON_BODY.get()
        if not suspects or body is None:
            return
        try:
            exact = payload.decode_table(jsontext.exact_loads(body), self.columns, fmt, types=self.types)
        except (ValueError, RecursionError):  # orjson read it; the exact reader's limits are not the client's
            return
        problems = cast("list[Problem]", jsontext.inexact_integers(exact, suspects))
        if problems:
            from deploykit.schema import describe_problems

            raise SchemaError(describe_problems(problems), problems)

    async def score(self, columns: dict[str, Any], rows: int, want_proba: bool,
                    client: Any = None) -> payload.Predictions:
        try:
            return await self.batcher.score(columns, rows, want_proba, client)
        except ModelError as exc:
            # The schema was enforced, so what the model still rejects is input it cannot handle.
            raise HTTPProblem(422, f"the model rejected the input: {exc}; check the values against the "
                                   "model's training data (e.g. categories it has never seen)") from None


class Endpoint:
    """One scoring route as a plain ASGI app: read, parse, check, score, answer in ``protocol``."""

    def __init__(self, ctx: RouteContext, protocol: str, handler: Handler) -> None:
        self.ctx = ctx
        self.protocol = protocol
        self.errors = payload.protocol(protocol)
        self.handler = handler

    def error(self, p: HTTPProblem) -> Any:
        """``p`` as the protocol's error body."""
        return self.errors.error_body(p.status, p.message, p.problems, p.code)

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        headers = headers_of(scope)
        _JSON_BODY.set(None)
        try:
            self.ctx.check_auth(headers)
            body = await self.ctx.read_body(headers, receive)
            status, answer = await self.handler(scope, headers, body)
            if isinstance(answer, Raw):
                await respond(send, status, answer.body, answer.media_type, answer.headers)
            elif isinstance(answer, str):
                await respond(send, status, answer.encode(), "text/csv; charset=utf-8")
            else:
                await respond(send, status, dumps(answer))
        except HTTPProblem as p:
            extra = [(b"www-authenticate", b"Bearer")] if p.status == 401 else None
            await respond(send, p.status, dumps(self.error(p)), extra=extra)
        except Exception as exc:  # a bug, not bad input: say so in the protocol's shape, log the trace
            log.exception("deploykit server: %s %s failed", scope.get("method"), scope.get("path"))
            bug = HTTPProblem(500, f"internal error ({type(exc).__name__}: {exc}); see the server log")
            await respond(send, 500, dumps(self.error(bug)))


def wants_csv(headers: dict[bytes, bytes]) -> bool:
    accept = headers.get(b"accept", b"").lower()
    return accept.startswith(b"text/csv")
