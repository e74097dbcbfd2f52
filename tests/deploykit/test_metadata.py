"""metadata.yaml: atomic writes, unknown keys kept, corrupt files refused, races both recorded."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
import yaml

from deploykit.deployment import Deployment
from deploykit.errors import DeployKitError, MetadataError, NotDeployedError
from deploykit.metadata import MetadataStore


def _record(name: str = "m", target: str = "memory", revision: int = 1) -> Deployment:
    return Deployment(name=name, target=target, revision=revision, status="ready", url="memory://1",
                      model_sha256="ab" * 32, ids={"deployment_id": "x"})


def test_missing_file_reads_as_empty(tmp_path: Path) -> None:
    assert MetadataStore(tmp_path / "metadata.yaml").read().all() == []


def test_roundtrip_keeps_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yaml"
    path.write_text("team: risk\ndeployments:\n  m:\n    memory:\n      revision: 1\n      owner: alice\n")
    store = MetadataStore(path)
    with store.transaction() as state:
        dep = state.get("m")
        assert dep.extra == {"owner": "alice"}
        dep.revision = 2
        state.put(dep)
    data = yaml.safe_load(path.read_text())
    assert data["team"] == "risk"
    assert data["deployments"]["m"]["memory"]["owner"] == "alice"
    assert data["deployments"]["m"]["memory"]["revision"] == 2


def test_corrupt_yaml_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yaml"
    path.write_text("deployments: [unclosed\n")
    before = path.read_bytes()
    with pytest.raises(MetadataError, match="not valid YAML at line 2.*will not overwrite"):
        with MetadataStore(path).transaction() as state:
            state.put(_record())
    assert path.read_bytes() == before


def test_wrong_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yaml"
    path.write_text("- a list\n")
    with pytest.raises(MetadataError, match="must be a mapping"):
        MetadataStore(path).read()


def test_failed_write_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metadata.yaml"
    store = MetadataStore(path)
    with store.transaction() as state:
        state.put(_record())
    before = path.read_text()

    def boom(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(MetadataError, match=r"cannot write metadata.yaml in .* \(ENOSPC: No space left on device\); the disk is full"):
        with store.transaction() as state:
            state.put(_record(revision=2))
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_lookup_errors_name_what_is_recorded(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "metadata.yaml")
    with store.transaction() as state:
        state.put(_record("a", "memory"))
        state.put(_record("a", "local"))
    state = store.read()
    with pytest.raises(NotDeployedError, match=r"no deployment named 'b'.*recorded: a \(local\), a \(memory\)"):
        state.get("b")
    with pytest.raises(DeployKitError, match="several targets.*--target"):
        state.get("a")
    assert state.get("a", "local").target == "local"


def test_legacy_flat_keys_are_read_and_kept_in_step(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yaml"
    path.write_text("model_uid: m-1\ndeployment_uid: d-1\nspace_id: s-1\n")
    store = MetadataStore(path)
    legacy = store.read().find("bank", "watsonml")
    assert legacy is not None and legacy.ids == {"model_uid": "m-1", "deployment_uid": "d-1", "space_id": "s-1"}
    with store.transaction() as state:
        legacy.ids["model_uid"] = "m-2"
        state.put(legacy)
    data = yaml.safe_load(path.read_text())
    assert data["model_uid"] == "m-2" and data["deployments"]["bank"]["watsonml"]["ids"]["model_uid"] == "m-2"


def _put_many(path: str, name: str, count: int) -> None:
    store = MetadataStore(path)
    for i in range(count):
        with store.transaction() as state:
            state.put(_record(f"{name}-{i}"))


def test_racing_writers_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "metadata.yaml")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_put_many, args=(path, f"w{w}", 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = {d.name for d in MetadataStore(path).read().all()}
    assert names == {f"w{w}-{i}" for w in range(3) for i in range(15)}


# -- wrong-typed values, bad bytes, failing disks: clear errors, never tracebacks ------------

@pytest.mark.parametrize(("body", "key", "seen"), [
    ("    local:\n      revision: two\n", "deployments.bank-model.local.revision", "'two' (text)"),
    ("    local:\n      revision: 1\n      ids: [1, 2]\n", "deployments.bank-model.local.ids", "[1, 2] (a list)"),
    ("    local:\n      revision: 1\n      history: 5\n", "deployments.bank-model.local.history", "5 (a whole number)"),
    ("    local: just text\n", "deployments.bank-model.local", "'just text' (text)"),
    ("    local:\n      revision: true\n", "deployments.bank-model.local.revision", "True (a boolean)"),
    ("    local:\n      columns: age\n", "deployments.bank-model.local.columns", "'age' (text)"),
    ("    local:\n      history: [{revision: x}]\n", "deployments.bank-model.local.history[0].revision", "'x'"),
    ("    local:\n      history: [7]\n", "deployments.bank-model.local.history[0]", "7"),
])
def test_wrong_typed_values_name_file_key_value_and_fix(tmp_path: Path, body: str, key: str, seen: str) -> None:
    path = tmp_path / "metadata.yaml"
    path.write_text("deployments:\n  bank-model:\n" + body)
    before = path.read_bytes()
    with pytest.raises(MetadataError) as info:
        with MetadataStore(path).transaction() as state:
            state.put(_record())
    message = str(info.value)
    assert message.startswith(f"{path}: {key} is {seen}")
    assert "it must be" in message and "fix that value by hand" in message
    assert path.read_bytes() == before


def test_a_name_that_is_not_a_mapping_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yaml"
    path.write_text("deployments:\n  bank-model: 5\n")
    with pytest.raises(MetadataError, match=r"deployments\.bank-model is 5 .*mapping from target name"):
        MetadataStore(path).read()


def test_unquoted_timestamps_in_a_hand_edited_file_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yaml"
    path.write_text("deployments:\n  m:\n    memory:\n      revision: 1\n      created_at: 2024-05-01T12:00:00+00:00\n")
    assert MetadataStore(path).read().get("m").created_at == "2024-05-01T12:00:00+00:00"


def test_non_utf8_file_names_the_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yaml"
    path.write_bytes(b"deployments:\n  caf\xe9: {}\n")
    with pytest.raises(MetadataError, match=r"is not UTF-8 text: byte 18 \(line 2\) is 0xe9; .*re-save it as UTF-8"):
        MetadataStore(path).read()
    path.write_bytes(b"\xef\xbb\xbfdeployments:\n  caf\xe9: {}\n")  # after a byte-order mark, offsets still count it
    with pytest.raises(MetadataError, match=r"byte 21 \(line 2\) is 0xe9"):
        MetadataStore(path).read()
    path.write_bytes(b"\xef\xbb\xbfdeployments: {}\n")
    assert MetadataStore(path).read().all() == []


def _failing(err: int, text: str) -> object:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(err, text)
    return fail


@pytest.mark.parametrize(("patched", "err", "text", "code", "fix"), [
    # simulated: the tests run as root, where a chmod'd folder does not stop writes
    ("os.open", 30, "Read-only file system", "EROFS", "the file system is read-only"),
    ("os.write", 28, "No space left on device", "ENOSPC", "the disk is full"),
    ("os.fsync", 5, "Input/output error", "EIO", "an I/O error"),
    ("os.replace", 13, "Permission denied", "EACCES", "permission denied"),
])
def test_a_failing_disk_is_a_clear_error_and_leaves_the_old_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patched: str, err: int, text: str, code: str,
        fix: str) -> None:
    path = tmp_path / "metadata.yaml"
    store = MetadataStore(path)
    with store.transaction() as state:
        state.put(_record())
    before = path.read_bytes()
    real_open = os.open

    def open_tmp_fails(file: object, *args: object, **kwargs: object) -> int:
        if str(file).endswith(".tmp"):
            raise OSError(err, text)
        return real_open(file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(patched, open_tmp_fails if patched == "os.open" else _failing(err, text))
    with pytest.raises(MetadataError) as info:
        with store.transaction() as state:
            state.put(_record(revision=2))
    monkeypatch.undo()
    message = str(info.value)
    assert f"cannot write metadata.yaml in {tmp_path.resolve()} ({code}: {text}); {fix}" in message
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_temp_file_left_by_a_killed_writer_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yaml"
    stale = tmp_path / ".metadata.yaml.4242.1.tmp"
    stale.write_text("half a file")
    with MetadataStore(path).transaction() as state:
        state.put(_record())
    assert not stale.exists() and MetadataStore(path).read().get("m").revision == 1


# -- paths relative to the metadata file ----------------------------------------------------

def test_paths_are_stored_relative_and_follow_a_moved_project(tmp_path: Path) -> None:
    old = tmp_path / "project"
    store = MetadataStore(old / "metadata.yaml")
    kept = store.state_dir / "artifacts" / "ab" / "model.joblib"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"model")
    outside = tmp_path / "shared" / "model.joblib"
    dep = _record()
    dep.ids = {"pid": 1, "model_file": str(kept), "log": str(store.state_dir / "logs" / "m.log"),
               "schema_file": str(outside), "tracking_uri": "http://127.0.0.1:5000"}
    dep.history = [{"revision": 0, "ids": {"model_file": str(kept)}}]
    with store.transaction() as state:
        state.put(dep)
    stored = yaml.safe_load((old / "metadata.yaml").read_text())["deployments"]["m"]["memory"]
    assert stored["ids"]["model_file"] == ".deploykit/artifacts/ab/model.joblib"
    assert stored["ids"]["log"] == ".deploykit/logs/m.log"
    assert stored["ids"]["schema_file"] == str(outside)  # outside the project: it does not move with it
    assert stored["ids"]["tracking_uri"] == "http://127.0.0.1:5000"
    assert stored["history"][0]["ids"]["model_file"] == ".deploykit/artifacts/ab/model.joblib"

    new = tmp_path / "elsewhere" / "checkout"
    new.parent.mkdir()
    old.rename(new)
    moved = MetadataStore(new / "metadata.yaml").read().get("m")
    assert moved.ids["model_file"] == str(new / ".deploykit" / "artifacts" / "ab" / "model.joblib")
    assert Path(moved.ids["model_file"]).read_bytes() == b"model"
    assert moved.ids["log"] == str(new / ".deploykit" / "logs" / "m.log")
    earlier = moved.revision_entry(0)
    assert earlier is not None and Path(earlier.ids["model_file"]).exists()


def test_absolute_paths_of_older_versions_still_read(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yaml"
    kept = tmp_path / ".deploykit" / "artifacts" / "model.joblib"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"m")
    gone = "/old/checkout/.deploykit/artifacts/model.joblib"  # the project was moved since
    path.write_text(f"deployments:\n  m:\n    local:\n      revision: 1\n"
                    f"      ids: {{model_file: {kept}, state_file: {gone}, log: /nowhere/x.log}}\n")
    ids = MetadataStore(path).read().get("m").ids
    assert ids["model_file"] == str(kept)
    assert ids["state_file"] == str(kept)  # mapped into this project's .deploykit
    assert ids["log"] == "/nowhere/x.log"  # no such file here either: kept as written


def test_pending_operation_paths_are_relative_too(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "metadata.yaml")
    op = store.begin("m", "local", action="create", revision=1)
    store.note(op, log=str(store.state_dir / "logs" / "m.log"))
    raw = yaml.safe_load((tmp_path / "metadata.yaml").read_text())
    assert raw["pending"][op.id]["ids"]["log"] == ".deploykit/logs/m.log"
    assert store.pending("m")[0].ids["log"] == str(store.state_dir / "logs" / "m.log")


def test_record_roundtrip_without_a_base_is_unchanged() -> None:
    dep = _record()
    dep.ids["model_file"] = "/abs/model.joblib"
    dep.extra = {"owner": "alice"}
    assert Deployment.from_dict(dep.name, dep.target, dep.to_dict()) == dep
    assert "reconciled" not in dep.to_dict()


def test_a_rewrite_keeps_the_file_mode_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yaml"
    store = MetadataStore(path)
    for mode in (0o600, 0o664):
        with store.transaction() as state:
            state.put(_record())
        path.chmod(mode)
        old = os.umask(0o077)
        try:
            with store.transaction() as state:
                state.put(_record(revision=2))
        finally:
            os.umask(old)
        assert path.stat().st_mode & 0o777 == mode
