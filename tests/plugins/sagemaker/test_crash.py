"""The crash matrix on the sagemaker target: a real ``deploykit`` process SIGKILLed at every lifecycle
step boundary and every SageMaker crash point of create, update, rollback and delete (and by a timer
between them), against the SageMaker emulator; then ``check_after_crash``: metadata.yaml reads, the
next ``deploy`` ends with exactly one serving revision and nothing pending, and ``delete`` leaves no
endpoint, endpoint config, model, S3 object or container process of the name.

The deploys that bring the name to where the killed command starts, and the check's deploy and
delete, run in this process (the emulator is a server of this process; the killed CLI reaches it
over HTTP); the timed sweep runs the check's deploy and delete as CLI processes too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import deploykit
from deploykit.faults import STEPS
from deploykit.metadata import MetadataStore
from deploykit.testing.crash import check_after_crash, run_killed
from tests.plugins.sagemaker.conftest import SageMakerProject, leftovers

NAME = "crashed-model"

#: The target's own crash points that a create, update or rollback of an existing endpoint reaches
#: (``update:endpoint-created`` and ``rollback:endpoint-created`` need the endpoint deleted behind
#: deploykit's back: the update path is covered in process by test_reconcile.py).
SAGEMAKER_POINTS = ("create:uploaded", "create:model-created", "create:config-created", "create:endpoint-created",
                    "update:uploaded", "update:model-created", "update:config-created", "update:endpoint-updating",
                    "rollback:endpoint-updating")

#: What the next command's reconcile does with the killed operation: once the endpoint was created
#: (or updated) to the operation's config it settles InService on it and is adopted; before that
#: the half-made revision (S3 object, model, config) is removed.
OUTCOMES = {
    "create:intent-recorded": "removed", "create:target-created": "adopted", "create:ready": "adopted",
    "create:smoke-tested": "adopted", "update:intent-recorded": "removed", "update:target-updated": "adopted",
    "update:ready": "adopted", "update:smoke-tested": "adopted", "rollback:intent-recorded": "removed",
    "rollback:target-rolled-back": "adopted", "rollback:ready": "adopted", "delete:intent-recorded": "removed",
    "delete:target-deleted": "removed",
    "create:uploaded": "removed", "create:model-created": "removed", "create:config-created": "removed",
    "create:endpoint-created": "adopted", "update:uploaded": "removed", "update:model-created": "removed",
    "update:config-created": "removed", "update:endpoint-updating": "adopted", "rollback:endpoint-updating": "adopted",
}


def _args(project: SageMakerProject, *args: Any) -> list[Any]:
    wait = ["--timeout", "120"] if args[0] in ("deploy", "rollback") else []  # delete has no --timeout
    return [*args, "--target", "sagemaker", "--credentials", project.credentials, "--metadata", project.metadata, *wait]


def _command(project: SageMakerProject, action: str, v1: Path, v2: Path) -> list[Any]:
    """Bring ``NAME`` to where ``action`` starts (in process); the killed command's arguments."""
    if action == "create":
        return ["deploy", v1, "--name", NAME]
    deploykit.deploy(v1, name=NAME, timeout=120, **project.kwargs(NAME))
    if action == "update":
        return ["deploy", v2, "--name", NAME]
    deploykit.deploy(v2, name=NAME, timeout=120, **project.kwargs(NAME))
    return ["rollback", NAME] if action == "rollback" else ["delete", NAME]


def _serving(project: SageMakerProject) -> int:
    """Container processes answering for NAME's endpoint while it is InService (0 when it is not)."""
    endpoint = project.emulator.endpoints.get(NAME)
    if endpoint is None or endpoint.status != "InService":
        return 0
    return len([c for c in project.emulator.containers() if c.config.startswith(f"{NAME}-")])


def _check(project: SageMakerProject, v1: Path, *, in_process: bool = True) -> None:
    check_after_crash(project, NAME, "sagemaker", lambda: leftovers(project.emulator, NAME), model=v1,
                      serving=lambda: _serving(project), in_process=in_process, timeout=120)


@pytest.mark.parametrize("step", STEPS + SAGEMAKER_POINTS)
def test_killed_at_each_step_leaves_nothing_orphaned(sm_project: SageMakerProject, bank_model, bank_model_v2,
                                                     step: str) -> None:
    action = step.split(":")[0]
    command = _command(sm_project, action, bank_model, bank_model_v2)
    killed = run_killed(sm_project.dir, *_args(sm_project, *command), step=step, timeout=180)
    assert killed.killed
    if action == "create" and step != "create:intent-recorded":
        assert leftovers(sm_project.emulator, NAME), f"the kill at {step} came after something was created"
    _check(sm_project, bank_model)
    [note] = MetadataStore(sm_project.metadata).reconciliations(NAME, "sagemaker")
    assert (note.action, note.outcome) == (action, OUTCOMES[step]), note


@pytest.mark.parametrize(("action", "after_ms"), [("create", 2500), ("create", 4500), ("update", 3500)])
def test_killed_by_a_timer_leaves_nothing_orphaned(sm_project: SageMakerProject, bank_model, bank_model_v2,
                                                   action: str, after_ms: int) -> None:
    command = _command(sm_project, action, bank_model, bank_model_v2)
    run_killed(sm_project.dir, *_args(sm_project, *command), after_ms=after_ms, timeout=180)  # killed, or finished
    _check(sm_project, bank_model, in_process=False)  # the next deploy and delete as CLI processes too
