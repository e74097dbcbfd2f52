"""s3:// input and output against moto's S3 server."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import deploykit
from deploykit.artifact import load_artifact
from deploykit.errors import BatchError

from .conftest import S3, bank_frame


def test_s3_input_and_output(bank_model: Path, s3: S3, tmp_path: Path) -> None:
    import s3fs

    fs = s3fs.S3FileSystem()
    frame = bank_frame(3000)
    with fs.open("batch/in/day-1.csv", "wb") as fh:
        fh.write(frame.iloc[:1800].to_csv(index=False).encode())
    with fs.open("batch/in/day-2.parquet", "wb") as fh:
        frame.iloc[1800:].to_parquet(fh)
    report = deploykit.batch(bank_model, "s3://batch/in/", "s3://batch/scores/run-1", chunk_size="32KB")
    assert report.rows_in == report.rows_out == 3000
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("batch/scores/run-1"))
    assert names == sorted(report.parts + ["_report.json"]), "only complete parts and the report, no temp files"
    got = pd.concat([pd.read_parquet(fs.open(f"batch/scores/run-1/{p}", "rb")) for p in report.parts])
    got = got.sort_values("id").reset_index(drop=True)
    model = load_artifact(bank_model).model
    assert got["prediction"].tolist() == model.predict(frame[list(model.feature_names_in_)]).tolist()
    assert json.loads(fs.cat("batch/scores/run-1/_report.json"))["status"] == "succeeded"
    with pytest.raises(BatchError, match=r"output folder 's3://batch/scores/run-1' already holds"):
        deploykit.batch(bank_model, "s3://batch/in/", "s3://batch/scores/run-1")


def test_missing_s3_input(bank_model: Path, s3: S3) -> None:
    with pytest.raises(BatchError, match=r"input 's3://batch/nothing/here.csv' does not exist"):
        deploykit.batch(bank_model, "s3://batch/nothing/here.csv", "s3://batch/out")
