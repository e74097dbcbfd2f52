"""SageMaker's data capture read back as logged inputs: ``deploykit drift`` on a sagemaker deployment
reads the JSON Lines the endpoint captured in S3 (the emulator writes them as SageMaker does)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

import deploykit
from tests.deploykit.test_drift import SHIFTED, check_shifted
from tests.plugins.sagemaker.conftest import BUCKET, REGION, SageMakerProject

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples"))
import train_model

NAME = "bank"
CAPTURE = {"destination": f"s3://{BUCKET}/capture"}


def _deploy(sm_project: SageMakerProject, cli: Any, bank_model: Path) -> None:
    reference, _ = train_model.make_data(rows=1500, seed=0)
    reference.to_csv(sm_project.dir / "train.csv", index=False)
    done = cli("deploy", bank_model, "--target", "sagemaker", "--name", NAME, "--reference", "train.csv",
               "--credentials", sm_project.credentials, "--timeout", "120", "--json")
    assert done.code == 0, done.err + done.out


def _shifted_rows(rows: int) -> list[dict[str, Any]]:
    traffic, _ = train_model.make_data(rows=rows, seed=11)
    traffic["balance"] = traffic["balance"] + 8000
    traffic["job"] = "student"
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in traffic.to_dict("records")]


def test_drift_reads_the_endpoints_data_capture(sm_project: SageMakerProject, cli: Any, bank_model: Path) -> None:
    sm_project.write_credentials(data_capture=CAPTURE)
    _deploy(sm_project, cli, bank_model)
    records = _shifted_rows(600)
    for i in range(0, len(records), 100):
        deploykit.score(NAME, records[i:i + 100], **sm_project.kwargs(NAME))

    s3 = sm_project.emulator.moto("s3", REGION)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="capture/").get("Contents", [])]
    assert keys and all(k.startswith(f"capture/{NAME}/primary/") and k.endswith(".jsonl") for k in keys), keys
    line = json.loads(s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read())
    assert line["captureData"]["endpointInput"]["encoding"] == "JSON"  # deploykit asks for readable JSON
    assert line["captureData"]["endpointInput"]["observedContentType"] == "application/json"

    done = cli("drift", NAME, "--credentials", sm_project.credentials, "--json")
    check_shifted(done, SHIFTED, 600, 602)  # and the deploy's smoke-test row

    later = cli("drift", NAME, "--credentials", sm_project.credentials, "--since", "2999-01-01", "--json")
    assert later.code == 2 and later.json()["type"] == "DriftError"
    assert "captured no requests" in later.json()["error"] and "since 2999-01-01" in later.json()["error"]


def test_drift_on_an_endpoint_without_capture_says_how_to_turn_it_on(sm_project: SageMakerProject, cli: Any,
                                                                      bank_model: Path) -> None:
    _deploy(sm_project, cli, bank_model)
    done = cli("drift", NAME, "--credentials", sm_project.credentials)
    assert done.code == 2
    assert "has no data capture" in done.err and "data_capture: {destination: s3://BUCKET/capture}" in done.err


def test_a_capture_record_decodes_base64_csv_and_json() -> None:
    from deploykit_plugins.sagemaker.capture import capture_location, decode_record

    assert capture_location("s3://b/capture/", "ep", "primary") == ("b", "capture/ep/primary/")
    assert capture_location("s3://b", "ep", "primary") == ("b", "ep/primary/")
    import base64

    def record(data: str, encoding: str, kind: str) -> dict[str, Any]:
        return {"captureData": {"endpointInput": {"observedContentType": kind, "mode": "INPUT", "data": data,
                                                  "encoding": encoding}}}

    split = json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}})
    as_json = decode_record(record(split, "JSON", "application/json"))
    as_b64 = decode_record(record(base64.b64encode(split.encode()).decode(), "BASE64", "application/json"))
    pd.testing.assert_frame_equal(as_json, as_b64)
    assert as_json.to_dict("records") == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    csv = decode_record(record("1,x\n2,y", "CSV", "text/csv"), columns=["a", "b"])
    assert csv.to_dict("records") == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
