"""The local target's crash matrix: a real ``deploykit`` SIGKILLed at every step boundary of create,
update, rollback and delete (the lifecycle's ``STEPS`` and the local target's own crash points), and
at timed moments across an update.

After each kill: metadata.yaml reads; the reconcile adopts the new revision when the kill came after
it joined the public port, and removes it otherwise (the outcome of each cell is asserted); the next
``deploy`` ends with exactly one serving revision and nothing pending; and ``delete`` leaves no
server process, no open port and no run file of the deployment. After a killed update or rollback,
a reconcile must leave exactly one revision answering on the public port: every fresh
connection gets the same model's answers, from the one recorded process, and no other server
process of the deployment runs.

Server processes are found from ``/proc`` (the local server module with a run file of this deployment
on its command line), never from what deploykit recorded.

A server start costs seconds (scikit-learn's import alone is most of it), so the update and timed
cells share one deployment, and the rollback and delete cells another (a *lane* per class): every cell starts from what
the previous cell's check deploy left, which is exactly the state the next kill needs, and each lane
ends with the delete check. Every cell asserts that exactly one server process of the deployment
runs after its deploy, so a process left by any cell fails that cell. Create cells need nothing
before them and run the whole ``check_after_crash``, delete included, each in a fresh project.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import deploykit
from deploykit.artifact import sha256_of
from deploykit.faults import STEPS
from deploykit.metadata import MetadataStore
from deploykit.testing.crash import (
    accepts,
    check_after_crash,
    check_deleted,
    check_redeploy,
    processes,
    run_killed,
)
from deploykit.testing.models import ContractModels, two_fits
from deploykit.testing.project import Project, stop_servers
from deploykit_plugins.local.target import CRASH_POINTS

NAME = "crash"
SERVER_MODULE = "deploykit_plugins.local.server"

#: Every boundary each action passes, in the order it passes them.
ORDER = {
    "create": ("intent-recorded", "spawned", "target-created", "private-smoke-tested", "joined", "switched",
               "ready", "smoke-tested"),
    "update": ("intent-recorded", "spawned", "target-updated", "private-smoke-tested", "joined", "switched",
               "ready", "smoke-tested"),
    "rollback": ("intent-recorded", "spawned", "target-rolled-back", "private-smoke-tested", "joined", "switched",
                 "ready"),
    "delete": ("intent-recorded", "target-deleted"),
}
#: Killed at or after these, the new revision already accepts on the public port: reconcile adopts it.
SERVING = {"joined", "switched", "ready", "smoke-tested"}
#: Kill times (ms after the command started) spread across an update (one takes 4 to 8 s here).
SWEEP_MS = (1500, 3000, 4500)


@dataclass
class Lane:
    """One project and deployment that a chain of crash cells shares, and every port it used."""

    project: Project
    models: ContractModels
    ports: set[int] = field(default_factory=set)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ContractModels:
    return two_fits(tmp_path_factory.mktemp("crash-models"))


def _new_lane(tmp_path_factory: pytest.TempPathFactory, models: ContractModels) -> Iterator[Lane]:
    folder = tmp_path_factory.mktemp("lane")
    project = Project(folder, folder / "credentials.yaml", folder / "metadata.yaml")
    project.write_credentials("local:\n  port: 0\n")
    yield Lane(project, models)
    stop_servers(folder)


@pytest.fixture(scope="class")
def lane(tmp_path_factory: pytest.TempPathFactory, models: ContractModels) -> Iterator[Lane]:
    yield from _new_lane(tmp_path_factory, models)


# -- what runs, from /proc and the wire ---------------------------------------------------------

def _common(project: Project) -> list[Any]:
    return ["--target", "local", "--credentials", project.credentials, "--metadata", project.metadata]


def _servers(project: Project) -> dict[int, list[str]]:
    """Live local server processes of the deployment, by their run file on the command line."""
    return processes(SERVER_MODULE, f"{project.dir}/.deploykit/run/{NAME}-r")


def _remember_ports(lane: Lane) -> None:
    """Add every port the record and the pending operations of the deployment name."""
    store = MetadataStore(lane.project.metadata)
    lane.ports |= {int(op.ids["port"]) for op in store.pending(NAME, "local") if op.ids.get("port")}
    record = lane.project.record(NAME, "local")
    if record and record.get("ids", {}).get("port"):
        lane.ports.add(int(record["ids"]["port"]))


def _request(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request on a fresh connection (a second listener on the port would get some of them)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _predictions(model: Path, rows: list[dict]) -> list[Any]:
    import joblib
    import pandas as pd

    return list(joblib.load(model).predict(pd.DataFrame(rows)))


def _model_of(models: ContractModels, sha256: str) -> Path:
    for model in (models.first, models.second):
        if sha256_of(model) == sha256:
            return model
    raise AssertionError(f"sha256 {sha256} is neither contract model")


def _one_version_serves(lane: Lane, requests: int = 10) -> dict[str, Any]:
    """Exactly one revision answers on the public port: the recorded process, with the recorded model,
    on every fresh connection, and no other server process of the deployment runs."""
    record = lane.project.record(NAME, "local")
    assert record is not None, "no record after the reconcile"
    expected = _predictions(_model_of(lane.models, record["model_sha256"]), lane.models.rows)
    pid = record["ids"]["pid"]
    for _ in range(requests):
        status, health = _request(record["url"], "GET", "/health")
        assert status == 200 and (health["pid"], health["model_sha256"]) == (pid, record["model_sha256"]), health
        status, body = _request(record["url"], "POST", "/predict", lane.models.rows)
        assert status == 200 and body["predictions"] == expected, (status, body)
    servers = _servers(lane.project)
    assert set(servers) == {pid}, f"server processes of {NAME!r}: {servers}; the record says pid {pid}"
    return record


def _serving(lane: Lane) -> Any:
    """``serving`` for check_redeploy: the server processes of the deployment, after checking that
    fresh connections reach the recorded one."""
    def count() -> int:
        record = lane.project.record(NAME, "local")
        assert record is not None
        lane.ports.add(int(record["ids"]["port"]))
        for _ in range(4):
            status, health = _request(record["url"], "GET", "/health")
            assert status == 200 and health["pid"] == record["ids"]["pid"], health
        return len(_servers(lane.project))

    return count


def _leftovers(lane: Lane) -> Any:
    def left() -> list[str]:
        found = [f"server pid {pid}: {' '.join(argv)}" for pid, argv in _servers(lane.project).items()]
        found += [f"port {port} still accepts connections" for port in sorted(lane.ports)
                  if accepts("127.0.0.1", port)]
        found += [f"run file {path.name}"
                  for path in sorted((lane.project.dir / ".deploykit" / "run").glob(f"{NAME}-r*"))]
        return found

    return left


# -- bringing a lane to where a cell starts ----------------------------------------------------

def _deploy(project: Project, model: Path) -> None:
    """In process (no CLI start-up): reconciles what a failed earlier cell left, then deploys."""
    deploykit.deploy(model, name=NAME, credentials=project.credentials, metadata=project.metadata,
                     progress=lambda message: None)


def _serving_record(lane: Lane, *, rollback: bool = False) -> dict[str, Any]:
    """The record to crash from: the lane's deployment settled and serving (with a revision of the
    other model to roll back to, for ``rollback``). The previous cell normally left exactly that;
    only when it failed is it deployed again."""
    store = MetadataStore(lane.project.metadata)
    record = lane.project.record(NAME, "local")
    if record is None or store.pending(NAME, "local") or (rollback and _rollback_target(record) is None):
        _deploy(lane.project, lane.models.first)
        if rollback:
            _deploy(lane.project, lane.models.second)
        record = lane.project.record(NAME, "local")
    assert record is not None
    _remember_ports(lane)
    return record


def _rollback_target(record: dict[str, Any]) -> int | None:
    """The newest earlier revision that serves the other model (a rollback that switches models)."""
    other = [int(e["revision"]) for e in record.get("history") or []
             if e.get("model_sha256") and e["model_sha256"] != record["model_sha256"]]
    return max(other) if other else None


def _reconcile(lane: Lane) -> list[dict[str, Any]]:
    """``deploykit reconcile NAME`` in process (the killed process is gone; nothing else runs)."""
    report = deploykit.reconcile(NAME, target="local", credentials=lane.project.credentials,
                                 metadata=lane.project.metadata)
    assert report.ok and not report.skipped, (report.failed, report.skipped)
    return [note.to_dict() for note in report.reconciled]


# -- the matrix ---------------------------------------------------------------------------------

def test_the_matrix_covers_every_step() -> None:
    local = {f"{action}:{point}" for action in ("create", "update", "rollback") for point in CRASH_POINTS}
    cells = {f"{action}:{step}" for action, steps in ORDER.items() for step in steps}
    assert sorted(cells) == sorted(set(STEPS) | local)


@pytest.mark.parametrize("step", ORDER["create"])
def test_killed_during_create(project: Project, models: ContractModels, step: str) -> None:
    lane = Lane(project, models)
    killed = run_killed(project.dir, "deploy", models.first, "--name", NAME, *_common(project), step=f"create:{step}")
    assert killed.killed
    _remember_ports(lane)
    summary = check_after_crash(project, NAME, "local", _leftovers(lane), model=models.first, serving=_serving(lane),
                                timeout=120)
    outcome = "adopted" if step in SERVING else "removed"
    assert summary["action"] == ("unchanged" if outcome == "adopted" else "created"), summary
    notes = MetadataStore(project.metadata).reconciliations(NAME, "local")
    assert [(n.action, n.outcome) for n in notes] == [("create", outcome)], notes


class TestUpdate:
    """Killed updates, one after the other on one deployment; each switches to the other model.
    Then the timed sweep on the same deployment, then the delete check."""

    @pytest.mark.parametrize("step", ORDER["update"])
    def test_killed_during_update(self, lane: Lane, step: str) -> None:
        before, new = _update_from(lane)
        project = lane.project
        assert run_killed(project.dir, "deploy", new, "--name", NAME, *_common(project), step=f"update:{step}").killed
        MetadataStore(project.metadata).read()
        _remember_ports(lane)
        [note] = _reconcile(lane)
        adopted = step in SERVING
        assert (note["action"], note["outcome"]) == ("update", "adopted" if adopted else "removed"), note
        record = _one_version_serves(lane)
        if adopted:
            assert (record["revision"], record["model_sha256"]) == (note["revision"], sha256_of(new))
        else:
            assert (record["revision"], record["model_sha256"]) == (before["revision"], before["model_sha256"])
        summary = check_redeploy(project, NAME, "local", model=new, serving=_serving(lane), timeout=120)
        assert summary["action"] == ("unchanged" if adopted else "updated"), summary

    @pytest.mark.parametrize("after_ms", SWEEP_MS)
    def test_killed_at_a_time_during_an_update(self, lane: Lane, after_ms: int) -> None:
        before, new = _update_from(lane)
        project = lane.project
        run_killed(project.dir, "deploy", new, "--name", NAME, *_common(project), after_ms=after_ms)
        MetadataStore(project.metadata).read()
        _remember_ports(lane)
        notes = _reconcile(lane)
        assert len(notes) <= 1 and all(n["outcome"] in ("adopted", "removed") for n in notes), notes
        record = _one_version_serves(lane)
        assert record["model_sha256"] in (before["model_sha256"], sha256_of(new))
        check_redeploy(project, NAME, "local", model=new, serving=_serving(lane), timeout=120)

    def test_then_delete_leaves_nothing(self, lane: Lane) -> None:
        _serving_record(lane)
        check_deleted(lane.project, NAME, "local", _leftovers(lane))


def _update_from(lane: Lane) -> tuple[dict[str, Any], Path]:
    """The record an update cell starts from, and the other model (the one it deploys)."""
    before = _serving_record(lane)
    current = _model_of(lane.models, before["model_sha256"])
    return before, lane.models.second if current == lane.models.first else lane.models.first


class TestRollbackAndDelete:
    """Killed rollbacks on one deployment, each back to the revision of the other model; then killed
    deletes (the next deploy completes the delete and creates the deployment anew); then the delete check."""

    @pytest.mark.parametrize("step", ORDER["rollback"])
    def test_killed_during_rollback(self, lane: Lane, step: str) -> None:
        before = _serving_record(lane, rollback=True)
        to = _rollback_target(before)
        current = _model_of(lane.models, before["model_sha256"])
        project = lane.project
        killed = run_killed(project.dir, "rollback", NAME, "--to", to, *_common(project), step=f"rollback:{step}")
        assert killed.killed
        MetadataStore(project.metadata).read()
        _remember_ports(lane)
        [note] = _reconcile(lane)
        adopted = step in SERVING
        assert (note["action"], note["outcome"]) == ("rollback", "adopted" if adopted else "removed"), note
        record = _one_version_serves(lane)
        if adopted:
            assert record["revision"] == to and record["model_sha256"] != before["model_sha256"]
        else:
            assert (record["revision"], record["model_sha256"]) == (before["revision"], before["model_sha256"])
        summary = check_redeploy(project, NAME, "local", model=current, serving=_serving(lane), timeout=120)
        assert summary["action"] == ("updated" if adopted else "unchanged"), summary

    @pytest.mark.parametrize("step", ORDER["delete"])
    def test_killed_during_delete(self, lane: Lane, step: str) -> None:
        before = _serving_record(lane)
        project = lane.project
        assert run_killed(project.dir, "delete", NAME, *_common(project), step=f"delete:{step}").killed
        MetadataStore(project.metadata).read()
        summary = check_redeploy(project, NAME, "local", model=lane.models.first, serving=_serving(lane),
                                 timeout=120)
        assert (summary["action"], summary["revision"]) == ("created", 1), summary
        assert summary["ids"]["pid"] != before["ids"]["pid"]
        note = MetadataStore(project.metadata).reconciliations(NAME, "local")[-1]
        assert (note.action, note.outcome, note.detail) == ("delete", "removed", "completed the interrupted delete")

    def test_then_delete_leaves_nothing(self, lane: Lane) -> None:
        _serving_record(lane)
        check_deleted(lane.project, NAME, "local", _leftovers(lane))
