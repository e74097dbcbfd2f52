"""The crash matrix on the mlflow target: a real ``deploykit`` process SIGKILLed at every lifecycle
step boundary of create, update, rollback and delete, at each MLflow crash point, and by a timer;
then ``check_after_crash``: metadata.yaml reads, the next ``deploy`` ends with exactly one live
scoring server behind one relay and nothing pending, and ``delete`` leaves no registered version,
no alias, no run tagged with the name, and no scoring-server or relay process.

A scoring server takes seconds to start, so the deploys that bring a deployment to where the
killed command starts, and the deploy and delete of the check, run in this process (the same
lifecycle); only the killed command is a CLI process. The MLflow crash points of create and
update are killed in process by test_reconcile.py (the same reconcile, a tenth of the time), so
this file kills at the two rollback points only; ``DEPLOYKIT_FULL_CRASH_MATRIX=1`` runs every
action x point pair through the CLI (docs/reliability.md lists both)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import deploykit
from deploykit.faults import STEPS
from deploykit.metadata import MetadataStore
from deploykit.testing.crash import check_after_crash, run_killed
from deploykit_plugins.mlflow import serving
from tests.plugins.mlflow.conftest import MlflowProject
from tests.plugins.mlflow.helpers import leftovers, serving_servers

#: the MLflow crash points test_reconcile.py does not reach (it covers create and update)
MLFLOW_POINTS = ("rollback:server-spawned", "rollback:backend-switched")
#: every action x point pair a create, update or rollback reaches (a rollback registers nothing;
#: only a create starts a relay)
ALL_MLFLOW_POINTS = tuple(f"{action}:{point}" for action, points in (
    ("create", ("run-created", "version-registered", "server-spawned", "front-spawned", "alias-moved",
                "backend-switched")),
    ("update", ("run-created", "version-registered", "server-spawned", "alias-moved", "backend-switched")),
    ("rollback", ("server-spawned", "alias-moved", "backend-switched"))) for point in points)
POINTS = ALL_MLFLOW_POINTS if os.environ.get("DEPLOYKIT_FULL_CRASH_MATRIX") == "1" else MLFLOW_POINTS


#: What the next command's reconcile does with the killed operation: a create, update or rollback
#: is adopted once the alias points at its version (moved only after that version's server
#: answered /health) while its server and the relay run; anything earlier is removed.
_ADOPTED = {"create:ready", "create:smoke-tested", "create:alias-moved", "create:backend-switched",
            "update:ready", "update:smoke-tested", "update:alias-moved", "update:backend-switched",
            "rollback:ready", "rollback:alias-moved", "rollback:backend-switched"}


@pytest.fixture
def project(mlflow_project: MlflowProject) -> Iterator[MlflowProject]:
    """The mlflow project with ``delete_versions`` on (so a delete leaves no version); servers whose
    pid was never recorded (a kill before the note) are stopped after the test too."""
    mlflow_project.write(delete_versions=True)
    yield mlflow_project
    files = serving.ServerFiles(mlflow_project.dir / ".deploykit", mlflow_project.name)
    for pid in serving_servers(mlflow_project.name) + serving.fronts_of(files):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _args(project: MlflowProject, *args: Any) -> list[Any]:
    return [*args, "--target", "mlflow", "--credentials", project.credentials, "--metadata", project.metadata]


def _command(project: MlflowProject, action: str, v1: Path, v2: Path) -> list[Any]:
    """Bring the deployment to where ``action`` starts (in process); the killed command's arguments."""
    if action == "create":
        return ["deploy", v1, "--name", project.name]
    deploykit.deploy(v1, target="mlflow", name=project.name, **project.kwargs())
    if action in ("update", "delete"):  # one revision is enough to delete: it saves a server start
        return ["deploy", v2, "--name", project.name] if action == "update" else ["delete", project.name]
    deploykit.deploy(v2, target="mlflow", name=project.name, **project.kwargs())
    return ["rollback", project.name]


def _serving(project: MlflowProject) -> int:
    """Live scoring servers of the name; there must be exactly one relay, and the alias set."""
    files = serving.ServerFiles(project.dir / ".deploykit", project.name)
    relays = serving.fronts_of(files)
    assert len(relays) == 1, f"{len(relays)} relays run for {project.name!r} (pids {relays}); expected 1"
    alias = project.client().get_registered_model(project.name).aliases
    assert set(alias) == {"production"}, f"aliases of {project.name!r}: {alias}"
    return len(serving_servers(project.name))


def _check(project: MlflowProject, v1: Path) -> dict[str, Any]:
    return check_after_crash(project, project.name, "mlflow", lambda: leftovers(project, project.name), model=v1,
                             serving=lambda: _serving(project), in_process=True)


@pytest.mark.parametrize("step", STEPS + POINTS)
def test_killed_at_each_step_leaves_nothing_orphaned(project: MlflowProject, bank_model, bank_model_v2,
                                                     step: str) -> None:
    command = _command(project, step.split(":")[0], bank_model, bank_model_v2)
    killed = run_killed(project.dir, *_args(project, *command), step=step)
    assert killed.killed
    _check(project, bank_model)
    [note] = MetadataStore(project.metadata).reconciliations(project.name, "mlflow")
    assert (note.action, note.outcome) == (step.split(":")[0], "adopted" if step in _ADOPTED else "removed"), note


@pytest.mark.parametrize("after_ms", [7500])
def test_a_create_killed_by_a_timer_leaves_nothing_orphaned(project: MlflowProject, bank_model, bank_model_v2,
                                                            after_ms: int) -> None:
    command = _command(project, "create", bank_model, bank_model_v2)
    run_killed(project.dir, *_args(project, *command), after_ms=after_ms)  # killed, or it finished
    _check(project, bank_model)
