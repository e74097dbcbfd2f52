"""Async jobs: ``POST /jobs``, ``PUT /jobs/{id}`` (idempotent), ``GET /jobs``, ``GET /jobs/{id}``,
``GET /jobs/{id}/result`` and ``DELETE /jobs/{id}`` (see ``deploykit_plugins.local.jobs``).

An input is a multipart upload (one file field, optionally a ``webhook`` field) or a raw body
whose Content-Type names its format (``text/csv``, ``application/vnd.apache.parquet`` or
``application/x-parquet``, ``application/x-ndjson`` or ``application/jsonlines``; a
``?webhook=URL`` query parameter). The upload is streamed to disk, never past
``max_job_bytes``. The same bearer token as the scoring routes; answers are JSON
``{"error": ...}`` on failure.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response

from deploykit_plugins.local.asgi import JSON, HTTPProblem, dumps, headers_of
from deploykit_plugins.local.jobs import (
    FINISHED,
    FORMATS,
    MEDIA_TYPES,
    JobService,
    Submission,
    check_id,
    format_of_name,
)

if TYPE_CHECKING:
    from deploykit_plugins.local.asgi import RouteContext

__all__ = ["PATH", "mount"]

PATH = "/jobs"
_MULTIPART = "multipart/form-data"
_ACCEPTED = ", ".join([_MULTIPART, *MEDIA_TYPES])
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status_code=status, media_type=JSON, headers=headers)


def _problem(code: int, message: str, **extra: Any) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
    return _answer(code, {"error": message, **extra}, headers)


def mount(app: FastAPI, ctx: RouteContext) -> JobService:
    """Add the job routes and start the job service of ``ctx``'s artifact (``app.state.jobs``)."""
    config = ctx.config
    assert config.jobs_dir is not None
    metrics = getattr(app.state, "metrics", None)
    service = JobService(ctx.artifact, Path(config.jobs_dir), workers=config.job_workers,
                         retention_s=config.job_retention_s, webhook=config.job_webhook, revision=config.revision,
                         on_finished=metrics.observe_job if metrics is not None else None)
    if metrics is not None:
        metrics.job_counts = service.store.counts
    app.state.jobs = service
    limit = config.max_job_bytes

    def guard(request: Request) -> Response | None:
        try:
            ctx.check_auth(headers_of(request.scope))
        except HTTPProblem as problem:
            return _problem(problem.status, problem.message)
        if service.refusal is not None:
            return _problem(400, service.refusal)
        return None

    def gone(row: dict[str, Any]) -> Response:
        return _problem(410, f"job {row['id']!r} expired at {service.document(row)['expires_at']} (finished jobs are "
                             f"kept {config.job_retention_s:g} s, local.job_retention_s); submit it again",
                        id=row["id"], status=row["status"], expired_at=service.document(row)["expires_at"])

    def unknown(job_id: str) -> Response:
        return _problem(404, f"no job {job_id[:128]!r} here; GET /jobs lists the jobs this deployment keeps")

    def located(status: int, row: dict[str, Any]) -> Response:
        return _answer(status, service.document(row), {"Location": f"{PATH}/{row['id']}"})

    async def accept(request: Request, job_id: str | None) -> Response:
        refused = guard(request)
        if refused is not None:
            return refused
        if job_id is not None:
            bad = check_id(job_id)
            if bad is not None:
                return _problem(400, bad)
        try:
            submission = await _receive(request, service, limit)
        except HTTPProblem as problem:
            return _problem(problem.status, problem.message)
        try:
            row, created = service.submit(submission, job_id)
        except ValueError as exc:
            return _problem(409, str(exc), id=job_id)
        if not created and service.expired(row):
            return gone(row)
        return located(202 if created else 200, row)

    @app.post(PATH, status_code=202, summary="Submit a file to score asynchronously (multipart or a raw body)")
    async def submit(request: Request) -> Response:
        return await accept(request, None)

    @app.put(PATH + "/{job_id}", status_code=202, summary="Submit under your own id: a retried submit never runs twice")
    async def submit_as(request: Request, job_id: str) -> Response:
        return await accept(request, job_id)

    @app.get(PATH, summary="The jobs this deployment keeps, newest first")
    async def jobs(request: Request) -> Response:
        refused = guard(request)
        if refused is not None:
            return refused
        rows = service.store.list()
        return _answer(200, {"jobs": [service.document(r) for r in rows if not service.expired(r)]})

    @app.get(PATH + "/{job_id}", summary="A job's status, timestamps, row counts and failure message")
    async def job(request: Request, job_id: str) -> Response:
        refused = guard(request)
        if refused is not None:
            return refused
        row = service.store.get(job_id)
        if row is None:
            return unknown(job_id)
        return gone(row) if service.expired(row) else _answer(200, service.document(row))

    @app.get(PATH + "/{job_id}/result", summary="The job's output file (409 until it succeeded)")
    async def result(request: Request, job_id: str) -> Response:
        refused = guard(request)
        if refused is not None:
            return refused
        row = service.store.get(job_id)
        if row is None:
            return unknown(job_id)
        if service.expired(row):
            return gone(row)
        if row["status"] != "succeeded":
            why = f" ({row['error']})" if row["error"] else ""
            wait = "ask again when it has succeeded" if row["status"] not in FINISHED else \
                "it has no result; submit the file again"
            return _problem(409, f"job {job_id!r} is {row['status']}{why}; {wait}", id=job_id, status=row["status"])
        path = service.store.folder(job_id) / str(row["output_name"])
        fmt = format_of_name(path.name)
        media = FORMATS[fmt][1] if fmt else "application/octet-stream"
        return FileResponse(path, media_type=media, filename=f"{job_id}-{path.name}")

    @app.delete(PATH + "/{job_id}", summary="Cancel a queued or running job, or remove a finished one")
    async def remove(request: Request, job_id: str) -> Response:
        refused = guard(request)
        if refused is not None:
            return refused
        row = service.store.get(job_id)
        if row is None:
            return unknown(job_id)
        if row["status"] in FINISHED:
            service.store.remove(job_id)
            return Response(status_code=204)
        import asyncio

        after = await asyncio.get_running_loop().run_in_executor(None, service.cancel, job_id)
        if after is None:
            return unknown(job_id)
        return _answer(202 if after["status"] == "running" else 200, service.document(after))

    service.start()
    return service


async def _limited(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPProblem(413, f"the job upload is over the limit of {limit} bytes (local.max_job_bytes); "
                                   "split the file, or raise local.max_job_bytes")
        yield chunk


async def _receive(request: Request, service: JobService, limit: int) -> Submission:
    """Stream the upload into a staged file of the store's root, with its sha256 and format."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise HTTPProblem(413, f"the job upload is {int(length)} bytes, over the limit of {limit} bytes "
                               "(local.max_job_bytes); split the file, or raise local.max_job_bytes")
    if ctype != _MULTIPART and ctype not in MEDIA_TYPES:
        raise HTTPProblem(415, f"Content-Type {ctype or '(none)'!r} is not a job input; send one of {_ACCEPTED}")
    root = service.store.root
    staged = root / f".upload-{uuid.uuid4().hex}"
    digest = hashlib.sha256()
    size = 0
    try:
        if ctype != _MULTIPART:
            with staged.open("wb") as out:
                async for chunk in _limited(request, limit):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            fmt: str | None = MEDIA_TYPES[ctype]
            name = "input" + FORMATS[fmt or "csv"][0]
            webhook = request.query_params.get("webhook")
        else:
            name, fmt, webhook, size = await _receive_multipart(request, staged, digest, limit, service.kind)
        if size == 0:
            raise HTTPProblem(400, "the job input is empty; send a file with a header line and rows")
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return Submission(staged, name, fmt, size, digest.hexdigest(), webhook or None)


async def _receive_multipart(request: Request, staged: Path, digest: Any, limit: int,
                             kind: str) -> tuple[str, str | None, str | None, int]:
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    raw = staged.with_name(staged.name + ".form")
    try:
        with raw.open("wb") as out:
            async for chunk in _limited(request, limit):
                out.write(chunk)

        async def body() -> AsyncGenerator[bytes, None]:
            with raw.open("rb") as fh:
                while block := fh.read(1 << 20):
                    yield block

        try:
            form = await MultiPartParser(request.headers, body(), max_files=1, max_fields=8).parse()
        except MultiPartException as exc:
            raise HTTPProblem(400, f"the multipart body could not be read ({exc}); send one file field "
                                   "(curl -F file=@rows.csv)") from None
        try:
            upload = next((v for _, v in form.multi_items() if isinstance(v, UploadFile)), None)
            if upload is None:
                raise HTTPProblem(400, "the multipart body holds no file; send one file field (curl -F file=@rows.csv)")
            webhook = form.get("webhook")
            part_type = (upload.content_type or "").split(";")[0].strip().lower()
            fmt = MEDIA_TYPES.get(part_type) or format_of_name(upload.filename or "")
            if fmt is None and kind == "model":
                raise HTTPProblem(415, f"the uploaded file {upload.filename!r} ({part_type or 'no type'}) is not CSV, "
                                       "Parquet or JSON Lines; name it .csv, .parquet or .jsonl, or send one of "
                                       f"{_ACCEPTED}")
            size = 0
            with staged.open("wb") as out:
                while block := await upload.read(1 << 20):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
            name = _SAFE_NAME.sub("_", Path(upload.filename or "").name).lstrip(".")
            if not name:
                name = "input" + (FORMATS[fmt][0] if fmt else "")
            return name, fmt, webhook if isinstance(webhook, str) else None, size
        finally:
            await form.close()
    finally:
        raw.unlink(missing_ok=True)
