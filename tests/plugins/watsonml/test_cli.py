"""The watsonml target from the command line and from the example pipeline script, in real processes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from deploykit.artifact import load_artifact
from tests.conftest import ROOT
from tests.plugins.watsonml.conftest import WatsonProject, expected

PIPELINE = ROOT / "examples" / "model_deploy_pipeline.py"


def _pipeline(*args: object, cwd: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PIPELINE), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=180)


def test_cli_deploy_score_rollback_delete(cli, cpd_project: WatsonProject, bank_model, bank_model_v2, bank_rows) -> None:
    emu = cpd_project.emulator
    targets = cli("targets", "--json")
    assert {"name": "watsonml", "available": True} in [{k: t[k] for k in ("name", "available")}
                                                       for t in targets.json()["targets"]]

    created = cli("deploy", bank_model, "--target", "watsonml", "--name", "bank-model", "--json")
    assert created.code == 0, created.err
    first = created.json()  # stdout is exactly one JSON object: the client's prints were contained
    assert (first["action"], first["revision"], first["status"]) == ("created", 1, "ready")
    rows = cpd_project.dir / "rows.json"
    rows.write_text(json.dumps({"input_data": [{"fields": list(bank_rows[0]),
                                                "values": [list(r.values()) for r in bank_rows]}]}))
    scored = cli("score", "bank-model", rows, "--json")
    assert scored.code == 0, scored.err
    assert scored.json()["predictions"] == expected(bank_model, bank_rows)[0]

    updated = cli("deploy", bank_model_v2, "--target", "watsonml", "--name", "bank-model", "--json").json()
    assert (updated["action"], updated["revision"], updated["url"]) == ("updated", 2, first["url"])
    back = cli("rollback", "bank-model", "--json").json()
    assert (back["revision"], back["ids"]["model_rev"], back["url"]) == (1, "1", first["url"])

    gone = cli("delete", "bank-model", "--json")
    assert gone.code == 0, gone.err
    assert emu.models == {} and emu.deployments == {}


def test_cli_failure_is_one_json_error_naming_the_key(cli, cpd_project: WatsonProject, bank_model) -> None:
    cpd_project.write_credentials(space_id=None)
    failed = cli("deploy", bank_model, "--target", "watsonml", "--json")
    assert failed.code == 1
    assert failed.json()["type"] == "CredentialsError" and "'space_id' is missing" in failed.json()["error"]


@pytest.mark.parametrize("mode", ["cloud"])
def test_example_pipeline_with_credentials_and_target(watson_project: WatsonProject, bank_model, bank_rows) -> None:
    done = _pipeline(bank_model, watson_project.credentials, "--target", "watsonml", "--name", "bank-model", "--json",
                     cwd=watson_project.dir)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["target"], result["action"], result["revision"]) == ("watsonml", "created", 1)
    artifact = load_artifact(bank_model)
    assert result["smoke_prediction"]["prediction"] == expected(bank_model, [artifact.example])[0][0]
    assert watson_project.record()["ids"]["deployment_uid"] in watson_project.emulator.deployments

    again = _pipeline(bank_model, watson_project.credentials, "--target", "watsonml", "--name", "bank-model", "--json",
                      cwd=watson_project.dir)
    assert json.loads(again.stdout)["action"] == "unchanged"


def test_example_pipeline_legacy_form_with_a_flat_credentials_file(project, watson_emulator, bank_model,
                                                                   bank_model_v2) -> None:
    """``model_deploy_pipeline.py MODEL PROJECT_DIR CREDENTIALS`` with the seed's flat file defaults to watsonml."""
    creds = watson_emulator.credentials("cloud")
    flat = project.dir / "wml-credentials.yaml"
    flat.write_text(yaml.safe_dump({"url": creds["url"], "apikey": creds["api_key"], "space_id": watson_emulator.space_id,
                                    "platform_url": creds["platform_url"], "auth_url": creds["auth_url"],
                                    "verify": creds["verify"]}))
    pipeline_dir = project.dir / "pipeline"
    pipeline_dir.mkdir()
    done = _pipeline(bank_model, pipeline_dir, flat, "--json", cwd=project.dir)
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    assert (first["target"], first["action"]) == ("watsonml", "created")
    record = yaml.safe_load((pipeline_dir / "metadata.yaml").read_text())["deployments"]["bank-model"]["watsonml"]
    assert record["ids"]["model_uid"] in watson_emulator.models

    second = json.loads(_pipeline(bank_model_v2, pipeline_dir, flat, "--json", cwd=project.dir).stdout)
    assert (second["action"], second["revision"], second["url"]) == ("updated", 2, first["url"])
