"""The local server's app: one loaded model, every protocol deploykit speaks, micro-batched.

Routes: ``/health``; ``POST /predict`` (any payload format, deploykit's response shape);
``POST /invocations`` (MLflow: dataframe_split, dataframe_records, instances, inputs, CSV);
``/v2/...`` (Open Inference Protocol: health, metadata, ``infer`` with JSON or binary
tensors); ``POST /ml/v4/deployments/{id}/predictions`` (Watson). Each answers, errors
included, in its own protocol's shape. Bad input is a 4xx naming the column, the value and
the fix; never a 500, never a silent cast.

Everything per model is prepared once in ``create_app``: the schema check, the codecs (plugin
formats included), the OpenAPI document and the scorer (warmed up on the example row). The
scoring routes are plain ASGI handlers (no per-request validation layer), and concurrent
requests are gathered into one ``predict`` call by :class:`Batcher`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.routing import Route

from deploykit import payload
from deploykit.artifact import Artifact
from deploykit.errors import PayloadError, SchemaError

__all__ = ["Batcher", "HTTPProblem", "ModelScorer", "ServerConfig", "create_app"]

log = logging.getLogger("deploykit.server")

_JSON = "application/json"
_CSV_TYPES = ("text/csv", "application/csv")
_JSON_TYPES = (_JSON, "text/json", "text/plain", "application/octet-stream")
_MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_ASGI = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                  Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


@dataclass
class ServerConfig:
    """How the server runs: the name and revision it reports, the auth token, the body size
    limit, whether extra columns are dropped (None: the schema decides), and micro-batching:
    concurrent requests wait up to ``batch_wait_ms`` (0 turns batching off) to be scored
    together, up to ``max_batch_rows`` rows per ``predict`` call."""

    name: str = "model"
    revision: int = 1
    token: str | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    allow_extra_columns: bool | None = None
    batch_wait_ms: float = 2.0
    max_batch_rows: int = 256


class HTTPProblem(Exception):
    """A 4xx answer: status, a message, and (for schema errors) every offending field."""

    def __init__(self, status: int, message: str, problems: list[dict[str, Any]] | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []
        self.code = code


# -- each protocol's error body --------------------------------------------------------------

def _err_deploykit(p: HTTPProblem) -> Any:
    out: dict[str, Any] = {"error": p.message}
    if p.problems:
        out["problems"] = p.problems
    return out


_MLFLOW_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 404: "RESOURCE_DOES_NOT_EXIST",
                 413: "BAD_REQUEST", 415: "BAD_REQUEST", 422: "INVALID_PARAMETER_VALUE", 500: "INTERNAL_ERROR"}


def _err_mlflow(p: HTTPProblem) -> Any:
    out: dict[str, Any] = {"error_code": _MLFLOW_CODES.get(p.status, "BAD_REQUEST"), "message": p.message}
    if p.problems:
        out["problems"] = p.problems
    return out


def _err_v2(p: HTTPProblem) -> Any:
    out: dict[str, Any] = {"error": p.message}
    if p.problems:
        out["problems"] = p.problems
    return out


_WATSON_CODES = {400: "invalid_input_data", 401: "authentication_failed", 404: "deployment_not_found",
                 413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input_data",
                 500: "internal_error"}


def _err_watson(p: HTTPProblem) -> Any:
    code = p.code or _WATSON_CODES.get(p.status, "invalid_request")
    errors: list[dict[str, Any]] = [{"code": code, "message": p.message}]
    if p.problems:
        errors = [{"code": code, "message": q.get("message") or p.message,
                   "target": {"type": "field", "name": q["column"]}} for q in p.problems]
    return {"trace": os.urandom(16).hex(), "errors": errors, "status_code": p.status}


_ERRORS: dict[str, Callable[[HTTPProblem], Any]] = {
    "deploykit": _err_deploykit, "mlflow": _err_mlflow, "v2": _err_v2, "watson": _err_watson}


# -- scoring -----------------------------------------------------------------------------------

def _final_step(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if isinstance(steps, list) and steps else model


def _labels_from_proba(model: Any) -> Any:
    """``classes_`` when the model's ``predict`` is exactly the arg-max of ``predict_proba``
    (scikit-learn forests and trees), so one ``predict_proba`` call gives both; else None."""
    final = _final_step(model)
    if not type(final).__module__.startswith("sklearn.") or getattr(final, "n_outputs_", 1) != 1:
        return None
    from sklearn.ensemble._forest import ForestClassifier
    from sklearn.tree._classes import BaseDecisionTree

    predict = getattr(type(final), "predict", None)
    if predict not in (ForestClassifier.predict, BaseDecisionTree.predict) or not hasattr(final, "classes_"):
        return None
    return np.asarray(final.classes_)


class ModelScorer:
    """Calls the model: labels, and class probabilities when asked for.

    For estimators whose ``predict`` is the arg-max of ``predict_proba`` the labels are taken
    from the probabilities, so a request with probabilities costs one model pass, not two.
    """

    def __init__(self, artifact: Artifact) -> None:
        self.model = artifact.model
        self.flavor = artifact.flavor
        self.classes = artifact.classes
        self.use_frame = getattr(self.model, "feature_names_in_", None) is not None or self.flavor == "mlflow"
        self.has_proba = callable(getattr(self.model, "predict_proba", None)) and self.flavor != "mlflow"
        self.argmax_classes = _labels_from_proba(self.model) if self.has_proba else None

    def __call__(self, frame: pd.DataFrame, want_proba: bool = True) -> payload.Predictions:
        """Score a validated frame."""
        X = frame if self.use_frame else frame.to_numpy()
        proba = None
        if self.has_proba and (want_proba or self.argmax_classes is not None):
            try:
                proba = self.model.predict_proba(X)
            except (AttributeError, NotImplementedError):  # e.g. SVC(probability=False)
                self.has_proba = False
                self.argmax_classes = None
        if proba is not None and self.argmax_classes is not None:
            labels = self.argmax_classes.take(np.argmax(proba, axis=1))
        else:
            labels = self.model.predict(X)
        if type(labels).__name__ == "DataFrame":  # an MLflow pyfunc may answer with a table
            labels = labels.iloc[:, 0] if labels.shape[1] == 1 else labels.to_dict("records")
        if proba is None or not want_proba:
            return payload.Predictions.from_model(labels)
        return payload.Predictions.from_model(labels, proba, self.classes)

    def check_shortcut(self, frame: pd.DataFrame) -> None:
        """Turn the one-pass shortcut off if it disagrees with ``predict`` on ``frame``."""
        if self.argmax_classes is None:
            return
        X = frame if self.use_frame else frame.to_numpy()
        expected = payload.Predictions.from_model(self.model.predict(X)).labels
        if self(frame, want_proba=False).labels != expected:
            self.argmax_classes = None


class _ModelError(Exception):
    """The model raised while scoring rows that passed the schema check."""


@dataclass
class _Job:
    columns: dict[str, Any]
    rows: int
    want_proba: bool
    future: asyncio.Future[payload.Predictions]


def _concat(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if all(type(p) is np.ndarray for p in parts):
        return np.concatenate(parts)
    return pd.concat([pd.Series(p, copy=False) for p in parts], ignore_index=True).array


def _frame(columns: dict[str, Any], rows: int) -> pd.DataFrame:
    if not columns:
        return pd.DataFrame(index=range(rows))
    return pd.DataFrame(columns, copy=False)


class Batcher:
    """Scores concurrent requests together: adaptive micro-batching.

    Requests queue; one ``predict`` call takes every queued request (up to ``max_rows`` rows),
    after waiting at most ``wait_s`` for the clients that were active a moment ago (answered
    within the last few predict durations) to send their next request. Steady concurrent load
    so settles into full batches, while a lone client never waits. Each caller gets exactly its
    own rows back; if the model raises on a batch, each of its requests is scored alone, so
    only the bad one fails. ``wait_s == 0`` turns batching off; a request of ``max_rows`` rows
    or more is scored on its own.

    The model runs on the event loop's own thread: on a small machine, handing each call to a
    worker thread costs more in GIL hand-offs (up to the 5 ms switch interval while the model
    holds the GIL) than it gains, and requests that arrive meanwhile simply join the next batch.
    """

    def __init__(self, scorer: Callable[[pd.DataFrame, bool], payload.Predictions], wait_s: float,
                 max_rows: int) -> None:
        self.scorer = scorer
        self.wait_s = wait_s
        self.max_rows = max(1, max_rows)
        self.queue: deque[_Job] = deque()
        self.running = False
        self.expect = 1
        self.last_batch = 1
        self.waiter: asyncio.Future[None] | None = None
        self.batches = 0
        self.requests = 0
        self.recent: dict[Any, float] = {}  # client (connection) -> when it was last answered
        self.window = 0.02  # how long an answered client counts as active: a few predict durations

    async def score(self, columns: dict[str, Any], rows: int, want_proba: bool,
                    client: Any = None) -> payload.Predictions:
        """Score one request's validated columns; raises _ModelError if the model rejects them.
        ``client`` (the connection, e.g. the ASGI scope's ``client``) lets the batcher learn how
        many clients are active."""
        loop = asyncio.get_running_loop()
        if self.wait_s <= 0 or rows >= self.max_rows or \
                (not self.running and self._expected(loop.time()) <= 1 and client in self.recent):
            # Batching off, a request that fills a batch, or the only client of late: score now.
            self.batches += 1
            self.requests += 1
            try:
                return self._score_alone(columns, rows, want_proba)
            finally:
                if client is not None:
                    self.recent[client] = loop.time()
        # Else queue, even when idle: the batch is taken by a task that runs after every request
        # that arrived together with this one has been parsed and queued too.
        job = _Job(columns, rows, want_proba, loop.create_future())
        self.queue.append(job)
        if not self.running:
            self.running = True
            loop.create_task(self._drain())
        elif self.waiter is not None and not self.waiter.done() and len(self.queue) >= self.expect:
            self.waiter.set_result(None)
        try:
            return await job.future
        finally:
            if client is not None:
                self.recent[client] = loop.time()

    def _expected(self, now: float) -> int:
        """How many requests to wait for: the clients answered within ``window``, or, with no
        client information, as many as the previous batch held."""
        if not self.recent:
            return self.last_batch
        horizon = now - self.window
        if len(self.recent) > 1024:
            self.recent = {c: t for c, t in self.recent.items() if t >= horizon}
        return max(1, sum(1 for t in self.recent.values() if t >= horizon))

    def _score_alone(self, columns: dict[str, Any], rows: int, want_proba: bool) -> payload.Predictions:
        try:
            preds = self.scorer(_frame(columns, rows), want_proba)
        except Exception as exc:
            raise _ModelError(f"{type(exc).__name__}: {exc}") from exc
        if len(preds) != rows:
            raise _ModelError(f"the model returned {len(preds)} predictions for {rows} rows")
        return preds

    def _score_batch(self, batch: list[_Job]) -> payload.Predictions:
        names = list(batch[0].columns)
        columns = {n: _concat([job.columns[n] for job in batch]) for n in names}
        return self._score_alone(columns, sum(j.rows for j in batch), any(j.want_proba for j in batch))

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.queue:
                self.expect = self._expected(loop.time())
                if len(self.queue) < self.expect and self._queued_rows() < self.max_rows:
                    self.waiter = loop.create_future()
                    timer = loop.call_later(self.wait_s, _release, self.waiter)
                    await self.waiter
                    timer.cancel()
                    self.waiter = None
                batch = self._take()
                self.last_batch = len(batch)
                self.batches += 1
                self.requests += len(batch)
                started = loop.time()
                self._run(batch)
                self.window = max(0.02, 3 * (loop.time() - started))
                await asyncio.sleep(0)  # let the callers answer, and new requests in, before the next batch
        finally:
            self.running = False

    def _take(self) -> list[_Job]:
        """The next batch: queued requests in order, up to max_rows rows, with the first one's
        columns (always the case with a schema; without one, requests may name other columns)."""
        first = self.queue.popleft()
        batch, rows, names, skipped = [first], first.rows, list(first.columns), []
        while self.queue and rows + self.queue[0].rows <= self.max_rows:
            job = self.queue.popleft()
            if list(job.columns) == names:
                batch.append(job)
                rows += job.rows
            else:
                skipped.append(job)
        self.queue.extendleft(reversed(skipped))
        return batch

    def _queued_rows(self) -> int:
        return sum(job.rows for job in self.queue)

    def _run(self, batch: list[_Job]) -> None:
        try:
            preds = self._score_batch(batch)
        except _ModelError as exc:
            if len(batch) == 1:
                _settle(batch[0].future, exc=exc)
                return
            for job in batch:  # isolate the request the model rejects
                try:
                    alone = self._score_alone(job.columns, job.rows, job.want_proba)
                except _ModelError as err:
                    _settle(job.future, exc=err)
                else:
                    _settle(job.future, alone)
            return
        except BaseException as exc:  # never leave a caller waiting
            for job in batch:
                _settle(job.future, exc=exc if isinstance(exc, Exception) else _ModelError(repr(exc)))
            raise
        start = 0
        for job in batch:
            part = preds[start:start + job.rows]
            start += job.rows
            if not job.want_proba:
                part.probabilities = part.classes = None
            _settle(job.future, part)


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _settle(future: asyncio.Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    if future.done():  # the caller went away
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


# -- request plumbing ----------------------------------------------------------------------------

def _headers(scope: Mapping[str, Any]) -> dict[bytes, bytes]:
    return dict(scope["headers"])


async def _send(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, body: bytes,
                media_type: str = _JSON, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _dumps(body: Any) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class _Context:
    """What every scoring route shares: config, schema, scorer, batcher."""

    def __init__(self, artifact: Artifact, config: ServerConfig) -> None:
        self.artifact = artifact
        self.config = config
        self.schema = artifact.schema
        self.columns = self.schema.names or None
        self.types = {c.name: c.type for c in self.schema.columns} or None
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
        limit = self.config.max_body_bytes
        if encoding not in (b"gzip", b"x-gzip", b"deflate"):
            raise HTTPProblem(415, f"Content-Encoding {encoding.decode('latin-1')!r} is not supported; "
                                   "send the body as is, gzip or deflate")
        wbits = 31 if encoding != b"deflate" else (15 if body[:1] == b"\x78" else -15)
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise HTTPProblem(400, f"the {encoding.decode()} body could not be decompressed ({exc}); "
                                   "send valid compressed data or drop Content-Encoding") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise HTTPProblem(413, f"the decompressed body is over the limit of {limit} bytes; "
                                   "send fewer rows per request or raise local.max_body_bytes")
        return out

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
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if form:
                raise HTTPProblem(415, f"Content-Type {ctype!r} is not supported here; send {accepted}") from None
            raise HTTPProblem(400, f"request body is not valid JSON ({exc}); send a JSON payload such as "
                                   f"{self.example_body}") from None

    def validate(self, obj: Any, fmt: str | None) -> tuple[dict[str, Any], int]:
        """Decode and check the payload: the model's columns as typed arrays, and the row count."""
        try:
            table = payload.decode_table(obj, self.columns, fmt, types=self.types)
            if table.rows == 0:
                raise HTTPProblem(400, f"the payload has no rows; send at least one row, e.g. {self.example_body}")
            if not self.schema.columns:
                return {k: payload.column_array(v) for k, v in table.columns.items()}, table.rows
            return self.schema.check(table, allow_extra_columns=self.config.allow_extra_columns), table.rows
        except SchemaError as exc:
            raise HTTPProblem(422, str(exc), exc.problems) from None
        except PayloadError as exc:
            raise HTTPProblem(400, str(exc)) from None

    async def score(self, columns: dict[str, Any], rows: int, want_proba: bool,
                    client: Any = None) -> payload.Predictions:
        try:
            return await self.batcher.score(columns, rows, want_proba, client)
        except _ModelError as exc:
            # The schema was enforced, so what the model still rejects is input it cannot handle.
            raise HTTPProblem(422, f"the model rejected the input: {exc}; check the values against the "
                                   "model's training data (e.g. categories it has never seen)") from None


class _Endpoint:
    """One scoring route as a plain ASGI app: read, parse, check, score, answer in ``protocol``."""

    def __init__(self, ctx: _Context, protocol: str, handler: Callable[..., Awaitable[tuple[int, Any]]]) -> None:
        self.ctx = ctx
        self.protocol = protocol
        self.error = _ERRORS[protocol]
        self.handler = handler

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        headers = _headers(scope)
        try:
            self.ctx.check_auth(headers)
            body = await self.ctx.read_body(headers, receive)
            status, answer = await self.handler(scope, headers, body)
            if isinstance(answer, str):
                await _send(send, status, answer.encode(), "text/csv; charset=utf-8")
            else:
                await _send(send, status, _dumps(answer))
        except HTTPProblem as p:
            extra = [(b"www-authenticate", b"Bearer")] if p.status == 401 else None
            await _send(send, p.status, _dumps(self.error(p)), extra=extra)
        except Exception as exc:  # a bug, not bad input: say so in the protocol's shape, log the trace
            log.exception("deploykit server: %s %s failed", scope.get("method"), scope.get("path"))
            bug = HTTPProblem(500, f"internal error ({type(exc).__name__}: {exc}); see the server log")
            await _send(send, 500, _dumps(self.error(bug)))


def _wants_csv(headers: dict[bytes, bytes]) -> bool:
    accept = headers.get(b"accept", b"").lower()
    return accept.startswith(b"text/csv")


def create_app(artifact: Artifact, config: ServerConfig | None = None) -> FastAPI:
    """Build the app for ``artifact``; the model, schema and codecs are prepared here, once."""
    from deploykit.plugins import load_formats

    load_formats()
    config = config or ServerConfig()
    ctx = _Context(artifact, config)
    schema = ctx.schema
    classes = artifact.classes
    _warm_up(ctx)
    app = FastAPI(title=f"deploykit: {config.name}", version=str(config.revision),
                  description=f"Model {config.name} revision {config.revision} "
                              f"({artifact.framework} {artifact.framework_version or ''}, "
                              f"sha256 {artifact.sha256[:12]})")
    app.state.batcher = ctx.batcher
    app.state.scorer = ctx.scorer

    # POST /predict: any format in, deploykit's shape out --------------------------------------
    async def predict(scope: dict[str, Any], headers: dict[bytes, bytes], body: bytes) -> tuple[int, Any]:
        obj = ctx.parse(body, headers, allow_csv=True)
        columns, rows = ctx.validate(obj, None)
        preds = await ctx.score(columns, rows, want_proba=True, client=scope.get("client"))
        return 200, preds.encode("csv") if _wants_csv(headers) else preds.to_dict()

    # POST /invocations: MLflow's scoring protocol ---------------------------------------------
    async def invocations(scope: dict[str, Any], headers: dict[bytes, bytes], body: bytes) -> tuple[int, Any]:
        obj = ctx.parse(body, headers, allow_csv=True)
        if isinstance(obj, str):
            fmt = "csv"
        else:
            keys = [k for k in _MLFLOW_KEYS if isinstance(obj, dict) and k in obj]
            if len(keys) != 1:
                seen = sorted(map(str, obj))[:10] if isinstance(obj, dict) else type(obj).__name__
                raise HTTPProblem(400, f"an MLflow payload is a JSON object with exactly one of the keys "
                                       f"{', '.join(_MLFLOW_KEYS)}; got {seen}. Example: "
                                       f'{{"dataframe_records": {ctx.example_body}}}')
            fmt = keys[0]
        columns, rows = ctx.validate(obj, fmt)
        preds = await ctx.score(columns, rows, want_proba=False, client=scope.get("client"))
        return 200, preds.encode("mlflow")

    # POST /ml/v4/deployments/{id}/predictions: Watson ---------------------------------------
    async def watson(scope: dict[str, Any], headers: dict[bytes, bytes], body: bytes) -> tuple[int, Any]:
        obj = ctx.parse(body, headers, allow_csv=False)
        if not isinstance(obj, dict) or "input_data" not in obj:
            raise HTTPProblem(400, 'the request body must contain "input_data", e.g. '
                                   f'{orjson.dumps(payload.encode(schema.example and [schema.example] or [{}], "input_data")).decode()}',
                              code="missing_input_data")
        columns, rows = ctx.validate(obj, "input_data")
        preds = await ctx.score(columns, rows, want_proba=True, client=scope.get("client"))
        blocks = [len(b.get("values") or []) for b in obj["input_data"]]
        if len(blocks) == 1:
            return 200, preds.encode("watson")
        out, start = [], 0
        for n in blocks:  # one predictions block per input block, as Watson answers
            out.extend(preds[start:start + n].encode("watson")["predictions"])
            start += n
        return 200, {"predictions": out}

    # POST /v2/models/{name}[/versions/{v}]/infer: Open Inference Protocol ---------------------
    async def v2_infer(scope: dict[str, Any], headers: dict[bytes, bytes], body: bytes) -> tuple[int, Any]:
        params = scope.get("path_params", {})
        _check_v2_model(params.get("model_name"), params.get("version"))
        header_length = headers.get(b"inference-header-content-length")
        if header_length is not None:
            if not header_length.strip().isdigit():
                raise HTTPProblem(400, f"Inference-Header-Content-Length is {header_length.decode('latin-1')!r}; "
                                       "send the byte length of the JSON header")
            try:
                obj = payload.decode_v2_binary(body, int(header_length))
            except PayloadError as exc:
                raise HTTPProblem(400, str(exc)) from None
        else:
            obj = ctx.parse(body, headers, allow_csv=False)
        if not isinstance(obj, dict) or not isinstance(obj.get("inputs"), list):
            raise HTTPProblem(400, "a V2 inference request is a JSON object with an 'inputs' list of tensors "
                                   '{"name", "shape", "datatype", "data"}')
        requested = _requested_outputs(obj)
        columns, rows = ctx.validate(obj, "v2")
        preds = await ctx.score(columns, rows, want_proba=requested is None or "predict_proba" in requested,
                                client=scope.get("client"))
        answer = preds.encode("v2")
        if requested is not None:
            answer["outputs"] = [o for o in answer["outputs"] if o["name"] in requested]
        out: dict[str, Any] = {"model_name": config.name, "model_version": str(config.revision)}
        if isinstance(obj.get("id"), str):
            out["id"] = obj["id"]
        out.update(answer)
        return 200, out

    def _check_v2_model(name: Any, version: Any) -> None:
        if name != config.name:
            raise HTTPProblem(404, f"model {name!r} is not served here; this server serves {config.name!r}")
        if version is not None and version != str(config.revision):
            raise HTTPProblem(404, f"version {version!r} of {config.name!r} is not served here; "
                                   f"this server serves version {config.revision}")

    def _requested_outputs(obj: dict[str, Any]) -> set[str] | None:
        outputs = obj.get("outputs")
        if outputs is None:
            return None
        known = {"predict"} | ({"predict_proba"} if ctx.scorer.has_proba else set())
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                    for o in outputs):
            raise HTTPProblem(400, "V2 'outputs' must be a list of {\"name\": ...}; "
                                   f"this model has outputs {sorted(known)}")
        names = {o["name"] for o in outputs}
        unknown = sorted(names - known)
        if unknown:
            raise HTTPProblem(400, f"V2 output(s) {unknown} do not exist; this model has outputs {sorted(known)}")
        return names

    routes: list[tuple[str, str, Callable[..., Awaitable[tuple[int, Any]]]]] = [
        ("/predict", "deploykit", predict),
        ("/invocations", "mlflow", invocations),
        ("/ml/v4/deployments/{deployment_id}/predictions", "watson", watson),
        ("/v2/models/{model_name}/infer", "v2", v2_infer),
        ("/v2/models/{model_name}/versions/{version}/infer", "v2", v2_infer),
    ]
    for path, protocol, handler in routes:
        app.router.routes.append(Route(path, _Endpoint(ctx, protocol, handler), methods=["POST"]))

    # Metadata and health (not on the hot path: ordinary FastAPI routes) --------------------------
    def v2_error(p: HTTPProblem) -> Response:
        return Response(_dumps(_err_v2(p)), status_code=p.status, media_type=_JSON,
                        headers={"WWW-Authenticate": "Bearer"} if p.status == 401 else None)

    def v2_guard(request: Request, name: str, version: str | None = None) -> Response | None:
        try:
            ctx.check_auth(_headers(request.scope))
            _check_v2_model(name, version)
        except HTTPProblem as p:
            return v2_error(p)
        return None

    datatypes = {"integer": "INT64", "float": "FP64", "boolean": "BOOL"}
    label_type = _label_datatype(ctx)
    model_meta = {
        "name": config.name, "versions": [str(config.revision)], "platform": artifact.framework,
        "inputs": [{"name": c.name, "datatype": datatypes.get(c.type, "BYTES"), "shape": [-1, 1]}
                   for c in schema.columns],
        "outputs": [{"name": "predict", "datatype": label_type, "shape": [-1]}]
        + ([{"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(classes)]}]
           if classes and ctx.scorer.has_proba else []),
    }

    @app.get("/health", summary="Liveness, and the model this server serves")
    async def health() -> Response:
        return Response(_dumps({"status": "ok", "name": config.name, "revision": config.revision,
                                "model_sha256": artifact.sha256, "pid": os.getpid(),
                                "scored": {"requests": ctx.batcher.requests,
                                           "predict_calls": ctx.batcher.batches}}), media_type=_JSON)

    @app.get("/v2/health/live", summary="V2 liveness")
    async def v2_live() -> Response:
        return Response(b'{"live":true}', media_type=_JSON)

    @app.get("/v2/health/ready", summary="V2 readiness (the model is loaded before the server listens)")
    async def v2_ready() -> Response:
        return Response(b'{"ready":true}', media_type=_JSON)

    @app.get("/v2", summary="V2 server metadata")
    async def v2_server() -> Response:
        from deploykit import __version__

        return Response(_dumps({"name": "deploykit", "version": __version__, "extensions": []}), media_type=_JSON)

    @app.get("/v2/models/{model_name}", summary="V2 model metadata")
    async def v2_model(request: Request, model_name: str) -> Response:
        return v2_guard(request, model_name) or Response(_dumps(model_meta), media_type=_JSON)

    @app.get("/v2/models/{model_name}/versions/{version}", summary="V2 model metadata of one version")
    async def v2_model_version(request: Request, model_name: str, version: str) -> Response:
        return v2_guard(request, model_name, version) or Response(_dumps(model_meta), media_type=_JSON)

    @app.get("/v2/models/{model_name}/ready", summary="V2 model readiness")
    async def v2_model_ready(request: Request, model_name: str) -> Response:
        return v2_guard(request, model_name) or Response(_dumps({"name": model_name, "ready": True}),
                                                         media_type=_JSON)

    @app.get("/v2/models/{model_name}/versions/{version}/ready", summary="V2 model readiness of one version")
    async def v2_model_version_ready(request: Request, model_name: str, version: str) -> Response:
        return v2_guard(request, model_name, version) or Response(
            _dumps({"name": model_name, "ready": True}), media_type=_JSON)

    spec = _openapi(app, schema, ctx)
    app.openapi = lambda: spec  # type: ignore[method-assign]
    return app


def _label_datatype(ctx: _Context) -> str:
    classes = ctx.artifact.classes
    if classes:
        from deploykit.payload.v2 import label_datatype

        return label_datatype(classes)
    return "FP64"


def _warm_up(ctx: _Context) -> None:
    """Score the example row once, so the first request does not pay for lazy set-up."""
    example = ctx.schema.example
    if not example or not ctx.schema.columns:
        return
    try:
        columns, rows = ctx.validate([example], None)
        frame = _frame(columns, rows)
        ctx.scorer.check_shortcut(frame)
        ctx.scorer(frame, True)
    except Exception as exc:  # a server without a warm-up still serves; say why
        log.warning("deploykit server: the example row did not score at start-up (%s)", exc)


# -- OpenAPI ----------------------------------------------------------------------------------

def _openapi(app: FastAPI, schema: Any, ctx: _Context) -> dict[str, Any]:
    """The OpenAPI document: FastAPI's for the GET routes plus the hand-written scoring routes."""
    example = schema.example

    def doc(path: str, summary: str, body: dict[str, Any], ok: dict[str, Any], error: dict[str, Any],
            params: dict[str, dict[str, Any]] | None = None) -> APIRoute:
        async def endpoint() -> None:
            return None

        extra = dict(body)
        if params:
            extra["parameters"] = [{"name": name, "in": "path", "required": True, "schema": param_schema}
                                   for name, param_schema in params.items()]
        responses: dict[int | str, dict[str, Any]] = {
            200: {"description": "Predictions", "content": {_JSON: {"schema": ok}}}}
        for status, text in ((400, "Malformed payload"), (401, "Missing or wrong bearer token"),
                             (404, "Unknown model"), (413, "Body over local.max_body_bytes"),
                             (415, "Unsupported Content-Type"), (422, "Payload does not fit the schema")):
            responses[status] = {"description": text, "content": {_JSON: {"schema": error}}}
        return APIRoute(path, endpoint, methods=["POST"], summary=summary, openapi_extra=extra,
                        responses=responses)

    error_dk = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"},
                                                                        "problems": {"type": "array"}}}
    error_mlflow = {"type": "object", "required": ["error_code", "message"],
                    "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}}}
    error_watson = {"type": "object", "required": ["errors", "trace", "status_code"],
                    "properties": {"errors": {"type": "array"}, "trace": {"type": "string"},
                                   "status_code": {"type": "integer"}}}
    docs = [
        doc("/predict", "Score one record, a list of records, or any payload format deploykit knows (JSON or CSV)",
            _openapi_body(schema, example, csv=True),
            {"type": "object", "required": ["predictions"], "properties": {
                "predictions": {"type": "array"}, "probabilities": {"type": "array"},
                "classes": {"type": ["array", "null"]}}}, error_dk),
        doc("/invocations", "MLflow scoring protocol: dataframe_split, dataframe_records, instances, inputs, or CSV",
            _openapi_body(schema, example, wrap="mlflow", csv=True),
            {"type": "object", "required": ["predictions"], "properties": {"predictions": {}}}, error_mlflow),
        doc("/ml/v4/deployments/{deployment_id}/predictions", "Watson ML scoring protocol: input_data fields/values",
            _openapi_body(schema, example, wrap="input_data"),
            {"type": "object", "required": ["predictions"], "properties": {"predictions": {"type": "array"}}},
            error_watson, {"deployment_id": {"type": "string"}}),
        doc("/v2/models/{model_name}/infer", "Open Inference Protocol V2 inference (JSON or binary tensors)",
            _openapi_body(schema, example, wrap="v2"),
            {"type": "object", "required": ["model_name", "outputs"], "properties": {
                "model_name": {"type": "string"}, "outputs": {"type": "array"}}}, error_dk,
            {"model_name": {"type": "string", "enum": [ctx.config.name]}}),
    ]
    spec = get_openapi(title=app.title, version=app.version, description=app.description,
                       routes=[*app.routes, *docs])
    served = {"model_name": ctx.config.name, "version": str(ctx.config.revision)}
    for operations in spec["paths"].values():  # one model, one version: say which
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param.get("in") == "path" and param["name"] in served:
                    param["schema"] = {"type": "string", "enum": [served[param["name"]]]}
    return spec


def _openapi_body(schema: Any, example: dict[str, Any], wrap: str | None = None, csv: bool = False) -> dict[str, Any]:
    """The request body in the OpenAPI docs, pre-filled with the artifact's example row."""
    types = {"integer": {"type": "integer"}, "float": {"type": "number"}, "string": {"type": "string"},
             "boolean": {"type": "boolean"}, "datetime": {"type": "string", "format": "date-time"}, "any": {}}
    props = {c.name: ({"anyOf": [types[c.type], {"type": "null"}]} if c.nullable else types[c.type])
             for c in schema.columns}
    record = {"type": "object", "properties": props, "required": schema.names,
              "additionalProperties": bool(schema.allow_extra_columns)}
    rows = [example] if example else [{}]
    if wrap is None:
        body_schema: dict[str, Any] = {"anyOf": [record, {"type": "array", "items": record, "minItems": 1}]}
        ex: Any = rows
    elif wrap == "mlflow":
        body_schema = {"type": "object", "properties": {"dataframe_records": {"type": "array", "items": record}},
                       "required": ["dataframe_records"]}
        ex = {"dataframe_records": rows}
    elif wrap == "input_data":
        body_schema = {"type": "object", "required": ["input_data"], "properties": {"input_data": {
            "type": "array", "items": {"type": "object", "required": ["values"],
                                       "properties": {"fields": {"type": "array", "items": {"type": "string"}},
                                                      "values": {"type": "array", "items": {"type": "array"}}}}}}}
        ex = payload.encode(rows, "input_data") if example else {"input_data": [{"fields": [], "values": []}]}
    else:
        datatypes = ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32",
                     "FP64", "BYTES"]
        body_schema = {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["name", "shape", "datatype", "data"],
                "properties": {"name": {"type": "string", "enum": schema.names} if schema.names else {"type": "string"},
                               "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                               "datatype": {"type": "string", "enum": datatypes}, "data": {"type": "array"}}}},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                   "properties": {"name": {"type": "string"}}}}}}
        ex = payload.encode(rows, "v2") if example else {"inputs": []}
    content: dict[str, Any] = {_JSON: {"schema": body_schema, "example": ex}}
    if csv:
        header = ",".join(schema.names)
        line = ",".join("" if example.get(n) is None else str(example.get(n)) for n in schema.names)
        content["text/csv"] = {"schema": {"type": "string"}, "example": f"{header}\n{line}\n"}
    return {"requestBody": {"required": True, "content": content}}
