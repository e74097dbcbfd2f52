"""The CLI as a CI job sees it: exit codes, --json on success and failure, messages that say the fix."""

from __future__ import annotations

import json


def test_bad_usage_exits_2(cli) -> None:
    result = cli("deploy")
    assert result.code == 2 and "Missing argument 'MODEL'" in result.err


def test_unknown_target_lists_installed_targets(cli, bank_model) -> None:
    result = cli("deploy", bank_model, "--target", "azureml")
    assert result.code == 1
    assert "unknown target 'azureml'; installed targets:" in result.err and "local" in result.err


def test_missing_model_file_with_json(cli) -> None:
    result = cli("deploy", "nope.joblib", "--json")
    assert result.code == 1
    body = result.json()
    assert body["type"] == "ArtifactError" and "'nope.joblib' does not exist" in body["error"]


def test_missing_credentials_file(cli, bank_model) -> None:
    result = cli("deploy", bank_model, "--credentials", "absent.yaml")
    assert result.code == 1 and "credentials file 'absent.yaml' does not exist" in result.err


def test_corrupt_metadata_is_refused_and_kept(cli, project, bank_model) -> None:
    project.metadata.write_text("deployments: {bank: [1, 2\n")
    before = project.metadata.read_bytes()
    result = cli("deploy", bank_model, "--name", "bank")
    assert result.code == 1 and "will not overwrite it" in result.err
    assert project.metadata.read_bytes() == before


def test_targets_and_list(cli) -> None:
    targets = cli("targets", "--json")
    assert targets.code == 0
    names = {t["name"]: t for t in targets.json()["targets"]}
    assert names["local"]["available"] and names["memory"]["available"]
    empty = cli("list", "--json")
    assert empty.code == 0 and empty.json() == {"deployments": []}


def test_score_payload_errors(cli, project) -> None:
    (project.dir / "rows.txt").write_text("x")
    wrong_suffix = cli("score", "bank", "rows.txt")
    assert wrong_suffix.code == 1 and "must end in .json or .csv" in wrong_suffix.err
    bad_stdin = cli("score", "bank", "-", stdin="{not json")
    assert bad_stdin.code == 1 and "stdin is not valid JSON" in bad_stdin.err
    not_deployed = cli("score", "bank", "-", stdin=json.dumps([{"a": 1}]))
    assert not_deployed.code == 1 and "no deployment named 'bank'" in not_deployed.err


def test_bad_names_are_one_clear_error_and_write_nothing(cli, project, bank_model) -> None:
    for name in ("../../x", "team/model", "m" * 200):
        result = cli("deploy", bank_model, "--target", "memory", "--name", name, "--json")
        assert result.code == 1 and "Traceback" not in result.err
        body = result.json()  # exactly one JSON object on stdout
        assert body["type"] == "InvalidNameError" and "deployment name" in body["error"] and "--name" in body["error"]
        assert not project.metadata.exists() and not (project.dir / ".deploykit").exists()
    human = cli("deploy", bank_model, "--target", "memory", "--name", "team/model")
    assert human.code == 1 and human.err.startswith("deploykit: error: deployment name 'team/model'")
