"""The routes of a scoring script (``deploykit.bundle``): ``POST /predict`` calls the script.

- sync: the request's JSON text is the script's ``data`` (a Neomaril body ``{"Input": {...}}``
  passes its ``Input`` object); the answer is the script's JSON, numpy values converted. A
  script that raises answers 422 (``ScriptFailure.bad_input``: ValueError, KeyError, TypeError,
  IndexError) or 500, with the script's message, and its traceback goes to the server log;
  the server keeps serving. Calls run one at a time on one worker thread (a script need not be
  thread-safe), off the event loop, so ``/health`` answers while a slow script runs.
- async: ``/predict`` is a 409 telling the client to submit a job (``POST /jobs``).
- ``/invocations``, the V2 ``infer`` routes and the Watson scoring route carry a model's table
  in a protocol of their own, which a script does not take: each is a 404 in its protocol's
  error shape saying to POST the script's JSON to ``/predict``. ``GET /ping`` answers 200.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.responses import Response
from starlette.routing import Route

from deploykit.bundle import ScriptFailure
from deploykit_plugins.local.asgi import JSON, Endpoint, HTTPProblem, Raw, RouteContext
from deploykit_plugins.local.routes import mlflow, records, v2, watson

__all__ = ["mount", "script_data"]

log = logging.getLogger("deploykit.server")


def script_data(body: bytes, obj: Any) -> str:
    """What the script gets as ``data``: the body's JSON text, or the ``Input`` object of a Neomaril body."""
    if isinstance(obj, dict) and set(obj) == {"Input"} and isinstance(obj["Input"], (dict, list)):
        return orjson.dumps(obj["Input"]).decode()
    return body.decode("utf-8")


def mount(app: FastAPI, ctx: RouteContext) -> None:
    """Add ``POST /predict`` (the script), the protocol routes' refusals and ``GET /ping``."""
    model = ctx.artifact.model.load()
    mode = model.mode
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deploykit-script")
    name = ctx.config.name

    async def predict(scope: dict[str, Any], headers: dict[bytes, bytes], body: bytes) -> tuple[int, Any]:
        if mode == "async":
            raise HTTPProblem(409, f"{name!r} is an async scoring script: it scores files, not requests; submit "
                                   f"the input file as a job (POST /jobs, or deploykit score {name} FILE --async)")
        obj = ctx.parse(body, headers, allow_csv=False)
        data = script_data(body, obj)
        try:
            answer = await asyncio.get_running_loop().run_in_executor(pool, model.score_sync, data)
        except ScriptFailure as failure:
            log.error("deploykit server: the scoring script raised on POST /predict: %s\n%s", failure.message,
                      failure.traceback.rstrip())
            if failure.bad_input:
                raise HTTPProblem(422, f"the scoring script rejected the input: {failure.message}") from None
            raise HTTPProblem(500, f"the scoring script failed: {failure.message}; the server log has the "
                                   "traceback") from None
        try:
            return 200, Raw(orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS),
                            JSON, [])
        except TypeError as exc:
            log.error("deploykit server: the scoring script's answer is not JSON: %s", exc)
            raise HTTPProblem(500, f"the scoring script returned something that is not JSON-able ({exc}); return "
                                   "a dict of strings, numbers, lists and dicts, or a JSON string") from None

    app.router.routes.append(Route(records.PATH, Endpoint(ctx, "deploykit", predict), methods=["POST"]))

    def refusal(protocol: str) -> Endpoint:
        async def refuse(scope: dict[str, Any], headers: dict[bytes, bytes], body: bytes) -> tuple[int, Any]:
            raise HTTPProblem(404, f"{name!r} serves a scoring script, which takes its own JSON at POST /predict; "
                                   f"{scope.get('path')} serves model files only: POST the script's input to /predict")

        return Endpoint(ctx, protocol, refuse)

    for path, protocol in ((mlflow.PATH, "mlflow"), (watson.PATH, "watson"), *((p, "v2") for p in v2.INFER_PATHS)):
        app.router.routes.append(Route(path, refusal(protocol), methods=["POST"]))

    @app.get("/ping", summary="Liveness (200, empty body)")
    async def ping() -> Response:
        return Response(b"", status_code=200)
