"""Crash safety end to end: a real ``deploykit`` killed at every lifecycle step boundary (on the
sample target, whose platform is a folder that outlives the process), then reconciled; and the
errors a pending operation that cannot be reconciled gives."""

from __future__ import annotations

import json
import os
import socket

import pytest

import deploykit
from deploykit.errors import PendingOperationError
from deploykit.faults import STEPS
from deploykit.metadata import MetadataStore
from deploykit.operations import Owner
from deploykit.testing.crash import check_after_crash, dead_owner, run_killed

SAMPLE = "sample:\n  api_key: sample-key\n"


def _entries(project) -> dict:
    index = project.dir / ".deploykit" / "sample" / "deployments.json"
    return json.loads(index.read_text()) if index.exists() else {}


def _cli_args(project, *args):
    return [*args, "--target", "sample", "--credentials", project.credentials, "--metadata", project.metadata]


@pytest.fixture
def sample_project(sample_target, project):
    project.write_credentials(SAMPLE)
    return project


def _prepare(project, action: str, bank_model, bank_model_v2):
    """Bring the deployment to where ``action`` starts; return the model the killed command uses."""
    if action == "create":
        return ["deploy", bank_model, "--name", "m"]
    first = run_killed(project.dir, *_cli_args(project, "deploy", bank_model, "--name", "m"), after_ms=None)
    assert first.code == 0, first.err
    if action == "update":
        return ["deploy", bank_model_v2, "--name", "m"]
    second = run_killed(project.dir, *_cli_args(project, "deploy", bank_model_v2, "--name", "m"))
    assert second.code == 0, second.err
    return ["rollback", "m"] if action == "rollback" else ["delete", "m"]


@pytest.mark.parametrize("step", STEPS)
def test_killed_at_each_step_leaves_nothing_orphaned(sample_project, bank_model, bank_model_v2, step) -> None:
    command = _prepare(sample_project, step.split(":")[0], bank_model, bank_model_v2)
    killed = run_killed(sample_project.dir, *_cli_args(sample_project, *command), step=step)
    assert killed.killed
    check_after_crash(sample_project, "m", "sample", lambda: list(_entries(sample_project)), model=bank_model)


def test_reconcile_command_settles_a_killed_create(sample_project, cli, bank_model) -> None:
    run_killed(sample_project.dir, *_cli_args(sample_project, "deploy", bank_model, "--name", "m"),
               step="create:target-created")
    status = cli("status", "m", "--json", "--credentials", sample_project.credentials)
    assert status.code == 1 and status.json()["status"] == "pending"
    [op] = status.json()["pending"]
    assert (op["action"], op["owner_state"]) == ("create", "dead")
    listed = cli("list", "--json").json()
    assert [p["name"] for p in listed["pending"]] == ["m"]
    done = cli("reconcile", "--json", "--credentials", sample_project.credentials)
    assert done.code == 0, done.err
    [note] = done.json()["reconciled"]
    assert (note["name"], note["outcome"], note["revision"]) == ("m", "adopted", 1)
    shown = cli("status", "m", "--json", "--credentials", sample_project.credentials).json()
    assert shown["status"] == "ready" and shown["pending"] == [] and shown["reconciled"]["outcome"] == "adopted"
    assert cli("reconcile", "--credentials", sample_project.credentials).out.strip() == "nothing to reconcile"


def test_an_operation_whose_process_runs_blocks_with_a_clear_error(project, memory, bank_model) -> None:
    store = MetadataStore(project.metadata)
    parent = Owner.current()
    running = Owner(os.getppid(), parent.host, parent.boot_id, None)  # pytest's parent: alive, not us
    store.begin("m", "memory", action="create", revision=1, owner=running)
    with pytest.raises(PendingOperationError, match=rf"another deploykit process \(pid {os.getppid()} on "
                                                    rf"{socket.gethostname()} since .*\) is deploying 'm'"):
        deploykit.deploy(bank_model, target="memory", name="m", metadata=project.metadata)
    report = deploykit.reconcile(metadata=project.metadata)
    assert report.ok and report.reconciled == [] and [op.name for op, _ in report.skipped] == ["m"]


def test_an_operation_from_another_host_is_never_reconciled_behind_its_back(project, memory, bank_model) -> None:
    store = MetadataStore(project.metadata)
    store.begin("m", "memory", action="create", revision=1, owner=Owner(4242, "ci-runner-elsewhere"))
    with pytest.raises(PendingOperationError, match=r"host ci-runner-elsewhere .*cannot be checked from this "
                                                    r"machine.*deploykit reconcile m --target memory --force"):
        deploykit.deploy(bank_model, target="memory", name="m", metadata=project.metadata)
    assert deploykit.reconcile(metadata=project.metadata).skipped
    forced = deploykit.reconcile(metadata=project.metadata, force=True)
    assert [n.outcome for n in forced.reconciled] == ["removed"] and store.pending() == []


def test_a_failed_cleanup_is_kept_and_reconcile_exits_1(project, memory, cli, bank_model) -> None:
    store = MetadataStore(project.metadata)
    store.begin("m", "memory", action="create", revision=1, owner=dead_owner())
    memory.fail_next("reconcile", "platform unreachable")
    report = deploykit.reconcile(metadata=project.metadata)
    assert not report.ok and "platform unreachable" in report.failed[0][1]
    [op] = store.pending()
    assert op.status == "cleanup-failed" and "platform unreachable" in (op.error or "")
    again = deploykit.deploy(bank_model, target="memory", name="m", metadata=project.metadata)  # retried, then deployed
    assert again.action == "created" and store.pending() == [] and memory.names() == ["m"]


def test_an_unexpected_exception_is_one_json_object(project, memory, bank_model) -> None:
    from click.testing import CliRunner

    from deploykit.cli import cli

    memory.fail_next("deploy", RuntimeError("plugin bug"))
    result = CliRunner().invoke(cli, ["deploy", str(bank_model), "--target", "memory", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"error": "unexpected RuntimeError: plugin bug (a bug in deploykit or a "
                                                  "plugin; run again with DEPLOYKIT_DEBUG=1 for the traceback, "
                                                  "and report it)", "type": "RuntimeError"}
    assert "Traceback" not in result.stdout
    [op] = MetadataStore(project.metadata).pending()  # nobody knows what the bug left: reconciled next time
    assert op.action == "create"


def test_a_usage_error_with_json_is_one_json_object(cli) -> None:
    result = cli("deploy", "--json")
    assert result.code == 2 and "Missing argument 'MODEL'" in result.json()["error"]


def test_status_and_delete_need_no_token_they_do_not_use(project, cli, bank_model, monkeypatch) -> None:
    monkeypatch.delenv("DEPLOYKIT_TEST_TOKEN", raising=False)
    project.write_credentials("local:\n  port: 0\n  token: ${DEPLOYKIT_TEST_TOKEN}\n")
    deployed = cli("deploy", bank_model, "--name", "m", "--json", env={"DEPLOYKIT_TEST_TOKEN": "s3cret"})
    assert deployed.code == 0, deployed.err
    status = cli("status", "m", "--json")
    assert status.code == 0 and status.json()["status"] == "ready", status.out
    refused = cli("deploy", bank_model, "--name", "m", "--force", "--json")
    assert refused.code == 1 and "DEPLOYKIT_TEST_TOKEN is not set" in refused.json()["error"]
    gone = cli("delete", "m", "--json")
    assert gone.code == 0 and gone.json()["status"] == "deleted", gone.out
