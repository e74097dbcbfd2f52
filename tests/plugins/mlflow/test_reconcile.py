"""MlflowTarget.reconcile against a real MLflow tracking server and real scoring servers: a target
call killed at each of its crash points (the kill raised in-process at ``crash_point``; the servers
it spawned live on, as after a SIGKILL) leaves what it made, and reconcile adopts it when it is
complete or removes it; ids never noted are found by the deploykit tags (runs, versions) and the
servers' command lines."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import deploykit
import deploykit.faults as faults
from deploykit.artifact import load_artifact
from deploykit.lifecycle import open_target
from deploykit.operations import PendingOperation
from deploykit_plugins.mlflow import serving
from tests.plugins.mlflow.conftest import MlflowProject
from tests.plugins.mlflow.helpers import contested_rows, leftovers, serving_servers

#: every id the mlflow target notes: dropped, a kill came before any note was written
ALL_IDS = ("run_id", "experiment_id", "registered_model", "version", "pid", "server_port", "log", "front_pid",
           "port", "backend_file")


class Killed(BaseException):
    """Stands for SIGKILL at a crash point: nothing after it runs, not even ``except Exception``."""


def _die() -> None:
    raise Killed()


@pytest.fixture
def killable(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(faults, "_die", _die)
    return monkeypatch


@pytest.fixture
def project(mlflow_project: MlflowProject) -> MlflowProject:
    mlflow_project.write(delete_versions=True)  # so that a delete leaves no version behind
    return mlflow_project


def _target(project: MlflowProject, op: PendingOperation | None = None, drop: tuple[str, ...] = ()) -> Any:
    target = open_target("mlflow", project.credentials, project.dir / ".deploykit")
    if op is not None:
        target.context.note = lambda **ids: op.ids.update({k: v for k, v in ids.items() if k not in drop})
    return target


def _op(project: MlflowProject, action: str, revision: int, model) -> PendingOperation:
    return PendingOperation(project.name, "mlflow", action, revision,
                            planned={"model_sha256": load_artifact(model).sha256})


def _kill(killable: pytest.MonkeyPatch, step: str, call: Any) -> None:
    killable.setenv(faults.CRASH_AT_ENV, step)
    with pytest.raises(Killed):
        call()
    killable.delenv(faults.CRASH_AT_ENV)


@pytest.mark.parametrize("step", ["create:run-created", "create:version-registered", "create:server-spawned",
                                  "create:front-spawned", "create:alias-moved"])
@pytest.mark.parametrize("drop", [(), ALL_IDS], ids=["noted", "ids-lost"])
def test_killed_create_is_removed(project: MlflowProject, killable: pytest.MonkeyPatch, bank_model,
                                  step: str, drop: tuple[str, ...]) -> None:
    op = _op(project, "create", 1, bank_model)
    target = _target(project, op, drop)

    def create() -> None:
        deployment = target.deploy(load_artifact(bank_model), project.name)
        if step == "create:alias-moved":
            target.wait_ready(deployment, 120)

    _kill(killable, step, create)
    assert leftovers(project, project.name), "the kill came after the run was created"
    if step == "create:alias-moved" and not drop:
        # complete but for the record: adopted; the ids-lost case has no port to adopt on, so it is removed
        adopted = _target(project).reconcile(op, None)
        assert adopted is not None and adopted.status == "ready"
        _target(project).delete(adopted)
    else:
        assert _target(project).reconcile(op, None) is None
    assert leftovers(project, project.name) == []
    assert _target(project).reconcile(op, None) is None  # idempotent
    assert leftovers(project, project.name) == []


def test_killed_create_of_a_serving_deployment_is_adopted(project: MlflowProject, killable: pytest.MonkeyPatch,
                                                          bank_model, bank_model_v2) -> None:
    op = _op(project, "create", 1, bank_model)
    target = _target(project, op)
    _kill(killable, "create:backend-switched",
          lambda: target.wait_ready(target.deploy(load_artifact(bank_model), project.name), 120))
    adopted = _target(project).reconcile(op, None)
    assert adopted is not None and (adopted.status, adopted.revision) == ("ready", 1)
    assert adopted.ids["version"] == "1" and adopted.ids["pid"] == op.ids["pid"]
    assert adopted.model_sha256 == op.planned["model_sha256"]
    rows = contested_rows(load_artifact(bank_model), load_artifact(bank_model_v2))
    assert _target(project).score(adopted, pd.DataFrame(rows)).labels == \
        load_artifact(bank_model).predict(pd.DataFrame(rows)).labels
    _target(project).delete(adopted)
    assert leftovers(project, project.name) == []


@pytest.mark.parametrize("step", ["update:run-created", "update:version-registered", "update:server-spawned"])
@pytest.mark.parametrize("drop", [(), ALL_IDS], ids=["noted", "ids-lost"])
def test_killed_update_is_undone_and_current_keeps_serving(project: MlflowProject, killable: pytest.MonkeyPatch,
                                                           bank_model, bank_model_v2, step: str,
                                                           drop: tuple[str, ...]) -> None:
    v1, v2 = load_artifact(bank_model), load_artifact(bank_model_v2)
    rows = contested_rows(v1, v2)
    current = deploykit.deploy(bank_model, target="mlflow", name=project.name, **project.kwargs())
    op = _op(project, "update", 2, bank_model_v2)
    _kill(killable, step, lambda: _target(project, op, drop).update(current, v2))
    assert _target(project).reconcile(op, current) is None
    client = project.client()
    assert [v.version for v in client.search_model_versions(f"name = '{project.name}'")] == ["1"]
    assert client.get_model_version_by_alias(project.name, "production").version == "1"
    assert serving_servers(project.name) == [current.ids["pid"]]
    assert deploykit.score(project.name, rows, **project.kwargs()).labels == v1.predict(pd.DataFrame(rows)).labels
    assert _target(project).reconcile(op, current) is None  # idempotent
    assert serving_servers(project.name) == [current.ids["pid"]]
    deploykit.delete(project.name, **project.kwargs())
    assert leftovers(project, project.name) == []


@pytest.mark.parametrize("step", ["update:alias-moved", "update:backend-switched"])
def test_killed_update_that_moved_the_alias_is_adopted(project: MlflowProject, killable: pytest.MonkeyPatch,
                                                       bank_model, bank_model_v2, step: str) -> None:
    v1, v2 = load_artifact(bank_model), load_artifact(bank_model_v2)
    rows = contested_rows(v1, v2)
    current = deploykit.deploy(bank_model, target="mlflow", name=project.name, **project.kwargs())
    op = _op(project, "update", 2, bank_model_v2)
    target = _target(project, op)
    _kill(killable, step, lambda: target.wait_ready(target.update(current, v2), 120))
    adopted = _target(project).reconcile(op, current)
    assert adopted is not None and (adopted.revision, adopted.ids["version"]) == (2, "2")
    assert adopted.url == current.url and adopted.ids["front_pid"] == current.ids["front_pid"]
    assert serving_servers(project.name) == [adopted.ids["pid"]]  # the old server was stopped
    assert serving.read_backend(serving.ServerFiles(project.dir / ".deploykit", project.name).backend_file) \
        == adopted.ids["server_port"]
    assert _target(project).score(adopted, pd.DataFrame(rows)).labels == v2.predict(pd.DataFrame(rows)).labels
    adopted.history = [current.snapshot()]
    _target(project).delete(adopted)
    assert leftovers(project, project.name) == []
