"""metadata.yaml: atomic writes, unknown keys kept, corrupt files refused, races both recorded."""

from __future__ import annotations

import multiprocessing
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
