"""Batch transform through the BatchScorer protocol: one job of the deployment's model, its answers equal to
the model in process, split into several input files, a failed job named, nothing left on S3."""

from __future__ import annotations

import json

import joblib
import pandas as pd
import pytest

import deploykit
from deploykit.errors import ScoringError
from deploykit_plugins.sagemaker import batch
from tests.plugins.sagemaker.conftest import BUCKET, SageMakerProject

NAME = "bank-model"


def test_batch_transform_scores_like_the_model(sm_project: SageMakerProject, bank_model, bank_rows,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    deploykit.deploy(bank_model, name=NAME, timeout=120, **sm_project.kwargs(NAME))
    monkeypatch.setattr(batch, "PART_BYTES", 1500)  # a few rows per input file: the parts are read back in order
    rows = bank_rows * 3
    predictions = batch.score_batch(NAME, rows, credentials=sm_project.credentials, metadata=sm_project.metadata,
                                    timeout=120)
    fitted = joblib.load(bank_model)
    frame = pd.DataFrame(rows)
    assert predictions.labels == fitted.predict(frame).tolist()
    assert predictions.probabilities == fitted.predict_proba(frame).tolist()
    jobs = list(sm_project.emulator.jobs.values())
    assert [j["TransformJobStatus"] for j in jobs] == ["Completed"]
    assert jobs[0]["ModelName"] == sm_project.record(NAME)["ids"]["model_name"]
    keys = [o["Key"] for o in sm_project.emulator.moto("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert not any("/batch/" in key for key in keys), keys


def test_failed_job_is_named_and_cleaned_up(sm_project: SageMakerProject, bank_model, bank_rows, tmp_path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    deploykit.deploy(bank_model, name=NAME, timeout=120, **sm_project.kwargs(NAME))
    data = tmp_path / "rows.json"
    data.write_text(json.dumps([{**bank_rows[0], "age": 41.5}]))
    args = [NAME, str(data), "--credentials", str(sm_project.credentials), "--metadata", str(sm_project.metadata)]
    assert batch.main(args) == 1
    err = capsys.readouterr().err
    assert "transform job bank-model-batch-" in err and "is Failed" in err and "expected integer" in err
    keys = [o["Key"] for o in sm_project.emulator.moto("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert not any("/batch/" in key for key in keys), keys
    data.write_text(json.dumps(bank_rows[:2]))
    assert batch.main([*args, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["predictions"]) == 2


def test_batch_needs_the_recorded_model(sm_project: SageMakerProject, bank_model, bank_rows) -> None:
    deploykit.deploy(bank_model, name=NAME, timeout=120, **sm_project.kwargs(NAME))
    model = sm_project.record(NAME)["ids"]["model_name"]
    sm_project.emulator.moto("sagemaker").delete_model(ModelName=model)
    with pytest.raises(ScoringError, match=rf"names model {model}, which SageMaker does not have"):
        batch.score_batch(NAME, bank_rows, credentials=sm_project.credentials, metadata=sm_project.metadata)
