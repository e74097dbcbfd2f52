"""The deploy flow on the in-process memory target: the TargetContract, then what only memory can show
(injected failures at every step, the change hook, every payload shape)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import deploykit
from deploykit.errors import DeploymentError, NotDeployedError, SmokeTestError
from deploykit.testing import TargetContract
from deploykit_plugins.memory import MemoryTarget, Step


class TestMemoryTarget(TargetContract):
    target = "memory"
    bad_credentials = "memory: [not, a, mapping]\n"
    bad_credentials_error = r"section 'memory' must be a mapping of keys"

    @pytest.fixture
    def contract_project(self, project, memory):
        return project

    def remove_outside_deploykit(self, contract, deployment) -> None:
        MemoryTarget.platform.remove(deployment.name)


def _deploy(model: Path, project, **kw):
    return deploykit.deploy(model, target="memory", name="bank", metadata=project.metadata,
                            credentials=project.credentials, **kw)


def _recorded(project) -> dict:
    return yaml.safe_load(project.metadata.read_text())["deployments"]["bank"]["memory"]


def test_create_then_noop_then_update_then_rollback(project, bank_model, bank_model_v2, bank_rows) -> None:
    first = _deploy(bank_model, project)
    assert (first.action, first.revision, first.status) == ("created", 1, "ready")
    again = _deploy(bank_model, project)
    assert (again.action, again.revision) == ("unchanged", 1)
    v1 = deploykit.score("bank", bank_rows, metadata=project.metadata)

    second = _deploy(bank_model_v2, project)
    assert (second.action, second.revision) == ("updated", 2)
    assert second.ids["deployment_id"] == first.ids["deployment_id"]
    rec = _recorded(project)
    assert rec["revision"] == 2 and [h["revision"] for h in rec["history"]] == [1]
    v2 = deploykit.score("bank", bank_rows, metadata=project.metadata)
    assert v2.probabilities != v1.probabilities

    back = deploykit.rollback("bank", metadata=project.metadata)
    assert (back.action, back.revision) == ("rolled-back", 1)
    assert deploykit.score("bank", bank_rows, metadata=project.metadata).probabilities == v1.probabilities
    assert [h["revision"] for h in _recorded(project)["history"]] == [2]

    third = _deploy(bank_model_v2, project, force=True)
    assert third.revision == 3


def test_failed_create_records_nothing(project, bank_model) -> None:
    MemoryTarget.fail_next("deploy", "quota exceeded")  # the spelling the README documents
    with pytest.raises(DeploymentError, match="quota exceeded"):
        _deploy(bank_model, project)
    assert not project.metadata.exists() or "bank" not in project.metadata.read_text()


def test_failed_smoke_test_on_create_removes_the_deployment(project, memory, bank_model) -> None:
    memory.fail_next(Step.SCORE, "endpoint returned 500")
    with pytest.raises(SmokeTestError, match="example row did not score.*endpoint returned 500"):
        _deploy(bank_model, project)
    assert memory.names() == []
    assert not project.metadata.exists() or "bank" not in project.metadata.read_text()


def test_failed_cleanup_is_recorded_not_orphaned(project, memory, bank_model) -> None:
    memory.fail_next(Step.WAIT_READY, "never became ready")
    memory.fail_next(Step.DELETE, DeploymentError("memory target: permission denied"))
    with pytest.raises(DeploymentError, match="recorded in .* with status 'failed'"):
        _deploy(bank_model, project)
    assert _recorded(project)["status"] == "failed"


def test_failed_update_smoke_test_rolls_back(project, bank_model, bank_model_v2, bank_rows) -> None:
    _deploy(bank_model, project)
    before = deploykit.score("bank", bank_rows, metadata=project.metadata)
    MemoryTarget.fail_next("score", message="model crashed")
    with pytest.raises(SmokeTestError, match="revision 2 .* failed .*rolled back to revision 1"):
        _deploy(bank_model_v2, project)
    rec = _recorded(project)
    assert rec["revision"] == 1 and rec["status"] == "ready"
    assert deploykit.score("bank", bank_rows, metadata=project.metadata).probabilities == before.probabilities


def test_rollback_to_unknown_revision(project, bank_model) -> None:
    _deploy(bank_model, project)
    with pytest.raises(deploykit.DeployKitError, match="only revision 1; nothing to roll back to"):
        deploykit.rollback("bank", metadata=project.metadata)
    with pytest.raises(deploykit.DeployKitError, match="no revision 7; known revisions: 1"):
        deploykit.rollback("bank", to=7, metadata=project.metadata)


def test_delete_removes_record_and_deployment(project, memory, bank_model) -> None:
    _deploy(bank_model, project)
    gone = deploykit.delete("bank", metadata=project.metadata)
    assert gone.action == "deleted" and memory.names() == []
    with pytest.raises(NotDeployedError):
        deploykit.status("bank", metadata=project.metadata)


def test_status_and_list(project, memory, bank_model) -> None:
    _deploy(bank_model, project)
    assert deploykit.status("bank", metadata=project.metadata).status == "ready"
    memory.remove("bank")
    assert deploykit.status("bank", metadata=project.metadata).status == "stopped"
    assert [d.name for d in deploykit.list_deployments(project.metadata)] == ["bank"]


def test_score_accepts_every_shape(project, bank_model, bank_rows) -> None:
    import pandas as pd

    from deploykit.payload import encode

    _deploy(bank_model, project)
    expected = deploykit.score("bank", bank_rows, metadata=project.metadata).labels
    for fmt in ("records", "dataframe_split", "dataframe_records", "instances", "inputs", "input_data", "v2", "csv"):
        body = encode(pd.DataFrame(bank_rows), fmt)
        assert deploykit.score("bank", body, metadata=project.metadata).labels == expected, fmt
    assert deploykit.score("bank", pd.DataFrame(bank_rows), metadata=project.metadata).labels == expected
    assert deploykit.score("bank", bank_rows[0], metadata=project.metadata).labels == expected[:1]


def test_changed_hook_fires(project, bank_model) -> None:
    from deploykit.hookspecs import hookimpl
    from deploykit.plugins import get_plugin_manager

    seen = []

    class Listener:
        @hookimpl
        def deploykit_deployment_changed(self, event, deployment):
            seen.append((event, deployment.name, deployment.revision))

    pm = get_plugin_manager()
    listener = Listener()
    pm.register(listener)
    try:
        _deploy(bank_model, project)
        deploykit.delete("bank", metadata=project.metadata)
    finally:
        pm.unregister(listener)
    assert seen == [("created", "bank", 1), ("deleted", "bank", 1)]


def test_injected_error_types_reach_the_caller(project, memory, bank_model, bank_model_v2) -> None:
    from deploykit.errors import DeploymentTimeout

    _deploy(bank_model, project)
    memory.fail_next(Step.UPDATE, DeploymentTimeout)
    with pytest.raises(DeploymentTimeout, match="memory target: injected failure"):
        _deploy(bank_model_v2, project)
    assert memory.pending_failures() == {}
    assert _recorded(project)["revision"] == 1

    memory.fail_next("score", times=2)
    with pytest.raises(deploykit.ScoringError):
        deploykit.score("bank", [{}], metadata=project.metadata)
    assert memory.pending_failures() == {"score": 1}


def test_unknown_step_names_the_steps(memory) -> None:
    with pytest.raises(ValueError, match="no step 'updat' to fail; pass one of: deploy, update, rollback"):
        memory.fail_next("updat")

