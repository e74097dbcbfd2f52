"""Batch scoring on SageMaker: one batch transform job of the recorded model per request.

    from deploykit_plugins.sagemaker.batch import score_batch
    predictions = score_batch("bank-model", "rows.csv")         # or a DataFrame, records, any payload

    python -m deploykit_plugins.sagemaker.batch bank-model rows.csv --json

The rows are written to S3 as MLflow ``dataframe_split`` JSON files of at most 6 MB each under
``{prefix}/{name}/batch/{job}/input/``; ``create_transform_job`` runs the deployment's own model
(the same tarball and ``inference.py``, so the same payload handling and schema check) with
``SplitType=None`` and ``BatchStrategy=SingleRecord`` (one file, one request); the job is polled
with back-off until ``Completed`` (``Failed``/``Stopped`` raise ScoringError with SageMaker's
FailureReason; the timeout stops the job); each ``<part>.json.out`` is read back in order and the
job's S3 objects are removed. The endpoint is not involved: batch needs no running endpoint.

An async scoring script (``deploykit.bundle``, ``mode: async``) scores a whole file instead, on
its endpoint through SageMaker async inference::

    from deploykit_plugins.sagemaker.batch import score_file
    score_file("churn-job", "input.csv", "output.csv")          # the script's output file, written here
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.errors import DeployKitError, DeploymentTimeout, ScoringError
from deploykit.target import wait_until

if TYPE_CHECKING:
    import pandas as pd

    from deploykit.deployment import Deployment
    from deploykit.payload import Predictions
    from deploykit_plugins.sagemaker.target import SageMakerTarget

__all__ = ["INPUT_TYPES", "PART_BYTES", "main", "score_batch", "score_file", "score_with_transform_job"]

#: The largest input file of a job (each file is one request to the container).
PART_BYTES = 6 * 1024 * 1024
#: An async script's input file suffix -> the Content-Type it is sent with.
INPUT_TYPES = {".csv": "text/csv", ".parquet": "application/x-parquet", ".jsonl": "application/jsonlines",
               ".ndjson": "application/jsonlines", ".json": "application/json"}


def _parts(frame: pd.DataFrame) -> list[bytes]:
    """``frame`` as dataframe_split JSON documents of at most PART_BYTES each (split by rows)."""
    from deploykit.payload import encode

    def body(rows: pd.DataFrame) -> bytes:
        return json.dumps(encode(rows, "dataframe_split"), default=str).encode()

    out: list[bytes] = []
    pending = [frame]
    while pending:
        rows = pending.pop(0)
        data = body(rows)
        if len(data) <= PART_BYTES or len(rows) == 1:
            out.append(data)
        else:
            half = len(rows) // 2
            pending[:0] = [rows.iloc[:half], rows.iloc[half:]]
    return out


def score_with_transform_job(target: SageMakerTarget, deployment: Deployment, frame: pd.DataFrame,
                             timeout: float) -> Predictions:
    """``SageMakerTarget.score_batch``: run one transform job on ``frame`` and read its answers."""
    from deploykit.payload import Predictions

    settings, sm, s3 = target.settings, target.sm, target.aws.client("s3")
    model = str(deployment.ids.get("model_name") or "")
    if not model or target._describe_model(model) is None:
        raise ScoringError(f"the record of {deployment.name!r} names model {model or '(none)'}, which SageMaker does "
                           "not have; deploy the model again before batch scoring")
    columns = deployment.columns
    if columns and set(columns) == {str(c) for c in frame.columns} and list(frame.columns) != columns:
        frame = frame[columns]
    job = f"{deployment.name}-batch-{time.strftime('%Y%m%d%H%M%S')}-{int(time.time() * 1000) % 1000:03d}"
    base = "/".join(p for p in (settings.prefix, deployment.name, "batch", job) if p)
    parts = _parts(frame)
    keys = [f"{base}/input/part-{i:05d}.json" for i in range(len(parts))]
    try:
        for key, data in zip(keys, parts):
            target.aws.call(f"uploading batch input s3://{settings.bucket}/{key}",
                            functools.partial(s3.put_object, Bucket=settings.bucket, Key=key, Body=data),
                            permission="s3:PutObject", error=ScoringError)
        target.aws.call(f"creating transform job {job!r}", lambda: sm.create_transform_job(
            TransformJobName=job, ModelName=model, BatchStrategy="SingleRecord", MaxPayloadInMB=6,
            TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                            "S3Uri": f"s3://{settings.bucket}/{base}/input/"}},
                            "ContentType": "application/json", "SplitType": "None"},
            TransformOutput={"S3OutputPath": f"s3://{settings.bucket}/{base}/output/", "Accept": "application/json",
                             "AssembleWith": "None"},
            TransformResources={"InstanceType": settings.batch_instance_type, "InstanceCount": 1},
            Tags=target._tags(deployment.name, deployment.revision)),
            permission="sagemaker:CreateTransformJob", error=ScoringError)
        target.context.progress(f"transform job {job} started ({len(frame)} rows in {len(parts)} file(s))")
        _wait(target, job, timeout)
        answers = []
        for key in keys:
            out_key = key.replace("/input/", "/output/", 1) + ".out"
            got = target.aws.call(f"reading batch output s3://{settings.bucket}/{out_key}",
                                  functools.partial(s3.get_object, Bucket=settings.bucket, Key=out_key),
                                  permission="s3:GetObject", error=ScoringError) or {}
            answers.append(target.predictions(deployment, json.loads(got["Body"].read())))
    finally:
        for key in target._objects(deployment.name):
            if key.startswith(f"{base}/"):
                target._delete_key(key)
    labels = [label for p in answers for label in p.labels]
    proba = None if any(p.probabilities is None for p in answers) else \
        [row for p in answers for row in (p.probabilities or [])]
    return Predictions(labels, proba, answers[0].classes if answers else None)


def _wait(target: SageMakerTarget, job: str, timeout: float) -> None:
    sm = target.sm
    seen: list[str] = []

    def check() -> bool | None:
        described = target.aws.call(f"reading transform job {job!r}", lambda: sm.describe_transform_job(
            TransformJobName=job), permission="sagemaker:DescribeTransformJob", error=ScoringError) or {}
        status = str(described.get("TransformJobStatus"))
        if not seen or seen[-1] != status:
            seen.append(status)
            target.context.progress(f"transform job {job}: {status}")
        if status == "Completed":
            return True
        if status in ("Failed", "Stopped"):
            reason = described.get("FailureReason") or "no reason given"
            raise ScoringError(f"SageMaker transform job {job} is {status}: {reason}; see the CloudWatch log group "
                               "/aws/sagemaker/TransformJobs")
        return None

    try:
        wait_until(check, timeout=timeout, what=f"SageMaker transform job {job}", first=0.2,
                   most=target.settings.poll_interval)
    except DeploymentTimeout:
        target.aws.call(f"stopping transform job {job!r}", lambda: sm.stop_transform_job(TransformJobName=job),
                        permission="sagemaker:StopTransformJob", error=ScoringError, missing_ok=True)
        raise


def score_batch(name: str, data: Any, *, credentials: str | Path | None = None, metadata: str | Path | None = None,
                timeout: float = 3600.0) -> Predictions:
    """Score ``data`` (a DataFrame, records, any payload deploykit reads, or a .json/.csv path) on the
    recorded sagemaker deployment ``name`` as one batch transform job."""
    from deploykit import payload
    from deploykit.lifecycle import open_deployment, read_payload
    from deploykit.plugins import load_formats

    current, target = open_deployment(name, target="sagemaker", credentials=credentials, metadata=metadata,
                                      timeout=timeout)
    load_formats()
    frame = payload.decode(read_payload(data), current.columns or None)
    return target.score_batch(current, frame, timeout)  # type: ignore[attr-defined,no-any-return]


def score_file(name: str, source: str | Path, output: str | Path, *, credentials: str | Path | None = None,
               metadata: str | Path | None = None, timeout: float = 3600.0) -> Path:
    """Run the async scoring script deployed as ``name`` on the file ``source`` (CSV, Parquet, JSON Lines
    or JSON, by suffix) through SageMaker async inference; write the script's output file to ``output``
    and return its path. ScoringError carries the script's message when it fails."""
    from deploykit.lifecycle import open_deployment

    source, output = Path(source), Path(output)
    content_type = INPUT_TYPES.get(source.suffix.lower())
    if content_type is None:
        raise ScoringError(f"input file {str(source)!r} has suffix {source.suffix!r}; an async script on SageMaker "
                           f"takes {', '.join(INPUT_TYPES)} files (the suffix names the Content-Type)")
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise ScoringError(f"input file {str(source)!r} cannot be read ({exc.strerror}); pass an existing file") from None
    current, target = open_deployment(name, target="sagemaker", credentials=credentials, metadata=metadata,
                                      timeout=timeout)
    answer = target.score_file(current, data, content_type)  # type: ignore[attr-defined]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(answer)
    return output


def main(argv: list[str] | None = None) -> int:
    """``python -m deploykit_plugins.sagemaker.batch NAME DATA [--json]``: print the predictions."""
    parser = argparse.ArgumentParser(prog="python -m deploykit_plugins.sagemaker.batch",
                                     description="Score a file on a SageMaker deployment as a batch transform job.")
    parser.add_argument("name")
    parser.add_argument("data", help="a .json or .csv file of rows (any payload shape)")
    parser.add_argument("--credentials")
    parser.add_argument("--metadata")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        predictions = score_batch(args.name, Path(args.data), credentials=args.credentials, metadata=args.metadata,
                                  timeout=args.timeout)
    except DeployKitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(predictions.to_dict()))
    else:
        for label in predictions.labels:
            print(label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
