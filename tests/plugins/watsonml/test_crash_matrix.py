"""The crash matrix on the watsonml target: a real ``deploykit`` process SIGKILLed at every lifecycle
step boundary and every Watson crash point of create, update, rollback and delete (and by a timer
between them), against the Watson emulator; then ``check_after_crash``: metadata.yaml reads, the
next ``deploy`` ends with exactly one serving deployment and nothing pending, and ``delete`` leaves
no model asset and no deployment on the emulator.

The deploys that bring a deployment to where the killed command starts, and the check's deploy and
delete, run in this process (the same lifecycle; the emulator is a server of this process, the
killed CLI reaches it over HTTPS); the timed sweep runs the check's deploy and delete as CLI
processes too. In-process runs keep the file near two minutes on a loaded 2-core machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import deploykit
from deploykit.faults import STEPS
from deploykit.metadata import MetadataStore
from deploykit.testing.crash import check_after_crash, run_killed
from tests.plugins.watsonml.conftest import WatsonProject

NAME = "bank-model"

#: Watson's own crash points that a create, update or rollback of the same model type reaches
#: (``update:model-stored`` and ``update:deployment-created`` need a new model type or a
#: deployment deleted behind deploykit's back: covered in-process by test_reconcile.py).
WATSON_POINTS = ("create:model-stored", "create:revision-created", "create:deployment-created",
                 "update:revision-created", "update:deployment-patched", "rollback:deployment-patched")


#: What the next command's reconcile does with the killed operation. The emulator readies a
#: deployment at its first poll, so one created or patched before the kill serves its revision:
#: adopted; before a deployment serves the operation's model revision there is nothing to adopt.
OUTCOMES = {
    "create:intent-recorded": "removed", "create:target-created": "adopted", "create:ready": "adopted",
    "create:smoke-tested": "adopted", "update:intent-recorded": "removed", "update:target-updated": "adopted",
    "update:ready": "adopted", "update:smoke-tested": "adopted", "rollback:intent-recorded": "removed",
    "rollback:target-rolled-back": "adopted", "rollback:ready": "adopted", "delete:intent-recorded": "removed",
    "delete:target-deleted": "removed",
    "create:model-stored": "removed", "create:revision-created": "removed", "create:deployment-created": "adopted",
    "update:revision-created": "removed", "update:deployment-patched": "adopted",
    "rollback:deployment-patched": "adopted",
}


def _args(project: WatsonProject, *args: Any) -> list[Any]:
    return [*args, "--target", "watsonml", "--credentials", project.credentials, "--metadata", project.metadata]


def _command(project: WatsonProject, action: str, v1: Path, v2: Path) -> list[Any]:
    """Bring ``NAME`` to where ``action`` starts (in process); the killed command's arguments."""
    if action == "create":
        return ["deploy", v1, "--name", NAME]
    deploykit.deploy(v1, target="watsonml", name=NAME, credentials=project.credentials, metadata=project.metadata)
    if action == "update":
        return ["deploy", v2, "--name", NAME]
    deploykit.deploy(v2, target="watsonml", name=NAME, credentials=project.credentials, metadata=project.metadata)
    return ["rollback", NAME] if action == "rollback" else ["delete", NAME]


def _leftovers(project: WatsonProject) -> list[str]:
    """Every model asset and deployment on the emulator (a fresh one per test: all of them are the name's)."""
    emu = project.emulator
    return [f"model {m}" for m in emu.models] + [f"deployment {d}" for d in emu.deployments]


def _serving(project: WatsonProject) -> int:
    """Online deployments of NAME on the emulator that are ready."""
    return len([d for d in project.emulator.deployments.values()
                if d.doc["metadata"]["name"] == NAME and d.doc["entity"]["status"]["state"] == "ready"])


def _check(project: WatsonProject, v1: Path, *, in_process: bool = True) -> None:
    check_after_crash(project, NAME, "watsonml", lambda: _leftovers(project), model=v1,
                      serving=lambda: _serving(project), in_process=in_process)
    assert project.emulator.models == {} and project.emulator.deployments == {}


@pytest.mark.parametrize("step", STEPS + WATSON_POINTS)
def test_killed_at_each_step_leaves_nothing_orphaned(cpd_project: WatsonProject, bank_model, bank_model_v2,
                                                     step: str) -> None:
    command = _command(cpd_project, step.split(":")[0], bank_model, bank_model_v2)
    killed = run_killed(cpd_project.dir, *_args(cpd_project, *command), step=step)
    assert killed.killed
    _check(cpd_project, bank_model)
    [note] = MetadataStore(cpd_project.metadata).reconciliations(NAME, "watsonml")
    assert (note.action, note.outcome) == (step.split(":")[0], OUTCOMES[step]), note


@pytest.mark.parametrize(("action", "after_ms"), [("create", 1500), ("create", 3000), ("update", 2500)])
def test_killed_by_a_timer_leaves_nothing_orphaned(cpd_project: WatsonProject, bank_model, bank_model_v2,
                                                   action: str, after_ms: int) -> None:
    command = _command(cpd_project, action, bank_model, bank_model_v2)
    run_killed(cpd_project.dir, *_args(cpd_project, *command), after_ms=after_ms)  # killed, or it finished
    _check(cpd_project, bank_model, in_process=False)  # the next deploy and delete as CLI processes too

