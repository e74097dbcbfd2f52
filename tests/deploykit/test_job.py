"""deploykit.submit and the job commands against a real local deployment (a server process)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import train_model

import deploykit
from deploykit.artifact import load_artifact
from deploykit.errors import JobError


def _expected(model: Path, frame: pd.DataFrame) -> pd.DataFrame:
    artifact = load_artifact(model)
    preds = artifact.predict(artifact.schema.validate(frame))
    out = pd.DataFrame({"prediction": preds.labels})
    for i, cls in enumerate(preds.classes):
        out[f"probability_{cls}"] = [row[i] for row in preds.probabilities]
    return out


def _deploy(project: Any, bank_model: Path) -> Path:
    model = project.dir / "bank-model.joblib"
    shutil.copyfile(bank_model, model)
    shutil.copyfile(bank_model.with_name("bank-model.schema.json"), project.dir / "bank-model.schema.json")
    deploykit.deploy(str(model), target="local", name="bank")
    return model


def test_submit_wait_result_cancel(project: Any, bank_model: Path) -> None:
    model = _deploy(project, bank_model)
    frame, _ = train_model.make_data(rows=300, seed=4)
    frame.to_csv(project.dir / "rows.csv", index=False)

    job = deploykit.submit("bank", project.dir / "rows.csv")
    assert job.document["status"] in ("queued", "running", "succeeded")
    done = job.wait(timeout=120)
    assert done["status"] == "succeeded" and done["rows_out"] == 300
    out = job.result(project.dir / "scored.csv")
    got = pd.read_csv(out)
    pd.testing.assert_frame_equal(got[["prediction", "probability_no", "probability_yes"]], _expected(model, frame),
                                  check_dtype=False)
    assert list(got.columns[:len(frame.columns)]) == list(frame.columns)

    from_frame = deploykit.submit("bank", frame.head(10), job_id="frame-1")
    assert from_frame.id == "frame-1" and from_frame.wait(timeout=120)["rows_out"] == 10
    again = deploykit.submit("bank", frame.head(10), job_id="frame-1")
    assert again.document["finished_at"] == from_frame.status()["finished_at"]  # not run twice
    with pytest.raises(JobError, match="already exists with another input"):
        deploykit.submit("bank", frame.head(11), job_id="frame-1")

    big, _ = train_model.make_data(rows=100_000, seed=5)
    running = deploykit.submit("bank", big)
    cancelled = running.cancel()
    assert cancelled["status"] in ("cancelled", "running")
    with pytest.raises(JobError, match="cancelled") as err:
        running.wait(timeout=120)
    assert err.value.status == "cancelled"
    with pytest.raises(JobError, match=r"409.*cancelled"):
        running.result(project.dir / "never.csv")
    assert not (project.dir / "never.csv").exists()
    assert running.cancel() == {"id": running.id, "status": "removed"}
    with pytest.raises(JobError, match="404"):
        running.status()
    ids = {d["id"] for d in deploykit.job.jobs("bank")}
    assert {job.id, "frame-1"} <= ids
    deploykit.delete("bank")


def test_a_target_without_jobs_says_what_to_use(project: Any, memory: Any, bank_model: Path) -> None:
    deploykit.deploy(str(bank_model), target="memory", name="mem")
    with pytest.raises(JobError, match=r"the memory target has no async jobs.*deploykit batch mem"):
        deploykit.submit("mem", bank_model)


def test_the_cli(project: Any, cli: Any, bank_model: Path) -> None:
    _deploy(project, bank_model)
    frame, _ = train_model.make_data(rows=50, seed=6)
    frame.to_csv(project.dir / "rows.csv", index=False)

    waited = cli("score", "bank", "rows.csv", "--async", "--wait", "-o", "out.csv", "--job-id", "cli-1", "--json")
    assert waited.code == 0, waited.err
    assert waited.json()["status"] == "succeeded" and waited.json()["output_file"] == "out.csv"
    assert len(pd.read_csv(project.dir / "out.csv")) == 50

    submitted = cli("score", "bank", "rows.csv", "--async")
    assert submitted.code == 0 and " " in submitted.out
    listed = cli("jobs", "bank", "--json")
    assert listed.code == 0 and "cli-1" in [j["id"] for j in listed.json()["jobs"]]
    assert "cli-1" in cli("jobs", "bank").out

    fetched = cli("jobs", "result", "bank", "cli-1", "-o", "again.csv")
    assert fetched.code == 0, fetched.err
    assert (project.dir / "again.csv").read_bytes() == (project.dir / "out.csv").read_bytes()
    shown = cli("jobs", "status", "bank", "cli-1", "--json")
    assert shown.code == 0 and shown.json()["rows_out"] == 50
    removed = cli("jobs", "cancel", "bank", "cli-1")
    assert removed.code == 0 and "removed" in removed.out

    missing = cli("jobs", "result", "bank", "cli-1", "-o", "x.csv", "--json")
    assert missing.code == 1 and missing.json()["type"] == "JobError" and "404" in missing.json()["error"]
    assert cli("jobs", "result", "bank", "cli-1").code == 2  # no -o
    assert cli("jobs", "frobnicate", "bank", "x").code == 2
    assert cli("score", "bank", "rows.csv", "--wait").code == 2  # --wait without --async
    bad = cli("score", "bank", "nothing.csv", "--async", "--json")
    assert bad.code == 1 and json.loads(bad.out)["type"] == "JobError"
    cli("delete", "bank")
