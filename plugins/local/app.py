"""The local server's app: one loaded model, every protocol deploykit speaks, micro-batched.

Routes (one module each under ``routes/``; a scoring script's in ``routes/script``): ``/health``; ``POST /predict`` (any payload
format, deploykit's response shape); ``POST /invocations``, ``GET /ping``, ``GET /version``
(MLflow); ``/v2/...`` (Open Inference Protocol: health, metadata, the model index, ``infer``
with JSON or binary tensors);
``POST /ml/v4/deployments/{id}/predictions`` (Watson). Each answers, errors included, in its
own protocol's shape, taken from ``deploykit.payload``. Bad input is a 4xx naming the column,
the value and the fix; never a 500, never a silent cast.

Everything per model is prepared once in ``create_app``: the schema check, the codecs (plugin
formats included), the OpenAPI document (``openapi``) and the scorer (warmed up on the example
row). The scoring routes are plain ASGI handlers (``asgi``), and concurrent requests are
gathered into one ``predict`` call by the batcher (``batcher``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from deploykit.artifact import Artifact
from deploykit_plugins.local.asgi import HTTPProblem, RouteContext
from deploykit_plugins.local.batcher import Batcher, frame_of
from deploykit_plugins.local.settings import LocalSettings

__all__ = ["Batcher", "HTTPProblem", "ServerConfig", "create_app"]

log = logging.getLogger("deploykit.server")


def _default(name: str) -> Any:
    return LocalSettings.model_fields[name].default


@dataclass
class ServerConfig:
    """How the app serves: the name and revision it reports, and the ``LocalSettings`` knobs the
    routes read (auth token, body size limit, extra columns, micro-batching), with the same defaults."""

    name: str = "model"
    revision: int = 1
    token: str | None = None
    max_body_bytes: int = _default("max_body_bytes")
    allow_extra_columns: bool | None = _default("allow_extra_columns")
    batch_wait_ms: float = _default("batch_wait_ms")
    max_batch_rows: int = _default("max_batch_rows")
    protect_docs: bool = True
    metrics: bool = True
    protect_metrics: bool = True
    inputs_dir: str | None = None
    inputs_max_bytes: int = _default("log_inputs_max_bytes")
    metrics_dir: str | None = None  # set by the server with workers > 1: every process's metrics add up
    jobs_dir: str | None = None  # async jobs (``jobs``) are served when set
    job_workers: int = _default("job_workers")
    job_retention_s: float = _default("job_retention_s")
    max_job_bytes: int = _default("max_job_bytes")
    job_webhook: str | None = None

    @classmethod
    def from_settings(cls, settings: LocalSettings, name: str = "model", revision: int = 1,
                      state_dir: str | None = None) -> ServerConfig:
        """The app's part of ``settings``; logged inputs go to ``local.log_inputs_dir``, else
        ``<state_dir>/input-logs/<name>`` (``state_dir``: the project's ``.deploykit``, default ``./.deploykit``),
        async jobs to ``<state_dir>/jobs/<name>`` (unless ``local.job_workers`` is 0)."""
        inputs = None
        if settings.log_inputs:
            inputs = settings.log_inputs_dir or str(Path(state_dir or ".deploykit") / "input-logs" / name)
        jobs = str(Path(state_dir or ".deploykit") / "jobs" / name) if settings.job_workers else None
        return cls(name, revision, settings.token_value, settings.max_body_bytes, settings.allow_extra_columns,
                   settings.batch_wait_ms, settings.max_batch_rows, settings.protect_docs is not False,
                   settings.metrics, settings.protect_metrics is not False,
                   inputs, settings.log_inputs_max_bytes, jobs_dir=jobs, job_workers=settings.job_workers,
                   job_retention_s=settings.job_retention_s, max_job_bytes=settings.max_job_bytes,
                   job_webhook=settings.job_webhook)


def create_app(artifact: Artifact, config: ServerConfig | None = None) -> FastAPI:
    """Build the app for ``artifact``; the model, schema and codecs are prepared here, once."""
    from deploykit.plugins import load_formats
    from deploykit_plugins.local import openapi, routes

    load_formats()
    config = config or ServerConfig()
    ctx = RouteContext(artifact, config)
    script = artifact.flavor == "script"
    if script:  # a scoring script's example is the request its author wrote, shown as it is (never warmed up)
        import orjson

        ctx.example_body = orjson.dumps(ctx.schema.example or {"column": "value"}).decode()
    elif ctx.schema.columns:  # docs and error messages show a row built from the schema, never the training row
        import dataclasses

        import orjson

        ctx.schema = dataclasses.replace(ctx.schema, example=openapi.example_row(ctx.schema))
        ctx.example_body = orjson.dumps([ctx.schema.example]).decode()
    if not script:
        _warm_up(ctx)
    app = FastAPI(title=f"deploykit: {config.name}", version=str(config.revision),
                  description=f"Model {config.name} revision {config.revision} "
                              f"({artifact.framework} {artifact.framework_version or ''}, "
                              f"sha256 {artifact.sha256[:12]})")
    app.state.batcher = ctx.batcher
    app.state.scorer = ctx.scorer
    routes.mount(app, ctx)
    _watch(app, ctx)
    if config.jobs_dir and config.job_workers:
        from deploykit_plugins.local.routes import jobs

        jobs.mount(app, ctx)
    spec = openapi.document(app, ctx.schema, ctx)
    app.openapi = lambda: spec  # type: ignore[method-assign]
    if config.token and config.protect_docs:
        app.add_middleware(_DocsAuth, ctx=ctx, paths=(app.docs_url, app.redoc_url, app.openapi_url,
                                                      app.swagger_ui_oauth2_redirect_url))
    return app


class _DocsAuth:
    """The bearer token on the documentation routes too: the OpenAPI document describes the model's
    columns, which a token-protected deployment does not show to anyone."""

    def __init__(self, app: Any, ctx: RouteContext, paths: tuple[str | None, ...]) -> None:
        self.app, self.ctx = app, ctx
        self.paths = {p for p in paths if p}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") in self.paths:
            from deploykit_plugins.local.asgi import dumps, headers_of, respond

            try:
                self.ctx.check_auth(headers_of(scope))
            except HTTPProblem as problem:
                await respond(send, problem.status, dumps({"error": problem.message}),
                              extra=[(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


def _watch(app: FastAPI, ctx: RouteContext) -> None:
    """Metrics (``metrics``) and logged inputs (``inputlog``), as the config asks; both observe each
    scored request after it was scored, on its way out."""
    config = ctx.config
    metrics = None
    if config.metrics:
        from deploykit_plugins.local.metrics import install

        metrics = install(app, ctx, protect=bool(config.token) and config.protect_metrics)
    inputs = None
    if config.inputs_dir:
        from deploykit_plugins.local.inputlog import InputLog

        inputs = InputLog(Path(config.inputs_dir), config.revision, config.inputs_max_bytes, metrics)
    app.state.metrics, app.state.input_log = metrics, inputs
    if metrics is None and inputs is None:
        return
    score = ctx.score

    async def watched(columns: dict[str, Any], rows: int, want_proba: bool, client: Any = None) -> Any:
        preds = await score(columns, rows, want_proba, client)
        if metrics is not None:
            metrics.observe_predictions(preds)
        if inputs is not None:
            inputs.record(columns, rows, preds)
        return preds

    ctx.score = watched  # type: ignore[method-assign]


def _warm_up(ctx: RouteContext) -> None:
    """Score the example row once, so the first request does not pay for lazy set-up."""
    example = ctx.artifact.schema.example
    if not example or not ctx.schema.columns:
        return
    try:
        columns, rows = ctx.validate([example], None)
        frame = frame_of(columns, rows)
        ctx.scorer.check_shortcut(frame)
        ctx.scorer(frame, True)
    except Exception as exc:  # a server without a warm-up still serves; say why
        log.warning("deploykit server: the example row did not score at start-up (%s)", exc)
