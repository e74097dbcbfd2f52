"""kill -9 of a real ``deploykit deploy`` at the lifecycle's and the target's step boundaries during a
create, then a fresh deploy: exactly one serving revision, nothing pending, and delete leaves nothing."""

from __future__ import annotations

import pytest

from deploykit.testing.crash import check_after_crash, run_killed
from tests.plugins.sagemaker.conftest import SageMakerProject, leftovers

NAME = "crashed-model"


@pytest.mark.parametrize("step", [
    "create:config-created",     # the S3 object, model and config, no endpoint: removed
    "create:endpoint-created",   # the endpoint is Creating: reconcile waits, then adopts it
    "create:ready",              # InService and not recorded: adopted
])
def test_killed_create_leaves_nothing_orphaned(sm_project: SageMakerProject, bank_model, step: str) -> None:
    run_killed(sm_project.dir, "deploy", bank_model, "--target", "sagemaker", "--name", NAME, "--timeout", "120",
               step=step, timeout=180)
    assert leftovers(sm_project.emulator, NAME), f"the kill at {step} came after something was created"
    check_after_crash(sm_project, NAME, "sagemaker", lambda: leftovers(sm_project.emulator, NAME),
                      model=bank_model, timeout=180)
