"""The deploy flow's order of work: names checked before anything is written, the model unpickled
only when something is deployed, the change hook fired after the record is written."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

import deploykit
from deploykit import artifact as artifact_module
from deploykit.errors import InvalidNameError, NotDeployedError
from deploykit.hookspecs import hookimpl
from deploykit.lifecycle import open_deployment, save_ids
from deploykit.plugins import ListenerWarning, get_plugin_manager
from deploykit_plugins.memory import MemoryTarget


@pytest.fixture(autouse=True)
def _fresh_memory() -> None:
    MemoryTarget.reset()


def _deploy(model: Path, project: Any, **kw: Any) -> deploykit.Deployment:
    kw.setdefault("name", "bank")
    return deploykit.deploy(model, target="memory", metadata=project.metadata, credentials=project.credentials, **kw)


@pytest.fixture
def listener() -> Any:
    """Register a listener plugin for the test; ``listener.calls`` and ``listener.fail`` steer it."""
    class Listener:
        calls: list[tuple[str, str, dict[str, Any] | None]] = []
        fail = False
        metadata: Path | None = None

        @hookimpl
        def deploykit_deployment_changed(self, event: str, deployment: deploykit.Deployment) -> None:
            on_disk = yaml.safe_load(self.metadata.read_text()) if self.metadata and self.metadata.exists() else {}
            record = ((on_disk or {}).get("deployments") or {}).get(deployment.name, {}).get(deployment.target)
            self.calls.append((event, deployment.name, record))
            if self.fail:
                raise RuntimeError("the chat server is down")

    plugin = Listener()
    plugin.calls = []
    pm = get_plugin_manager()
    pm.register(plugin, name="chat-notifier")
    yield plugin
    pm.unregister(plugin)


def test_the_change_hook_sees_the_written_record(project: Any, bank_model: Path, listener: Any) -> None:
    listener.metadata = project.metadata
    created = _deploy(bank_model, project)
    event, name, record = listener.calls[-1]
    assert (event, name) == ("created", "bank")
    assert record is not None and record["revision"] == 1 and record["model_sha256"] == created.model_sha256
    deploykit.delete("bank", metadata=project.metadata)
    assert listener.calls[-1][:2] == ("deleted", "bank") and listener.calls[-1][2] is None  # already removed


def test_a_failing_listener_is_a_warning_not_a_failed_deploy(project: Any, bank_model: Path, bank_model_v2: Path,
                                                              listener: Any) -> None:
    listener.fail = True
    with pytest.warns(ListenerWarning, match=r"plugin 'chat-notifier' failed in deploykit_deployment_changed for "
                                            r"created of 'bank' on memory \(RuntimeError: the chat server is down\)"):
        created = _deploy(bank_model, project)
    assert created.action == "created"
    with pytest.warns(ListenerWarning, match="for updated of 'bank'"):
        assert _deploy(bank_model_v2, project).revision == 2
    assert yaml.safe_load(project.metadata.read_text())["deployments"]["bank"]["memory"]["revision"] == 2


def test_an_automatic_rollback_is_announced_after_it_is_recorded(project: Any, bank_model: Path, bank_model_v2: Path,
                                                                 listener: Any) -> None:
    listener.metadata = project.metadata
    _deploy(bank_model, project)
    MemoryTarget.fail_next("score", "smoke broke")
    with pytest.raises(deploykit.SmokeTestError):
        _deploy(bank_model_v2, project)
    event, _, record = listener.calls[-1]
    assert event == "rolled-back" and record is not None and record["revision"] == 1


def test_an_unchanged_deploy_never_unpickles_the_model(project: Any, bank_model: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _deploy(bank_model, project)

    def refuse(path: Path) -> Any:
        raise AssertionError(f"{path} was unpickled for an unchanged deploy")

    monkeypatch.setattr(artifact_module, "_load_pickle", refuse)
    assert _deploy(bank_model, project).action == "unchanged"


def test_a_deferred_artifact_raises_what_an_eager_load_raises(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    deferred = deploykit.artifact.load_artifact(path, defer=True)
    assert not deferred.loaded and len(deferred.sha256) == 64
    for _ in range(2):  # every call, not only the first
        with pytest.raises(deploykit.ArtifactError, match="holds a builtins.dict, which has no predict"):
            deferred.load()
    with pytest.raises(deploykit.ArtifactError, match="has no predict"):
        _ = deferred.model


def test_a_deferred_artifact_loads_on_first_use(bank_model: Path) -> None:
    deferred = deploykit.artifact.load_artifact(bank_model, defer=True)
    assert deferred.source.endswith("bank-model.schema.json") and deferred.schema.names[0] == "age"
    assert not deferred.loaded
    assert deferred.classes == ["no", "yes"] and deferred.framework == "scikit-learn" and deferred.loaded


def test_a_file_that_is_no_model_creates_nothing(project: Any, tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    (tmp_path / "weights.schema.json").write_text(json.dumps({"columns": [{"name": "a", "type": "integer"}]}))
    with pytest.raises(deploykit.ArtifactError, match="has no predict"):
        _deploy(path, project)
    assert MemoryTarget.platform.names() == []
    assert "bank" not in (project.metadata.read_text() if project.metadata.exists() else "")


@pytest.mark.parametrize("name", ["../../x", "team/model", "a" * 200, "..", "back\\slash", "nul\0"])
def test_bad_names_are_refused_before_anything_is_written(project: Any, bank_model: Path, name: str) -> None:
    with pytest.raises(InvalidNameError, match="deployment name"):
        _deploy(bank_model, project, name=name)
    assert not project.metadata.exists() and not (project.dir / ".deploykit").exists()
    assert MemoryTarget.platform.names() == []


def test_the_default_name_is_made_valid_from_the_file_name(project: Any, bank_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bank_model.joblib"
    shutil.copy(bank_model, copy)
    shutil.copy(bank_model.with_name("bank-model.schema.json"), tmp_path / "bank_model.schema.json")
    assert _deploy(copy, project, name=None).name == "bank-model"


def test_an_existing_record_with_an_older_name_keeps_working(project: Any, bank_model: Path, bank_model_v2: Path,
                                                             tmp_path: Path) -> None:
    _deploy(bank_model, project, name="bank-model")
    data = yaml.safe_load(project.metadata.read_text())
    data["deployments"]["bank_model"] = data["deployments"].pop("bank-model")  # as an older deploykit named it
    project.metadata.write_text(yaml.safe_dump(data))
    assert _deploy(bank_model_v2, project, name="bank_model").revision == 2
    copy = tmp_path / "bank_model.joblib"
    shutil.copy(bank_model, copy)
    assert _deploy(copy, project, name=None).name == "bank_model"  # the default follows the existing record
    with pytest.raises(InvalidNameError):
        _deploy(bank_model_v2, project, name="bank_other")  # a NEW deployment must pass the rule


def test_open_deployment_gives_the_record_and_its_target(project: Any, bank_model: Path, bank_rows: list) -> None:
    import pandas as pd

    _deploy(bank_model, project)
    record, target = open_deployment("bank", metadata=project.metadata, credentials=project.credentials)
    assert record.name == "bank" and record.target == "memory" and isinstance(target, MemoryTarget)
    assert len(target.score(record, pd.DataFrame(bank_rows[:2]))) == 2
    with pytest.raises(NotDeployedError, match="no deployment named 'other'.*recorded: bank \\(memory\\)"):
        open_deployment("other", metadata=project.metadata)


def test_save_ids_merges_into_the_current_record(project: Any, bank_model: Path, bank_model_v2: Path) -> None:
    _deploy(bank_model, project)
    record, _ = open_deployment("bank", metadata=project.metadata)
    _deploy(bank_model_v2, project)  # the record moved on meanwhile
    record.ids["batch_deployment_uid"] = "b-1"
    saved = save_ids(record, metadata=project.metadata)
    assert saved.revision == 2 and saved.ids["batch_deployment_uid"] == "b-1"
    on_disk = yaml.safe_load(project.metadata.read_text())["deployments"]["bank"]["memory"]
    assert on_disk["revision"] == 2 and on_disk["ids"]["batch_deployment_uid"] == "b-1"


def test_no_warning_when_listeners_succeed(project: Any, bank_model: Path, listener: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ListenerWarning)
        _deploy(bank_model, project)
    assert [c[0] for c in listener.calls] == ["created"]


class _ServerLoadsTheModel(MemoryTarget):
    """A memory target that, like a server process, never needs the model in the deploying process."""

    loads_model_itself = True

    def score(self, deployment: deploykit.Deployment, frame: Any) -> Any:
        from deploykit.payload import Predictions

        held = self.platform.served[deployment.ids["deployment_id"]][1]
        if not held.loaded:
            return Predictions.from_model(["no"] * len(frame), None, None)
        return super().score(deployment, frame)


@pytest.fixture
def server_target() -> Any:
    class Plugin:
        @hookimpl
        def deploykit_register_targets(self, registry: Any) -> None:
            registry.add("server", _ServerLoadsTheModel, description="loads the model in its own process")

    from deploykit import plugins

    plugins.reset()
    plugins.get_plugin_manager().register(Plugin())
    yield "server"
    plugins.reset()


def test_a_target_that_loads_the_model_itself_spares_the_unpickling(project: Any, bank_model: Path, server_target: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = artifact_module._load_pickle
    monkeypatch.setattr(artifact_module, "_load_pickle", lambda path: calls.append(path) or real(path))
    created = deploykit.deploy(bank_model, target=server_target, name="bank", metadata=project.metadata)
    assert created.action == "created" and calls == []


def test_a_target_that_loads_the_model_itself_still_names_a_bad_file(project: Any, tmp_path: Path, server_target: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    (tmp_path / "weights.schema.json").write_text(json.dumps({"columns": [{"name": "a", "type": "integer"}],
                                                             "example": {"a": 1}}))

    def broken_server(self: Any, deployment: Any, timeout: float) -> Any:
        raise deploykit.DeploymentError("server exited: see its log")

    monkeypatch.setattr(_ServerLoadsTheModel, "wait_ready", broken_server)
    with pytest.raises(deploykit.ArtifactError, match="holds a builtins.list, which has no predict"):
        deploykit.deploy(path, target=server_target, name="bank", metadata=project.metadata)
    assert MemoryTarget.platform.names() == []
    assert "bank" not in (project.metadata.read_text() if project.metadata.exists() else "")
