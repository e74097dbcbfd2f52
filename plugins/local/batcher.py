"""The micro-batcher: concurrent requests scored together in one ``predict`` call."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from deploykit.payload import Predictions

__all__ = ["Batcher", "ModelError", "PENALTY_WINDOWS", "frame_of"]


#: How long a client whose request the model rejected waits before its next request is scored,
#: in activity windows (3 predict durations each, at least 20 ms).
PENALTY_WINDOWS = 5


class ModelError(Exception):
    """The model raised while scoring rows that passed the schema check."""


@dataclass
class _Job:
    columns: dict[str, Any]
    rows: int
    want_proba: bool
    future: asyncio.Future[Predictions]
    client: Any = None
    alone: bool = False  # its client's last request was rejected by the model: never batch it with others


def _concat(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if all(type(p) is np.ndarray for p in parts):
        return np.concatenate(parts)
    return pd.concat([pd.Series(p, copy=False) for p in parts], ignore_index=True).array


def frame_of(columns: dict[str, Any], rows: int) -> pd.DataFrame:
    if not columns:
        return pd.DataFrame(index=range(rows))
    return pd.DataFrame(columns, copy=False)


class Batcher:
    """Scores concurrent requests together: adaptive micro-batching.

    Requests queue; one ``predict`` call takes every queued request (up to ``max_rows`` rows),
    after waiting at most ``wait_s`` for the clients that were active a moment ago (answered
    within the last few predict durations) to send their next request. Steady concurrent load
    so settles into full batches, while a lone client never waits. Each caller gets exactly its
    own rows back; if the model raises on a batch, the batch is split in halves (again and
    again) so only the requests the model rejects fail, each with the model's message. The
    client (connection) whose request was rejected is then scored on its own, and no sooner
    than ``PENALTY_WINDOWS`` activity windows (about 15 predict durations, at least 0.1 s) after
    its last rejection, until one of its requests scores again: a client that keeps sending
    rows the model rejects neither makes every batch it joins cost a bisection nor takes more
    than a small share of the model's time with its own failing calls (others being served).
    ``wait_s == 0`` turns batching off; a request of ``max_rows`` rows or more is scored on its own.

    The model runs on the event loop's own thread: on a small machine, handing each call to a
    worker thread costs more in GIL hand-offs (up to the 5 ms switch interval while the model
    holds the GIL) than it gains, and requests that arrive meanwhile simply join the next batch.
    """

    def __init__(self, scorer: Callable[[pd.DataFrame, bool], Predictions], wait_s: float,
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
        self.rejected: dict[Any, float] = {}  # client -> when the model last rejected its request
        self.window = 0.02  # how long an answered client counts as active: a few predict durations

    async def score(self, columns: dict[str, Any], rows: int, want_proba: bool,
                    client: Any = None) -> Predictions:
        """Score one request's validated columns; raises ModelError if the model rejects them.
        ``client`` (the connection, e.g. the ASGI scope's ``client``) lets the batcher learn how
        many clients are active."""
        loop = asyncio.get_running_loop()
        if self.wait_s <= 0 or rows >= self.max_rows or \
                (not self.running and self._expected(loop.time()) <= 1 and client in self.recent):
            # Batching off, a request that fills a batch, or the only client of late: score now.
            self.requests += 1
            try:
                preds = self._score_alone(columns, rows, want_proba)
            except ModelError:
                self._rejected(client, loop.time())
                raise
            finally:
                if client is not None:
                    self.recent[client] = loop.time()
            self.rejected.pop(client, None)
            return preds
        rejected_at = self.rejected.get(client) if client is not None else None
        if rejected_at is not None:
            delay = rejected_at + PENALTY_WINDOWS * self.window - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        # Else queue, even when idle: the batch is taken by a task that runs after every request
        # that arrived together with this one has been parsed and queued too.
        job = _Job(columns, rows, want_proba, loop.create_future(), client, client in self.rejected)
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

    def _rejected(self, client: Any, now: float) -> None:
        if client is None:
            return
        if len(self.rejected) > 1024:  # connections come and go: forget the ones quiet for a minute
            self.rejected = {c: t for c, t in self.rejected.items() if t >= now - 60}
        self.rejected[client] = now

    def _score_alone(self, columns: dict[str, Any], rows: int, want_proba: bool) -> Predictions:
        self.batches += 1  # every predict call, bisection steps included
        try:
            preds = self.scorer(frame_of(columns, rows), want_proba)
        except Exception as exc:
            raise ModelError(f"{type(exc).__name__}: {exc}") from exc
        if len(preds) != rows:
            raise ModelError(f"the model returned {len(preds)} predictions for {rows} rows")
        return preds

    def _score_batch(self, batch: list[_Job]) -> Predictions:
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
                self.requests += len(batch)
                started = loop.time()
                self._run(batch)
                self.window = max(0.02, 3 * (loop.time() - started))
                await asyncio.sleep(0)  # let the callers answer, and new requests in, before the next batch
        finally:
            self.running = False

    def _take(self) -> list[_Job]:
        """The next batch: queued requests in order, up to max_rows rows, with the first one's
        columns (always the case with a schema; without one, requests may name other columns).
        A request of a client the model rejected of late is a batch of its own."""
        first = self.queue.popleft()
        batch, rows, names, skipped = [first], first.rows, list(first.columns), []
        while not first.alone and self.queue and rows + self.queue[0].rows <= self.max_rows:
            job = self.queue.popleft()
            if list(job.columns) == names and not job.alone:
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
        except ModelError as exc:
            if len(batch) == 1:
                self._rejected(batch[0].client, asyncio.get_running_loop().time())
                _settle(batch[0].future, exc=exc)
                return
            # Bisect to isolate the request(s) the model rejects: one poisoned request among n costs
            # about 2*log2(n) predict calls, not n, so the others' throughput barely moves.
            half = len(batch) // 2
            self._run(batch[:half])
            self._run(batch[half:])
            return
        except BaseException as exc:  # never leave a caller waiting
            for job in batch:
                _settle(job.future, exc=exc if isinstance(exc, Exception) else ModelError(repr(exc)))
            raise
        start = 0
        for job in batch:
            if job.alone:
                self.rejected.pop(job.client, None)
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
