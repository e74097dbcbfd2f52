"""MLflow's scoring server: ``POST /invocations`` (its four JSON formats with ``params``, CSV or
Parquet), and the probes its client and SageMaker's container contract use: ``GET /ping``
(200, empty body) and ``GET /version`` (the MLflow version that saved the model, else
deploykit's)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.routing import Route

from deploykit.errors import PayloadError
from deploykit.payload import Predictions, csv, mlflow, parquet
from deploykit_plugins.local.asgi import Endpoint, HTTPProblem, RouteContext
from deploykit_plugins.local.batcher import frame_of

__all__ = ["PATH", "mount"]

PATH = "/invocations"


def mount(app: FastAPI, ctx: RouteContext) -> None:
    """Add ``POST /invocations``, ``GET /ping`` and ``GET /version``."""
    facts = mlflow.model_facts(ctx.artifact.path) if ctx.artifact.path.is_dir() else mlflow.ModelFacts()
    pyfunc = ctx.artifact.flavor == "mlflow"  # params reach predict(); a bare estimator has none

    async def invocations(scope: dict[str, Any], headers: dict[bytes, bytes], body: bytes) -> tuple[int, Any]:
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        problem = mlflow.content_type_problem(content_type)
        if problem is not None:
            raise HTTPProblem(415, problem)
        params = None
        if content_type.split(";")[0].strip().lower() == parquet.MEDIA_TYPE:
            obj, fmt = body, "parquet"
        else:
            obj = ctx.parse(body, headers, allow_csv=True)
            try:
                fmt = "csv" if isinstance(obj, str) else mlflow.request_format(obj, ctx.example_body)
            except PayloadError as exc:
                raise HTTPProblem(400, str(exc)) from None
            if fmt != "csv":
                try:
                    params = mlflow.check_params(obj.get(mlflow.PARAMS_KEY), facts.params)
                except PayloadError as exc:
                    raise HTTPProblem(400, str(exc), code=mlflow.PARAMS_ERROR_CODE) from None
        try:
            columns, rows = ctx.validate(obj, fmt)
        except HTTPProblem as p:
            hint = csv.missing_header_hint(obj, ctx.schema.names) if fmt == "csv" and p.status == 422 else None
            if hint is None:
                raise
            raise HTTPProblem(p.status, f"{p.message}; {hint}", p.problems) from None
        if params and pyfunc:
            preds = _score_with_params(ctx, columns, rows, params)
        else:
            preds = await ctx.score(columns, rows, want_proba=False, client=scope.get("client"))
        return 200, preds.encode("mlflow")

    app.router.routes.append(Route(PATH, Endpoint(ctx, "mlflow", invocations), methods=["POST"]))

    @app.get("/ping", summary="Liveness for MLflow's client and SageMaker (200, empty body)")
    async def ping() -> Response:
        return Response(b"", status_code=200)

    from deploykit import __version__

    version = facts.mlflow_version or __version__

    @app.get("/version", summary="The MLflow version that saved the model (else deploykit's), as text")
    async def served_version() -> Response:
        return Response(version, media_type="text/plain")


def _score_with_params(ctx: RouteContext, columns: dict[str, Any], rows: int, params: dict[str, Any]) -> Predictions:
    """One ``predict(frame, params=...)`` call for this request alone: requests with params are
    never batched with others, whose params may differ."""
    try:
        labels = ctx.scorer.model.predict(frame_of(columns, rows), params=params)
    except Exception as exc:
        if type(exc).__name__ == "MlflowException":  # the model's own params check
            raise HTTPProblem(400, f"the model refused the params {params}: {exc}",
                              code=mlflow.PARAMS_ERROR_CODE) from None
        raise HTTPProblem(422, f"the model rejected the input: {type(exc).__name__}: {exc}; check the values "
                               "against the model's training data") from None
    if type(labels).__name__ == "DataFrame":  # a pyfunc model may answer with a table
        labels = labels.iloc[:, 0] if labels.shape[1] == 1 else labels.to_dict("records")
    preds = Predictions.from_model(labels)
    if len(preds) != rows:
        raise HTTPProblem(422, f"the model returned {len(preds)} predictions for {rows} rows")
    return preds
