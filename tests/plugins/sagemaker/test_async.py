"""Asynchronous inference: an endpoint config with AsyncInferenceConfig, scoring through S3 with
``invoke_endpoint_async`` and a bounded wait for the answer, kept across an update."""

from __future__ import annotations

import joblib
import pandas as pd
import pytest

import deploykit
from deploykit.errors import ScoringError
from tests.plugins.sagemaker.conftest import BUCKET, SageMakerProject, boto_client

NAME = "bank-model"
ASYNC = {"output_path": f"s3://{BUCKET}/async-out", "timeout_seconds": 60}


def test_async_endpoint_scores_through_s3(sm_project: SageMakerProject, bank_model, bank_model_v2,
                                          bank_contract_rows) -> None:
    sm_project.write_credentials(async_inference=ASYNC)
    dep = deploykit.deploy(bank_model, name=NAME, timeout=120, **sm_project.kwargs(NAME))  # smoke test is async too
    assert dep.ids["async_output"] == f"s3://{BUCKET}/async-out"
    sm = boto_client(sm_project.emulator, "sagemaker")
    config = sm.describe_endpoint_config(EndpointConfigName=dep.ids["config_name"])["AsyncInferenceConfig"]
    assert config["OutputConfig"] == {"S3OutputPath": f"s3://{BUCKET}/async-out",
                                      "S3FailurePath": f"s3://{BUCKET}/async-out/failures"}
    frame = pd.DataFrame(bank_contract_rows)
    scored = deploykit.score(NAME, bank_contract_rows, **sm_project.kwargs(NAME))
    fitted = joblib.load(bank_model)
    assert scored.labels == fitted.predict(frame).tolist()
    assert scored.probabilities == fitted.predict_proba(frame).tolist()
    assert "InvokeEndpoint" not in sm_project.emulator.calls  # every request went the async way

    with pytest.raises(ScoringError, match=r"async endpoint 'bank-model' refused the request: .*expected integer"):
        deploykit.score(NAME, [{**bank_contract_rows[0], "age": "old"}], **sm_project.kwargs(NAME))
    keys = [o["Key"] for o in sm_project.emulator.moto("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert not any(k.startswith("async-out/") or "/async-input/" in k for k in keys), keys

    sm_project.write_credentials()  # the setting removed: the serving config's AsyncInferenceConfig is carried over
    updated = deploykit.deploy(bank_model_v2, name=NAME, timeout=120, **sm_project.kwargs(NAME))
    assert updated.revision == 2 and updated.ids["async_output"] == f"s3://{BUCKET}/async-out"
    assert deploykit.score(NAME, bank_contract_rows, **sm_project.kwargs(NAME)).labels == \
        joblib.load(bank_model_v2).predict(frame).tolist()
