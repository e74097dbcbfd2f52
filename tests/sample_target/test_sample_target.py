"""A third-party target installed by entry point: deploykit finds it like a built-in, and it passes the contract."""

from __future__ import annotations

import json

import pytest

from deploykit import plugins
from deploykit.testing import TargetContract


def test_deploykit_targets_lists_the_installed_sample(sample_target, cli) -> None:
    assert "sample" in plugins.get_registry()
    listed = cli("targets", "--json")
    assert listed.code == 0, listed.err
    sample = {t["name"]: t for t in listed.json()["targets"]}["sample"]
    assert sample["available"] and "a sample plugin" in sample["description"]


def test_the_sample_is_not_installed_outside_its_fixture() -> None:
    plugins.reset()
    assert "sample" not in plugins.get_registry()


class TestSampleTarget(TargetContract):
    target = "sample"
    credentials = "sample:\n  api_key: sample-key\n"
    bad_credentials = "sample:\n  api_key: not-the-key\n"
    bad_credentials_error = r"sample\.api_key was rejected by the sample platform"

    @pytest.fixture
    def contract_project(self, sample_target, project):
        project.write_credentials(self.credentials)
        return project

    def remove_outside_deploykit(self, contract, deployment) -> None:
        index = contract.project.dir / ".deploykit" / "sample" / "deployments.json"
        entries = json.loads(index.read_text())
        del entries[deployment.name]
        index.write_text(json.dumps(entries))
