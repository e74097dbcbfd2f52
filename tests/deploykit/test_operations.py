"""Pending operations and locks: intent recorded durably, seen by other processes, orphans told
from running owners, one atomic write to finish, deployment locks that let names run in parallel."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import yaml

from deploykit.deployment import Deployment
from deploykit.errors import MetadataError
from deploykit.metadata import MetadataStore
from deploykit.operations import Owner, PendingOperation, Reconciliation


def _record(name: str = "bank-model", target: str = "local", revision: int = 1) -> Deployment:
    return Deployment(name=name, target=target, revision=revision, status="ready", url="http://127.0.0.1:8000",
                      model_sha256="ab" * 32, ids={"pid": 4242, "port": 8000})


def _python(code: str) -> subprocess.Popen[str]:
    """A child Python that prints 'ready' once it has done its setup, then waits to be killed."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"


def test_begin_is_durable_and_seen_by_another_store(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yaml"
    op = MetadataStore(path).begin("bank-model", "local", action="create", revision=1,
                                   planned={"endpoint": "bank-model-1-ab12cd34"})
    seen = MetadataStore(path).pending("bank-model", "local")
    assert [o.id for o in seen] == [op.id]
    assert seen[0].planned == {"endpoint": "bank-model-1-ab12cd34"}
    assert seen[0].owner.pid == os.getpid() and seen[0].status == "pending"
    assert not seen[0].is_orphaned()  # we are still running
    data = yaml.safe_load(path.read_text())
    assert data["pending"][op.id]["action"] == "create"
    assert "deployments" not in data or data["deployments"] == {}


def test_note_writes_each_id_at_once(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "metadata.yaml")
    op = store.begin("m", "local", action="create", revision=1)
    store.note(op, pid=4242)
    assert store.pending("m")[0].ids == {"pid": 4242}
    store.note(op, port=8000)
    assert store.pending("m")[0].ids == {"pid": 4242, "port": 8000}


def test_finish_puts_the_record_and_drops_the_op_in_one_write(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metadata.yaml"
    store = MetadataStore(path)
    op = store.begin("bank-model", "local", action="create", revision=1)
    writes: list[str] = []
    real = MetadataStore.write

    def counting(self: MetadataStore, state: object) -> None:
        writes.append("write")
        real(self, state)  # type: ignore[arg-type]

    monkeypatch.setattr(MetadataStore, "write", counting)
    store.finish(op, _record())
    assert writes == ["write"]
    data = yaml.safe_load(path.read_text())
    assert "pending" not in data  # the key goes away: the old format is left exactly
    assert data["deployments"]["bank-model"]["local"]["ids"] == {"pid": 4242, "port": 8000}
    assert store.pending() == []


def test_finish_of_a_delete_removes_the_record(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "metadata.yaml")
    with store.transaction() as state:
        state.put(_record())
    op = store.begin("bank-model", "local", action="delete", revision=1)
    store.finish(op, None)
    assert store.read().all() == [] and store.pending() == []


def test_abandon_drops_only_that_op(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "metadata.yaml")
    first = store.begin("a", "local", action="create", revision=1)
    second = store.begin("b", "local", action="create", revision=1)
    store.abandon(first)
    assert [o.id for o in store.pending()] == [second.id]
    assert store.pending("a") == []


def test_ops_work_inside_an_open_transaction_and_are_not_lost(tmp_path: Path) -> None:
    """Today's lifecycle holds a transaction around the whole deploy: begin/note inside it
    must neither deadlock on the metadata lock nor be overwritten when the block ends."""
    path = tmp_path / "metadata.yaml"
    store = MetadataStore(path, lock_timeout=5)
    with store.transaction() as state:
        op = MetadataStore(path).begin("m", "local", action="create", revision=1)
        # already durable, while the outer block still runs
        assert [o.id for o in MetadataStore(path).read().pending()] == [op.id]
        store.note(op, pid=1)
        state.put(_record("m"))
    final = store.read()
    assert final.pending()[0].ids == {"pid": 1} and final.get("m").revision == 1


def test_a_killed_owner_is_told_from_a_running_one(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yaml"
    child = _python(f"""
        import time
        from deploykit.metadata import MetadataStore
        store = MetadataStore({str(path)!r})
        op = store.begin("bank-model", "local", action="update", revision=2, planned={{"log": "x"}})
        store.note(op, pid=999999)
        print("ready", flush=True)
        time.sleep(600)
    """)
    try:
        _wait_ready(child)
        (op,) = MetadataStore(path).pending("bank-model", "local")
        assert op.owner.pid == child.pid
        assert op.owner_state() == "running" and not op.is_orphaned()
        child.send_signal(signal.SIGKILL)
        # a killed child that is not reaped yet is a zombie: already dead for a reconciler
        for _ in range(200):
            if op.is_orphaned():
                break
            threading.Event().wait(0.05)
        assert op.is_orphaned()
    finally:
        child.kill()
        child.wait()
    assert op.is_orphaned()
    assert MetadataStore(path).pending()[0].ids == {"pid": 999999}


def test_owner_state_rules() -> None:
    me = Owner.current()
    assert me.state() == "running"
    assert Owner(me.pid, me.host, me.boot_id, (me.started or 0) + 1).state() == "dead"  # pid reused
    assert Owner(me.pid, me.host, "another-boot", me.started).state() == "dead"  # machine rebooted
    assert Owner(me.pid, socket.gethostname() + "-elsewhere").state() == "unknown"
    op = PendingOperation("m", "local", "create", 1, owner=Owner(me.pid, "elsewhere"))
    assert not op.is_orphaned()  # cannot be told from here: never reconciled behind its back
    assert "process" in op.describe() and "unknown" in op.describe()


def test_resolve_leaves_a_note_on_the_record_and_in_the_list(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "metadata.yaml")
    op = store.begin("bank-model", "local", action="create", revision=1)
    store.note(op, pid=4242, port=8000)
    note = store.resolve(op, "adopted", "server pid 4242 was healthy", _record())
    dep = store.read().get("bank-model")
    assert dep.reconciled == note.to_dict() and dep.summary()["reconciled"]["outcome"] == "adopted"
    assert store.pending() == []
    assert [n.op_id for n in store.reconciliations("bank-model", "local")] == [op.id]
    assert "reconciled" in note.describe() and "adopted" in note.describe()
    # a record read back still round-trips, the note included
    again = Deployment.from_dict(dep.name, dep.target, dep.to_dict())
    assert again == dep


def test_resolve_removed_forgets_the_record_and_caps_the_notes(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "metadata.yaml")
    for _ in range(MetadataStore.KEEP_RECONCILED + 3):
        op = store.begin("m", "local", action="create", revision=1)
        store.resolve(op, "removed", "the server never started", forget=True)
    notes = store.reconciliations()
    assert len(notes) == MetadataStore.KEEP_RECONCILED and all(n.outcome == "removed" for n in notes)
    assert store.read().all() == []


def test_cleanup_failed_stays_pending_with_its_error(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "metadata.yaml")
    op = store.begin("m", "watsonml", action="create", revision=1)
    store.fail_cleanup(op, "the asset a-1 could not be deleted (HTTP 503)")
    (seen,) = store.pending("m")
    assert seen.status == "cleanup-failed" and "HTTP 503" in seen.describe()


@pytest.mark.parametrize(("text", "key"), [
    ("pending: [1, 2]\n", "pending"),
    ("pending:\n  op1: nope\n", "pending.op1"),
    ("pending:\n  op1: {name: m, target: local, action: explode, revision: 1, started_at: x, updated_at: x,"
     " owner: {pid: 1, host: h}}\n", "pending.op1.action"),
    ("pending:\n  op1: {name: m, target: local, action: create, revision: one, started_at: x, updated_at: x,"
     " owner: {pid: 1, host: h}}\n", "pending.op1.revision"),
    ("pending:\n  op1: {name: m, target: local, action: create, revision: 1, started_at: x, updated_at: x,"
     " owner: {pid: '1', host: h}}\n", "pending.op1.owner.pid"),
    ("pending:\n  op1: {name: m, target: local, action: create, revision: 1, started_at: x, updated_at: x,"
     " ids: [1, 2], owner: {pid: 1, host: h}}\n", "pending.op1.ids"),
    ("reconciled: {a: 1}\n", "reconciled"),
])
def test_wrong_typed_operations_are_clear_errors(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "metadata.yaml"
    path.write_text(text)
    with pytest.raises(MetadataError) as info:
        MetadataStore(path).read()
    assert f"{path}: {key} is " in str(info.value) and "fix that value by hand" in str(info.value)


def test_stored_operation_roundtrips() -> None:
    op = PendingOperation("m", "local", "rollback", 3, planned={"port": 8000}, ids={"pid": 7})
    assert PendingOperation.from_dict(op.id, op.to_dict()) == op
    note = Reconciliation.of(op, "removed", "gone")
    assert Reconciliation.from_dict(note.to_dict(), "f", "reconciled[0]") == note


# -- locks ---------------------------------------------------------------------------------

def _hold_lock(path: Path, name: str) -> subprocess.Popen[str]:
    return _python(f"""
        import time
        from deploykit.metadata import MetadataStore
        with MetadataStore({str(path)!r}).deployment_lock({name!r}, "local"):
            print("ready", flush=True)
            time.sleep(600)
    """)


def test_deployment_lock_names_its_holder_on_timeout(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yaml"
    holder = _hold_lock(path, "bank-model")
    try:
        _wait_ready(holder)
        store = MetadataStore(path)
        with pytest.raises(MetadataError) as info:
            with store.deployment_lock("bank-model", "local", timeout=0.2):
                pass
        message = str(info.value)
        assert f"process {holder.pid} on {socket.gethostname()}" in message
        assert "deployment 'bank-model' on local is locked" in message and "wait for the other command" in message
        # other names are free, and so is the metadata lock: deploys of different names run in parallel
        with store.deployment_lock("other-model", "local", timeout=0.2):
            with store.transaction(timeout=0.2) as state:
                state.put(_record("other-model"))
    finally:
        holder.kill()
        holder.wait()
    # the OS releases the lock of a killed process: nothing to clean up by hand
    with MetadataStore(path).deployment_lock("bank-model", "local", timeout=5):
        pass


def test_metadata_lock_timeout_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yaml"
    holder = _python(f"""
        import time
        from deploykit.metadata import MetadataStore
        with MetadataStore({str(path)!r}).transaction():
            print("ready", flush=True)
            time.sleep(600)
    """)
    try:
        _wait_ready(holder)
        with pytest.raises(MetadataError, match=rf"{path} is locked by process {holder.pid} .*gave up after 0 s"):
            with MetadataStore(path, lock_timeout=0.1).transaction():
                pass
        assert MetadataStore(path).read().all() == []  # reading needs no lock
    finally:
        holder.kill()
        holder.wait()


def test_deployment_lock_is_reentrant_and_its_file_stays_in_the_lock_folder(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "metadata.yaml")
    for name in ("../../x", "team/model", "x" * 300, "dot.name", "ünï"):
        with store.deployment_lock(name, "local", timeout=1):
            with store.deployment_lock(name, "local", timeout=1):
                pass
    locks = store.state_dir / "locks"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all(p.parent == locks for p in files)
    assert all(len(p.name) < 120 for p in files)
    assert len({p.name for p in files if p.suffix == ".lock"}) == 5  # no two names share a lock


def test_nesting_through_a_relative_and_an_absolute_path_shares_one_lock(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with MetadataStore("metadata.yaml", lock_timeout=2).transaction() as state:
        op = MetadataStore(tmp_path / "metadata.yaml", lock_timeout=2).begin("m", "local", action="create",
                                                                              revision=1)
        state.put(_record("m"))
    final = MetadataStore(tmp_path / "metadata.yaml").read()
    assert [o.id for o in final.pending()] == [op.id] and final.get("m").revision == 1
