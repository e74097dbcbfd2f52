"""Batch scoring on Watson: a batch deployment of the recorded model revision and one job per request.

    from deploykit_plugins.watsonml.batch import score_batch
    predictions = score_batch("bank-model", "rows.csv")         # or a DataFrame, records, any payload

    python -m deploykit_plugins.watsonml.batch bank-model rows.csv --json

The first call creates a batch deployment (hardware spec ``watsonml.batch_hardware_spec``) of
the same model asset and revision the online deployment serves, and records its id as
``batch_deployment_uid`` in metadata.yaml; later calls reuse it, switching it to the current
revision when an update or rollback moved on. Each job sends the rows inline
(``scoring.input_data``), is polled with back-off until ``completed`` (or ``failed``/``canceled``,
which raise ScoringError with Watson's reason), read, and then removed from Watson.
``deploykit delete`` removes the batch deployment with the online one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.errors import DeployKitError, DeploymentError, ScoringError
from deploykit.target import wait_until

if TYPE_CHECKING:
    import pandas as pd

    from deploykit.deployment import Deployment
    from deploykit.payload import Predictions
    from deploykit_plugins.watsonml.target import WatsonTarget

__all__ = ["ensure_batch_deployment", "main", "run_job", "score_batch", "score_on_batch_deployment"]

_JOB_DONE = {"completed"}
_JOB_FAILED = {"failed", "canceled", "cancelled"}


def ensure_batch_deployment(target: WatsonTarget, current: Deployment, timeout: float) -> str:
    """The id of a ready batch deployment of ``current``'s model revision: reused, switched or created."""
    s = target.session
    model_uid, rev = current.ids.get("model_uid"), current.ids.get("model_rev")
    if not model_uid or not rev:
        raise DeploymentError(f"the record of {current.name!r} has no model_uid/model_rev (ids: {current.ids}); "
                              "deploy the model again before batch scoring")
    target._check_space(current)
    batch_id = current.ids.get("batch_deployment_uid")
    details = s.call(f"reading batch deployment {batch_id}", lambda c: c.deployments.get_details(batch_id),
                     missing_ok=True) if batch_id else None
    if details is None:
        def create(c: Any) -> dict[str, Any]:
            names = c.deployments.ConfigurationMetaNames
            meta = {names.NAME: f"{current.name}-batch", names.BATCH: {},
                    names.HARDWARE_SPEC: {"name": target.settings.batch_hardware_spec},
                    names.DESCRIPTION: "batch scoring, deployed by deploykit"}
            return c.deployments.create(model_uid, meta, rev_id=str(rev), background_mode=True)  # type: ignore[no-any-return]

        details = s.call(f"creating the batch deployment of {current.name!r}", create, idempotent=False)
        batch_id = details["metadata"]["id"]
        target.context.progress(f"created batch deployment {batch_id} for {current.name!r}")
    else:
        asset = details["entity"].get("asset") or {}
        if (asset.get("id"), str(asset.get("rev"))) != (model_uid, str(rev)):
            target._patch_asset(f"{current.name}-batch", str(batch_id), str(model_uid), str(rev))
    assert batch_id is not None
    probe = current.__class__(name=f"{current.name}-batch", target="watsonml",
                              ids={"deployment_uid": batch_id, "model_uid": model_uid, "model_rev": str(rev),
                                   "space_id": s.space_id})
    target.wait_ready(probe, timeout)
    return str(batch_id)


def run_job(target: WatsonTarget, deployment: Deployment, frame: pd.DataFrame, timeout: float) -> Predictions:
    """Create a job scoring ``frame`` on the record's batch deployment, wait for it, return its Predictions."""
    from deploykit.payload import Predictions, encode

    s = target.session
    batch_id = deployment.ids.get("batch_deployment_uid")
    if not batch_id:
        raise DeploymentError(f"{deployment.name!r} has no batch deployment yet; call ensure_batch_deployment first")
    body = encode(frame, "input_data")

    def create(c: Any) -> Any:
        meta = {c.deployments.ScoringMetaNames.INPUT_DATA: body["input_data"]}
        return c.deployments.create_job(batch_id, meta, _asset_id=deployment.ids.get("model_uid"))

    job = s.call(f"starting a batch job of {len(frame)} row(s) on {deployment.name!r}", create,
                 idempotent=False, error=ScoringError)
    job_id = job["metadata"]["id"] if isinstance(job, dict) else str(job)

    def check() -> dict[str, Any] | None:
        details: dict[str, Any] = s.call(f"reading batch job {job_id}", lambda c: c.deployments.get_job_details(job_id),
                         error=ScoringError)
        scoring = (details.get("entity") or {}).get("scoring") or {}
        status = scoring.get("status") or {}
        state = status.get("state", "")
        target.context.progress(f"Watson batch job {job_id}: {state}")
        if state in _JOB_DONE:
            return details
        if state in _JOB_FAILED:
            errors = (status.get("failure") or {}).get("errors") or []
            reason = "; ".join(str(e.get("message") or e) for e in errors if isinstance(e, dict)) or "no reason given"
            raise ScoringError(f"Watson batch job {job_id} on {deployment.name!r} ended {state}: {reason}; "
                               "check the rows against the model's columns and run it again")
        return None

    try:
        details = wait_until(check, timeout=timeout, what=f"Watson batch job {job_id}", progress=target.context.progress)
    finally:
        try:
            s.call(f"removing batch job {job_id}", lambda c: c.deployments.delete_job(job_id, hard_delete=True),
                   missing_ok=True, error=ScoringError)
        except DeployKitError as exc:
            target.context.progress(f"batch job {job_id} stays on Watson: {exc}")
    predictions = details["entity"]["scoring"].get("predictions")
    if not predictions:
        raise ScoringError(f"Watson batch job {job_id} completed without predictions; run it again")
    result = Predictions.decode({"predictions": predictions})
    if result.probabilities is not None and result.classes is None:
        result.classes = deployment.extra.get("classes")
    return result


def score_on_batch_deployment(target: WatsonTarget, deployment: Deployment, frame: pd.DataFrame,
                              timeout: float) -> Predictions:
    """``WatsonTarget.score_batch``: ensure the batch deployment (its id goes into
    ``deployment.ids["batch_deployment_uid"]`` for the caller to record), then run one job."""
    deployment.ids["batch_deployment_uid"] = ensure_batch_deployment(target, deployment, timeout)
    return run_job(target, deployment, frame, timeout)


def score_batch(name: str, data: Any, *, credentials: str | Path | None = None, metadata: str | Path | None = None,
                timeout: float = 600.0, progress: Callable[[str], None] | None = None) -> Predictions:
    """Score ``data`` through a Watson batch job on the deployment ``name``; returns Predictions.

    ``data`` is anything ``deploykit.score`` accepts: a DataFrame, records, any wire format, or
    the path of a JSON or CSV file. The batch deployment is created on first use and its id
    recorded in metadata.yaml (also when the job itself fails, so ``delete`` removes it).
    """
    from deploykit import payload
    from deploykit.lifecycle import open_deployment, read_payload, save_ids

    current, target = open_deployment(name, target="watsonml", credentials=credentials, metadata=metadata,
                                      timeout=timeout, progress=progress)
    frame = payload.decode(read_payload(data), current.columns or None)
    recorded = current.ids.get("batch_deployment_uid")
    try:
        return target.score_batch(current, frame, timeout)  # type: ignore[attr-defined,no-any-return]
    finally:
        if current.ids.get("batch_deployment_uid") != recorded:
            save_ids(current, metadata=metadata)


def main(argv: list[str] | None = None) -> int:
    """``python -m deploykit_plugins.watsonml.batch NAME DATA``: print the predictions; exit 1 on failure."""
    parser = argparse.ArgumentParser(description="Score a JSON or CSV file through a Watson batch job.")
    parser.add_argument("name", help="deployment name in metadata.yaml")
    parser.add_argument("data", help="JSON or CSV file with the rows")
    parser.add_argument("--credentials", default=None)
    parser.add_argument("--metadata", default=None)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        predictions = score_batch(args.name, Path(args.data), credentials=args.credentials, metadata=args.metadata,
                                  timeout=args.timeout)
    except DeployKitError as exc:
        if args.json:
            print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
        else:
            print(f"batch scoring failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(predictions.to_dict()))
    else:
        for row in predictions.to_records():
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
