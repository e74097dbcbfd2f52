"""SageMakerTarget.reconcile after an update killed at the target's crash points (the kill raised in process at
``crash_point``): what it made is adopted when the endpoint ends InService on it, else removed, and the endpoint
is pointed back at the recorded config; found by noted names or, with the ids lost, by the name prefix."""

from __future__ import annotations

from typing import Any

import pytest

import deploykit
from deploykit import faults
from deploykit.artifact import load_artifact
from deploykit.lifecycle import open_target
from deploykit.operations import PendingOperation
from tests.plugins.sagemaker.conftest import SageMakerProject, leftovers

NAME = "bank-model"


class Killed(BaseException):
    """Stands for SIGKILL at a crash point: nothing after it runs, not even ``except Exception``."""


def _die() -> None:
    raise Killed()


def _target(project: SageMakerProject, op: PendingOperation | None = None, drop: tuple[str, ...] = ()) -> Any:
    target = open_target("sagemaker", project.credentials, project.dir / ".deploykit", timeout=120)
    if op is not None:
        target.context.note = lambda **ids: op.ids.update({k: v for k, v in ids.items() if k not in drop})
    return target


@pytest.mark.parametrize(("step", "adopted", "drop"), [
    ("update:config-created", False, ("model_name", "config_name")),  # found by the {name}-2- prefix, removed
    ("update:endpoint-updating", True, ()),                            # Updating to it: awaited, then adopted
])
def test_killed_update_is_settled(sm_project: SageMakerProject, monkeypatch: pytest.MonkeyPatch, bank_model,
                                  bank_model_v2, step: str, adopted: bool, drop: tuple[str, ...]) -> None:
    current = deploykit.deploy(bank_model, name=NAME, timeout=120, **sm_project.kwargs(NAME))
    artifact = load_artifact(bank_model_v2)
    op = PendingOperation(NAME, "sagemaker", "update", 2, planned={"model_sha256": artifact.sha256})
    monkeypatch.setattr(faults, "_die", _die)
    monkeypatch.setenv(faults.CRASH_AT_ENV, step)
    sm_project.emulator.faults.transition_delay = 1.0  # still Updating when reconciled: it waits for the end
    with pytest.raises(Killed):
        _target(sm_project, op, drop).update(current, artifact)
    monkeypatch.delenv(faults.CRASH_AT_ENV)
    assert any(f"{NAME}-2-" in item for item in leftovers(sm_project.emulator, NAME))

    record = _target(sm_project).reconcile(op, current)
    endpoint = sm_project.emulator.endpoints[NAME]
    if adopted:
        assert record is not None and record.status == "ready" and record.ids["config_name"].startswith(f"{NAME}-2-")
        assert endpoint.config == record.ids["config_name"]
    else:
        assert record is None
        assert endpoint.config == current.ids["config_name"] and endpoint.status == "InService"
        assert not any(f"{NAME}-2-" in item for item in leftovers(sm_project.emulator, NAME))
    again = _target(sm_project).reconcile(op, current)  # idempotent
    assert (again is None) == (record is None)


def test_killed_rollback_is_adopted_or_switched_back(sm_project: SageMakerProject, monkeypatch: pytest.MonkeyPatch,
                                                     bank_model, bank_model_v2) -> None:
    deploykit.deploy(bank_model, name=NAME, timeout=120, **sm_project.kwargs(NAME))
    current = deploykit.deploy(bank_model_v2, name=NAME, timeout=120, **sm_project.kwargs(NAME))
    previous = current.revision_entry(1)
    assert previous is not None
    op = PendingOperation(NAME, "sagemaker", "rollback", 1, planned={"model_sha256": previous.model_sha256})
    monkeypatch.setattr(faults, "_die", _die)
    monkeypatch.setenv(faults.CRASH_AT_ENV, "rollback:endpoint-updating")
    with pytest.raises(Killed):
        _target(sm_project, op).rollback(current, previous)
    monkeypatch.delenv(faults.CRASH_AT_ENV)
    record = _target(sm_project).reconcile(op, current)
    assert record is not None and record.ids["config_name"] == previous.ids["config_name"]
    assert sm_project.emulator.endpoints[NAME].config == previous.ids["config_name"]


def test_reconcile_of_a_create_never_deletes_an_endpoint_it_did_not_make(sm_project: SageMakerProject,
                                                                        bank_model) -> None:
    from tests.emulators.sagemaker import ROLE_ARN
    from tests.plugins.sagemaker.conftest import boto_client

    sm = boto_client(sm_project.emulator, "sagemaker")
    sm.create_model(ModelName="someone-elses", ExecutionRoleArn=ROLE_ARN, PrimaryContainer={"Image": "x"})
    sm.create_endpoint_config(EndpointConfigName="someone-elses", ProductionVariants=[
        {"VariantName": "v", "ModelName": "someone-elses", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName=NAME, EndpointConfigName="someone-elses")
    op = PendingOperation(NAME, "sagemaker", "create", 1, planned={"model_sha256": load_artifact(bank_model).sha256})
    assert _target(sm_project).reconcile(op, None) is None
    assert NAME in sm_project.emulator.endpoints  # a create killed before it made anything leaves others' alone
