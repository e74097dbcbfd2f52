"""``--target`` routes a recorded deployment to the target's own batch jobs (Watson, on its emulator)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import deploykit
from deploykit.errors import BatchError
from tests.emulators.fixtures import watson_client, watson_emulator  # noqa: F401  (pytest fixtures)
from tests.plugins.watsonml.conftest import WatsonProject, client_process_state, cpd_project  # noqa: F401

from .conftest import bank_frame
from .helpers import assert_scored


def test_watson_batch_jobs_through_deploykit_batch(cpd_project: WatsonProject, bank_model: Path) -> None:
    emu = cpd_project.emulator
    deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    frame = bank_frame(300)
    frame.to_csv(cpd_project.dir / "in.csv", index=False)
    report = deploykit.batch("bank-model", cpd_project.dir / "in.csv", cpd_project.dir / "out", target="watsonml",
                             batch_rows=120)
    assert report.rows_in == report.rows_out == 300 and report.source == "bank-model on watsonml"
    assert_scored(cpd_project.dir / "out", bank_model, frame)
    record = yaml.safe_load(cpd_project.metadata.read_text())["deployments"]["bank-model"]["watsonml"]
    batch_id = record["ids"]["batch_deployment_uid"]
    assert "batch" in emu.deployments[batch_id].doc["entity"], "scored by Watson batch jobs"
    assert emu.jobs == {}, "each job is removed once read"
    with pytest.raises(BatchError, match=r"--target watsonml scores through the platform's own batch jobs"):
        deploykit.batch("bank-model", cpd_project.dir / "in.csv", cpd_project.dir / "out2", target="watsonml",
                        workers=2)
    deploykit.delete("bank-model")


def test_a_deployment_without_a_kept_model_needs_its_target(cpd_project: WatsonProject,
                                                            bank_model: Path) -> None:
    deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    bank_frame(20).to_csv(cpd_project.dir / "in.csv", index=False)
    with pytest.raises(BatchError, match=r"keeps no model file .* pass --target watsonml"):
        deploykit.batch("bank-model", cpd_project.dir / "in.csv", cpd_project.dir / "out")
    deploykit.delete("bank-model")
