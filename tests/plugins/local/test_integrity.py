"""The local target's integrity end to end, through the real CLI and real servers: a kept model file
changed on disk is refused and repaired, ``status`` says why a deployment is not ready, old kept
models are pruned after an update, and run files of dead servers are removed.

(The server's own digest check, naming both digests, is unit-tested in test_hardening.py; a failed
update keeping the old revision serving, in test_local_target.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploykit.artifact import sha256_of
from deploykit.metadata import MetadataStore
from deploykit.process import alive
from deploykit.testing.models import ContractModels, two_fits


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ContractModels:
    return two_fits(tmp_path_factory.mktemp("integrity-models"))


def _predictions(model: Path, rows: list[dict]) -> list[Any]:
    import joblib
    import pandas as pd

    return list(joblib.load(model).predict(pd.DataFrame(rows)))


def _serves(url: str, model: Path, rows: list[dict]) -> None:
    answer = httpx.post(f"{url}/predict", json=rows, timeout=30)
    assert answer.status_code == 200 and answer.json()["predictions"] == _predictions(model, rows)


def _deploy(cli: Any, model: Path, action: str, revision: int) -> dict[str, Any]:
    done = cli("deploy", model, "--name", "m", "--json")
    assert done.code == 0, done.out + done.err
    summary: dict[str, Any] = done.json()
    assert (summary["action"], summary["revision"], summary["status"]) == (action, revision, "ready"), summary
    return summary


def test_a_kept_file_changed_on_disk_is_refused_then_repaired_by_deploying_the_original(
        project, cli, models: ContractModels) -> None:
    first = _deploy(cli, models.first, "created", 1)
    second = _deploy(cli, models.second, "updated", 2)
    kept = Path(first["ids"]["model_file"])
    recorded = sha256_of(models.first)
    assert sha256_of(kept) == recorded
    shutil.copyfile(models.failing, kept)  # another model, in place of revision 1's kept copy
    changed = sha256_of(kept)

    refused = cli("rollback", "m", "--json")
    assert refused.code == 1
    error = refused.json()["error"]
    assert f"has sha256 {changed}, but revision 1 was recorded with sha256 {recorded}" in error, error
    assert "revision 2 keeps serving" in error and "Deploy the original model file again" in error, error
    status = cli("status", "m", "--json")
    assert status.code == 0 and (status.json()["status"], status.json()["revision"]) == ("ready", 2)
    assert status.json()["pending"] == [] and MetadataStore(project.metadata).pending() == []
    _serves(second["url"], models.second, models.rows)

    repaired = _deploy(cli, models.first, "updated", 3)  # the original file: its kept copy is copied again
    assert sha256_of(kept) == recorded and repaired["ids"]["model_file"] == str(kept)
    _serves(second["url"], models.first, models.rows)  # the new server loaded the kept copy (digest checked)

    # now the serving revision's own kept copy changes: it still serves, but status says it is not sound
    shutil.copyfile(models.second, kept)
    status = cli("status", "m", "--json")
    assert status.code == 1 and status.json()["status"] == "unhealthy", status.out
    why = status.json()["ids"]["unhealthy"]
    assert f"the kept model file {kept} has sha256 {sha256_of(models.second)}" in why, why
    assert f"revision 3 was recorded with sha256 {recorded}" in why and "Deploy the original model file" in why
    human = cli("status", "m")
    assert human.code == 1 and f"why: the kept model file {kept}" in human.out, human.out
    _deploy(cli, models.first, "updated", 4)  # same sha256, but not a no-op: it repairs the kept copy
    assert sha256_of(kept) == recorded
    assert cli("status", "m", "--json").json()["status"] == "ready"
    assert cli("delete", "m").code == 0


def test_status_says_the_process_is_gone_and_stale_run_files_are_removed(project, cli, models) -> None:
    deployed = _deploy(cli, models.first, "created", 1)
    pid, stem = deployed["ids"]["pid"], deployed["ids"]["run"]
    run = project.dir / ".deploykit" / "run"
    ghost = [run / "ghost-r7-0123abcd.json", run / "ghost-r7-0123abcd.launch.json"]  # a server long gone
    for path in ghost:
        path.write_text("{}")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (run / f"{stem}.json").exists() and (run / f"{stem}.launch.json").exists()  # what SIGKILL leaves

    status = cli("status", "m", "--json")
    assert status.code == 1 and status.json()["status"] == "stopped", status.out
    assert status.json()["ids"]["unhealthy"].startswith(f"the server process {pid} is not running; its log ends "
                                                        "with: "), status.json()["ids"]
    assert sorted(p.name for p in run.iterdir()) == [], "run files of dead servers are removed"
    human = cli("status", "m")
    assert f"why: the server process {pid} is not running" in human.out, human.out
    assert cli("delete", "m").code == 0


def _copy_of(model: Path, folder: Path) -> Path:
    """``model`` saved again with one more attribute: another file (another sha256), the same answers."""
    import joblib

    fitted = joblib.load(model)
    fitted.deploykit_copy = True
    folder.mkdir()
    path = folder / model.name
    joblib.dump(fitted, path)
    schema = model.name.replace(".joblib", ".schema.json")
    shutil.copyfile(model.parent / schema, folder / schema)
    return path


def test_kept_models_beyond_keep_revisions_are_pruned_after_an_update_but_never_the_replaced_one(
        project, cli, models, tmp_path) -> None:
    project.write_credentials("local:\n  port: 0\n  keep_revisions: 1\n")
    third = _copy_of(models.first, tmp_path / "third")
    first = _deploy(cli, models.first, "created", 1)
    _deploy(cli, models.second, "updated", 2)
    artifacts = project.dir / ".deploykit" / "artifacts"
    shas = [sha256_of(m) for m in (models.first, models.second, third)]
    assert sorted(p.name for p in artifacts.iterdir()) == sorted([*shas[:2], *(f"{s}.users" for s in shas[:2])])
    third_deployed = _deploy(cli, third, "updated", 3)
    # revision 1 is pruned; revision 2, which revision 3 replaced, is kept (an automatic rollback needs it)
    assert sorted(p.name for p in artifacts.iterdir()) == sorted([*shas[1:], *(f"{s}.users" for s in shas[1:])])
    assert json.loads((artifacts / shas[2] / "schema.json").read_text())["columns"]
    refused = cli("rollback", "m", "--to", "1", "--json")
    assert refused.code == 1
    error = refused.json()["error"]
    assert f"revision 1's model file {first['ids']['model_file']!r} is gone from the artifact store" in error
    assert "deploy that model file again" in error
    _serves(third_deployed["url"], third, models.rows)
    assert cli("delete", "m").code == 0
