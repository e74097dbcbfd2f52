"""Benchmark: create and update of a SageMaker endpoint, deploykit vs boto3's own waiter path.

    python benchmarks/sagemaker_deploy.py [--delay 35] [--short-delay 5] [--polls 10,2] [--out docs/benchmarks-sagemaker.md]

Both sides drive the real boto3 client against the project's SageMaker emulator
(tests/emulators/sagemaker.py, in this process, fronting a moto_server subprocess) with its
``transition_delay`` fault set: a create or update stays Creating/Updating for at least
``--delay`` seconds (real endpoints take minutes; the point is where each waiter's polls fall),
and the emulator stamps the moment the endpoint turns InService (``LastModifiedTime``).

* deploykit create / update: ``deploykit.deploy(model, target="sagemaker")``: package and upload
  model.tar.gz, create model and config, create (or blue/green update) the endpoint, poll with
  back-off (0.2 s growing by 1.6x up to ``poll_interval``, default 10 s; ``--polls`` runs it with
  each value given), smoke-score, record.
* boto3 create: ``put_object`` of the same tarball, ``create_model``, ``create_endpoint_config``,
  ``create_endpoint``, then ``get_waiter("endpoint_in_service").wait`` (polls every 30 s by
  default; the table also shows it with ``WaiterConfig={"Delay": --short-delay}``).
* boto3 update: a new model and config, ``update_endpoint``, the same waiter.

Columns: seconds from the call to InService seen by the caller (for deploykit: ``wait_ready``
returning), the emulator's transition (call to InService), and the lateness (seen minus transition).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

REGION = "us-east-1"
BUCKET = "deploykit-bench"


def _models(folder: Path) -> tuple[Path, Path]:
    import json

    import joblib
    import train_model

    from deploykit.schema import Schema

    paths = []
    for seed in (0, 1):
        model, frame = train_model.train(rows=1500, seed=seed, n_estimators=15)
        path = folder / f"seed{seed}" / "bank-model.joblib"
        path.parent.mkdir()
        joblib.dump(model, path)
        (path.parent / "bank-model.schema.json").write_text(json.dumps(Schema.from_frame(frame).to_dict()))
        paths.append(path)
    return paths[0], paths[1]


def _transition(emulator: Any, name: str, started: float) -> float:
    """Seconds from ``started`` (time.time()) to the endpoint's last InService."""
    return float(emulator.endpoints[name].modified) - started


def _deploykit(emulator: Any, folder: Path, v1: Path, v2: Path, poll: float) -> list[tuple[str, float, float, float]]:
    """(label, seen, transition, total) for deploykit's create then update."""
    import yaml

    import deploykit
    from deploykit_plugins.sagemaker.target import SageMakerTarget
    from tests.emulators.sagemaker import ROLE_ARN

    seen: list[float] = []
    plain = SageMakerTarget.wait_ready

    def timed(self: SageMakerTarget, deployment: Any, timeout: float) -> Any:
        out = plain(self, deployment, timeout)
        seen.append(time.time())
        return out

    SageMakerTarget.wait_ready = timed  # type: ignore[method-assign]
    folder.mkdir(parents=True, exist_ok=True)
    credentials, metadata = folder / "credentials.yaml", folder / "metadata.yaml"
    credentials.write_text(yaml.safe_dump({"sagemaker": {
        "region": REGION, "role_arn": ROLE_ARN, "bucket": BUCKET, "endpoint_url": emulator.url,
        "poll_interval": poll}}))
    rows = []
    try:
        for label, model in (("create", v1), ("update", v2)):
            started = time.time()
            deploykit.deploy(model, target="sagemaker", name="bench-dk", credentials=credentials, metadata=metadata,
                             timeout=600)
            total = time.time() - started
            rows.append((f"deploykit {label} (poll_interval {poll:g} s)", seen[-1] - started,
                         _transition(emulator, "bench-dk", started), total))
        deploykit.delete("bench-dk", target="sagemaker", credentials=credentials, metadata=metadata)
    finally:
        SageMakerTarget.wait_ready = plain  # type: ignore[method-assign]
    return rows


def _boto3(emulator: Any, folder: Path, v1: Path, v2: Path, delay: float | None) -> list[tuple[str, float, float, float]]:
    """(label, seen, transition, total) for boto3's create then update, waiting with its waiter."""
    import boto3

    from deploykit.artifact import load_artifact
    from deploykit_plugins.sagemaker.images import image_uri
    from deploykit_plugins.sagemaker.packaging import build_model_tarball
    from tests.emulators.sagemaker import ROLE_ARN

    session = boto3.session.Session()
    sm = session.client("sagemaker", region_name=REGION, endpoint_url=emulator.url)
    s3 = session.client("s3", region_name=REGION, endpoint_url=emulator.url)
    name = f"bench-boto3-{int(delay or 30)}"
    waiter_config = {"Delay": delay, "MaxAttempts": 120} if delay else {}
    rows = []
    for revision, model in ((1, v1), (2, v2)):
        artifact = load_artifact(model)
        tarball, _ = build_model_tarball(artifact, folder / name / str(revision) / "model.tar.gz")
        started = time.time()
        key = f"{name}/{revision}/model.tar.gz"
        s3.put_object(Bucket=BUCKET, Key=key, Body=tarball.read_bytes())
        resource = f"{name}-{revision}"
        sm.create_model(ModelName=resource, ExecutionRoleArn=ROLE_ARN, PrimaryContainer={
            "Image": image_uri(REGION, artifact.framework_version), "ModelDataUrl": f"s3://{BUCKET}/{key}",
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}})
        sm.create_endpoint_config(EndpointConfigName=resource, ProductionVariants=[{
            "VariantName": "primary", "ModelName": resource, "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}])
        if revision == 1:
            sm.create_endpoint(EndpointName=name, EndpointConfigName=resource)
        else:
            sm.update_endpoint(EndpointName=name, EndpointConfigName=resource)
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=waiter_config)
        seen = time.time() - started
        label = "create" if revision == 1 else "update"
        rows.append((f"boto3 waiter {label} (Delay {int(delay or 30)} s{', default' if not delay else ''})", seen,
                     _transition(emulator, name, started), seen))
    sm.delete_endpoint(EndpointName=name)
    return rows


def main() -> None:
    """Run both paths once against one emulator; print the table (and write it with --out)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=35.0, help="emulator transition_delay, seconds")
    parser.add_argument("--short-delay", type=float, default=5.0, help="the waiter's shorter Delay, seconds")
    parser.add_argument("--polls", default="10,2",
                        help="deploykit's sagemaker.poll_interval values to run, comma-separated (10 is the default)")
    parser.add_argument("--out", type=Path, help="write the markdown table to this file")
    args = parser.parse_args()
    for key, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                       ("AWS_EC2_METADATA_DISABLED", "true")):
        os.environ.setdefault(key, value)

    from tests.emulators.sagemaker import SageMakerEmulator

    rows: list[tuple[str, float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp, SageMakerEmulator() as emulator:
        folder = Path(tmp)
        v1, v2 = _models(folder)
        emulator.moto("s3", REGION).create_bucket(Bucket=BUCKET)
        emulator.faults.transition_delay = args.delay
        for poll in (float(p) for p in args.polls.split(",")):
            rows += _deploykit(emulator, folder / f"poll-{poll:g}", v1, v2, poll)
        rows += _boto3(emulator, folder, v1, v2, args.short_delay)
        rows += _boto3(emulator, folder, v1, v2, None)
    lines = [f"Emulator transition_delay {args.delay:g} s; one run each; {platform.python_version()}, boto3 "
             f"{version('boto3')}, {os.cpu_count()} cores.", "",
             "| path | call to InService seen (s) | emulator transition (s) | late by (s) | call to return (s) |",
             "|---|---|---|---|---|"]
    for label, seen, transition, total in rows:
        lines.append(f"| {label} | {seen:.1f} | {transition:.1f} | {seen - transition:.1f} | {total:.1f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
