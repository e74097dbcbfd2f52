"""Prometheus metrics of the local server: ``GET /metrics`` in the text exposition format.

Each app owns one ``prometheus_client.CollectorRegistry`` (never the global one), so several
apps in one process (tests, a replacement revision) keep separate counts. What is measured:

- ``deploykit_requests_total{route,protocol,status}`` and
  ``deploykit_request_duration_seconds{route,protocol}`` (a histogram), for every HTTP request;
  ``route`` is the route's template (``/v2/models/{model_name}/infer``), unknown paths are
  ``other``, so a scanner cannot blow up the label set;
- ``deploykit_predict_rows`` (a histogram): rows per ``predict`` call, i.e. the micro-batch size;
- ``deploykit_predictions_total{label}``: predicted labels (the 50 first distinct ones, the rest
  as ``__other__``);
- ``deploykit_schema_rejections_total{column}``: offending columns of 422 answers;
- ``deploykit_model_info{name,revision,sha256,framework}``;
- ``deploykit_jobs_queued`` and ``deploykit_jobs_running`` (read from the job store when scraped)
  and ``deploykit_jobs_total{status}`` (jobs finished: succeeded, failed, cancelled) when the
  server runs async jobs (``jobs``);
- ``deploykit_input_log_rows_total``, ``deploykit_input_log_failures_total`` and
  ``deploykit_input_log_dropped_total`` when inputs are logged (``inputlog``).

With ``workers`` > 1 the server gives every process one folder (``ServerConfig.metrics_dir``) and
prometheus_client's multiprocess mode keeps each process's values in memory-mapped files there,
so a scrape answered by any worker sums them all (the model info comes from the answering one).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from deploykit.payload import Predictions
    from deploykit_plugins.local.asgi import RouteContext

__all__ = ["PATH", "Metrics", "enable_multiprocess", "install"]

PATH = "/metrics"
_MAX_LABELS = 50
_MAX_PATHS = 1024
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
_PROTOCOLS = (("/predict", "deploykit"), ("/invocations", "mlflow"), ("/v2", "v2"), ("/ml/v4", "watson"),
              ("/jobs", "jobs"))


def _protocol(route: str) -> str:
    for prefix, name in _PROTOCOLS:
        if route.startswith(prefix):
            return name
    return "http"


class Metrics:
    """The server's metrics in their own registry, and the observations the app makes."""

    def __init__(self, name: str, revision: int, sha256: str, framework: str,
                 multiprocess_dir: str | None = None) -> None:
        if multiprocess_dir is not None:
            enable_multiprocess(multiprocess_dir)
        from prometheus_client import CollectorRegistry, Counter, Histogram, Info

        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        self._info_registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("deploykit_requests", "HTTP requests answered, by route template, protocol "
                                "and status", ["route", "protocol", "status"], registry=r)
        self.latency = Histogram("deploykit_request_duration_seconds", "Time from request to the last byte "
                                 "of the answer", ["route", "protocol"], buckets=_LATENCY_BUCKETS, registry=r)
        self.predict_rows = Histogram("deploykit_predict_rows", "Rows per predict call (the micro-batch size)",
                                      buckets=_ROW_BUCKETS, registry=r)
        self.predictions = Counter("deploykit_predictions", "Predicted labels", ["label"], registry=r)
        self.rejections = Counter("deploykit_schema_rejections", "Offending columns of requests answered 422",
                                  ["column"], registry=r)
        self.log_rows = Counter("deploykit_input_log_rows", "Scored rows written to the input log", registry=r)
        self.log_failures = Counter("deploykit_input_log_failures", "Input-log writes that failed (the "
                                    "rows are lost, the requests were answered)", registry=r)
        self.log_dropped = Counter("deploykit_input_log_dropped", "Rows not logged because the writer "
                                   "fell behind", registry=r)
        self.jobs = Counter("deploykit_jobs", "Async jobs finished, by status (succeeded, failed, cancelled)",
                            ["status"], registry=r)
        #: the job store's counts by status (set when the server runs jobs); the store is shared by
        #: every process, so the answering one reads it at scrape time (not a per-process gauge)
        self.job_counts: Callable[[], dict[str, int]] | None = None
        self._info_registry.register(_JobGauges(self))
        info = Info("deploykit_model", "The model this server serves", registry=self._info_registry)
        info.info({"name": name, "revision": str(revision), "sha256": sha256, "framework": framework})
        self._labels: set[str] = set()

    def observe_predictions(self, preds: Predictions) -> None:
        """Count the labels of one scored request."""
        counts: dict[str, int] = {}
        for label in preds.labels:
            text = str(label)
            if text not in self._labels:
                if len(self._labels) >= _MAX_LABELS:
                    text = "__other__"
                else:
                    self._labels.add(text)
            counts[text] = counts.get(text, 0) + 1
        for text, n in counts.items():
            self.predictions.labels(text).inc(n)

    def observe_rejection(self, problems: list[Any]) -> None:
        """Count the columns named by a 422's problems (once per column per request)."""
        for column in {str(p.get("column")) for p in problems if p.get("column") is not None}:
            self.rejections.labels(column).inc()

    def observe_job(self, status: str) -> None:
        """Count one finished job."""
        self.jobs.labels(status).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        from prometheus_client import CollectorRegistry, generate_latest


        if self.multiprocess_dir is None:
            return generate_latest(self.registry) + generate_latest(self._info_registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        every_process = CollectorRegistry()
        MultiProcessCollector(every_process, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(every_process) + generate_latest(self._info_registry)


class _JobGauges:
    """``deploykit_jobs_queued`` and ``deploykit_jobs_running``, read from the job store when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        source = self.metrics.job_counts
        if source is None:
            return
        counts = source()
        yield GaugeMetricFamily("deploykit_jobs_queued", "Async jobs waiting to run (the queue depth)",
                                value=counts.get("queued", 0))
        yield GaugeMetricFamily("deploykit_jobs_running", "Async jobs running now", value=counts.get("running", 0))


def enable_multiprocess(folder: str) -> None:
    """Keep metric values in memory-mapped files under ``folder`` (prometheus_client's multiprocess
    mode), for metrics made from now on in this process and the processes it forks."""
    from prometheus_client import values

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    # prometheus_client chooses its value class when first imported (it reads the variable then);
    # choose again, as its own tests do (``values.ValueClass``, stable since 0.4; setup.cfg pins >=0.17)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


class _Measure:
    """ASGI middleware: count and time every HTTP request by its route template and status."""

    def __init__(self, app: Any, fastapi: FastAPI, metrics: Metrics) -> None:
        self.app, self.fastapi, self.metrics = app, fastapi, metrics
        self._routes: dict[str, str] = {}

    def _route(self, scope: dict[str, Any]) -> str:
        path = str(scope.get("path", ""))
        known = self._routes.get(path)
        if known is not None:
            return known
        from starlette.routing import Match

        found = "other"
        for route in self.fastapi.router.routes:
            match, _ = route.matches({**scope, "type": "http"})
            if match is not Match.NONE:
                found = str(getattr(route, "path", "other"))
                break
        if len(self._routes) < _MAX_PATHS:
            self._routes[path] = found
        return found

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = self._route(scope)
            protocol = _protocol(route)
            self.metrics.requests.labels(route, protocol, str(status[0])).inc()
            self.metrics.latency.labels(route, protocol).observe(time.perf_counter() - started)


def install(app: FastAPI, ctx: RouteContext, protect: bool) -> Metrics:
    """Measure ``app``: the middleware, the predict-call and rejection observers, and ``GET /metrics``
    (behind the bearer token when ``protect`` and a token is set)."""
    from prometheus_client import CONTENT_TYPE_LATEST
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from deploykit_plugins.local.asgi import HTTPProblem, dumps, headers_of

    config, artifact = ctx.config, ctx.artifact
    metrics = Metrics(config.name, config.revision, artifact.sha256, artifact.framework, config.metrics_dir)
    batcher = ctx.batcher
    predict = batcher.scorer

    def measured_predict(frame: Any, want_proba: bool) -> Any:
        metrics.predict_rows.observe(len(frame))
        return predict(frame, want_proba)

    batcher.scorer = measured_predict
    validate = ctx.validate

    def measured_validate(obj: Any, fmt: str | None) -> tuple[dict[str, Any], int]:
        try:
            return validate(obj, fmt)
        except HTTPProblem as problem:
            if problem.status == 422:
                metrics.observe_rejection(list(problem.problems))
            raise

    ctx.validate = measured_validate  # type: ignore[method-assign]

    async def scrape(request: Request) -> Response:
        if protect:
            try:
                ctx.check_auth(headers_of(request.scope))
            except HTTPProblem as problem:
                return Response(dumps({"error": problem.message}), status_code=401, media_type="application/json",
                                headers={"WWW-Authenticate": "Bearer"})
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.router.routes.append(Route(PATH, scrape, methods=["GET"], include_in_schema=False))
    app.add_middleware(_Measure, fastapi=app, metrics=metrics)
    return metrics
