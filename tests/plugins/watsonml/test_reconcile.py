"""WatsonTarget.reconcile against the emulator with IBM's real client: a target call killed at each of
its crash points (the kill raised in-process at ``crash_point``) leaves what it made, and reconcile
adopts it or removes it; ids never noted are found by the deploykit tags."""

from __future__ import annotations

from typing import Any

import pytest

import deploykit
import deploykit.faults as faults
from deploykit.artifact import load_artifact
from deploykit.lifecycle import open_target
from deploykit.operations import PendingOperation
from tests.plugins.watsonml.conftest import WatsonProject


class Killed(BaseException):
    """Stands for SIGKILL at a crash point: nothing after it runs, not even ``except Exception``."""


def _die() -> None:
    raise Killed()


@pytest.fixture
def killable(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(faults, "_die", _die)
    return monkeypatch


def _target(project: WatsonProject, op: PendingOperation | None = None, drop: tuple[str, ...] = ()) -> Any:
    target = open_target("watsonml", project.credentials, project.dir / ".deploykit")
    if op is not None:
        target.context.note = lambda **ids: op.ids.update({k: v for k, v in ids.items() if k not in drop})
    return target


@pytest.mark.parametrize("step", ["create:model-stored", "create:revision-created", "create:deployment-created"])
@pytest.mark.parametrize("drop", [(), ("model_uid", "deployment_uid")], ids=["noted", "ids-lost"])
def test_killed_create_is_removed(cpd_project: WatsonProject, killable: pytest.MonkeyPatch, bank_model,
                                  step: str, drop: tuple[str, ...]) -> None:
    emu = cpd_project.emulator
    emu.ready_after_polls = 10_000  # still initializing when reconciled: not complete, so removed
    artifact = load_artifact(bank_model)
    op = PendingOperation("bank-model", "watsonml", "create", 1, planned={"model_sha256": artifact.sha256})
    killable.setenv(faults.CRASH_AT_ENV, step)
    with pytest.raises(Killed):
        _target(cpd_project, op, drop).deploy(artifact, "bank-model")
    assert emu.models, "the kill came after the model was stored"
    killable.delenv(faults.CRASH_AT_ENV)
    assert _target(cpd_project).reconcile(op, None) is None
    assert emu.models == {} and emu.deployments == {}
    assert _target(cpd_project).reconcile(op, None) is None  # idempotent


def test_killed_create_of_a_ready_deployment_is_adopted(cpd_project: WatsonProject, bank_model) -> None:
    emu = cpd_project.emulator
    artifact = load_artifact(bank_model)
    op = PendingOperation("bank-model", "watsonml", "create", 1, planned={"model_sha256": artifact.sha256})
    target = _target(cpd_project, op)
    target.wait_ready(target.deploy(artifact, "bank-model"), 60)  # killed before the record was written
    adopted = _target(cpd_project).reconcile(op, None)
    assert adopted is not None and adopted.status == "ready" and adopted.revision == 1
    assert adopted.ids["deployment_uid"] in emu.deployments and adopted.ids["model_uid"] in emu.models
    assert adopted.model_sha256 == artifact.sha256
    _target(cpd_project).delete(adopted)
    assert emu.models == {} and emu.deployments == {}


@pytest.mark.parametrize("step", ["update:revision-created", "update:deployment-patched"])
def test_killed_update_is_undone_and_current_keeps_serving(cpd_project: WatsonProject, killable: pytest.MonkeyPatch,
                                                           bank_model, bank_model_v2, bank_rows, step: str) -> None:
    emu = cpd_project.emulator
    current = deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    before = deploykit.score("bank-model", bank_rows).labels
    artifact = load_artifact(bank_model_v2)
    op = PendingOperation("bank-model", "watsonml", "update", 2, planned={"model_sha256": artifact.sha256})
    emu.ready_after_polls = 1  # the killed switch is still in progress when reconcile first looks: not adoptable
    killable.setenv(faults.CRASH_AT_ENV, step)
    with pytest.raises(Killed):
        _target(cpd_project, op).update(current, artifact)
    killable.delenv(faults.CRASH_AT_ENV)
    emu.ready_after_polls = 0
    assert _target(cpd_project).reconcile(op, current) is None
    dep = emu.deployments[current.ids["deployment_uid"]].doc["entity"]
    assert dep["asset"] == {"id": current.ids["model_uid"], "rev": current.ids["model_rev"]}
    assert set(emu.models) == {current.ids["model_uid"]} and set(emu.deployments) == {current.ids["deployment_uid"]}
    assert deploykit.score("bank-model", bank_rows).labels == before
    deploykit.delete("bank-model")
    assert emu.models == {} and emu.deployments == {}


def test_killed_update_that_completed_is_adopted(cpd_project: WatsonProject, killable: pytest.MonkeyPatch,
                                                 bank_model, bank_model_v2) -> None:
    emu = cpd_project.emulator
    current = deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    artifact = load_artifact(bank_model_v2)
    op = PendingOperation("bank-model", "watsonml", "update", 2, planned={"model_sha256": artifact.sha256})
    killable.setenv(faults.CRASH_AT_ENV, "update:deployment-patched")
    with pytest.raises(Killed):
        _target(cpd_project, op).update(current, artifact)
    killable.delenv(faults.CRASH_AT_ENV)
    adopted = _target(cpd_project).reconcile(op, current)
    assert adopted is not None and adopted.revision == 2 and adopted.model_sha256 == artifact.sha256
    assert adopted.ids["deployment_uid"] == current.ids["deployment_uid"] and adopted.ids["model_rev"] == "2"
    assert emu.deployments[adopted.ids["deployment_uid"]].doc["entity"]["asset"]["rev"] == "2"


def test_models_and_deployments_are_listed_by_tag(cpd_project: WatsonProject, bank_model) -> None:
    created = deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    session = _target(cpd_project).session
    models = session.tagged("models", "deploykit-name:bank-model")
    deps = session.tagged("deployments", "deploykit-name:bank-model")
    assert [m["metadata"]["id"] for m in models] == [created.ids["model_uid"]]
    assert [d["metadata"]["id"] for d in deps] == [created.ids["deployment_uid"]]
    assert "deploykit-rev:1" in models[0]["metadata"]["tags"]
    assert session.tagged("models", "deploykit-name:other") == []


def test_a_delete_run_again_after_it_completed_is_no_error(cpd_project: WatsonProject, bank_model) -> None:
    """What finishing a delete killed after the target deleted everything does (crash point
    delete:target-deleted): the client's 'Artifact ... does not exist' counts as gone, not as a failure."""
    emu = cpd_project.emulator
    created = deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    _target(cpd_project).delete(created)
    assert emu.models == {} and emu.deployments == {}
    _target(cpd_project).delete(created)
