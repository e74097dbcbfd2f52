"""Scoring-script bundles on the local target: Neomaril's scripts on real server processes, each in the
environment built from its requirements; the env file's secret nowhere but its 0600 files."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import time
from pathlib import Path

import httpx
import pytest

import deploykit
from deploykit.errors import DeploymentError, ScoringError
from deploykit.testing.bundles import async_bundle, secret_digest, sync_bundle, two_pickle_bundle
from deploykit_plugins.local.environments import PTH_NAME, cache_root, environment_key
from deploykit_plugins.local.routes.script import script_data
from deploykit_plugins.local.target import script_predictions

SECRET = "s3cr3t-7f1e9c-do-not-leak"


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One environment cache for the session: an environment is built once per requirements file."""
    return tmp_path_factory.mktemp("envs")


@pytest.fixture
def project(project, env_cache):
    project.write_credentials(f"local:\n  port: 0\n  env_cache: {env_cache}\n")
    return project


def _post(url: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=body, timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"


def _files_holding(folder: Path, text: str) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if text.encode() in path.read_bytes():
                    found.append(path)
            except OSError:
                pass
    return found


def _command_lines_holding(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_neomaril_sync_script_with_an_env_file_through_the_cli(cli, project) -> None:
    bundle = sync_bundle(project.dir / "src", env={"API_SECRET": SECRET, "THRESHOLD": "0.5"})
    created = cli("deploy", "src/app.py:score", "--model-file", "src/model.pkl", "--env", "src/.env",
                  "--schema", "src/example.json", "--name", "churn", "--json")
    assert created.code == 0, created.err
    first = created.json()
    assert (first["action"], first["revision"], first["status"], first["ids"]["bundle"]) == \
        ("created", 1, "ready", "sync")
    assert "smoke_test" not in first  # it had an example request, so it was smoke-tested
    url, pid = first["url"], first["ids"]["pid"]

    expected = {**bundle.expected(bundle.example), "secret": secret_digest(SECRET), "threshold": 0.5}
    assert _post(url, bundle.example).json() == expected
    assert _post(url, {"Input": bundle.example}).json() == expected  # a Neomaril request body
    for row in bundle.rows(3):
        assert _post(url, row).json() == {**bundle.expected(row), "secret": secret_digest(SECRET), "threshold": 0.5}
    scored = deploykit.score("churn", bundle.example)
    assert scored.raw == expected and scored.labels == [expected["pred"]]
    assert deploykit.score("churn", {"Input": bundle.example}).raw == expected  # passed as it is, not as a table
    via_cli = cli("score", "churn", "src/example.json", "--json")
    assert via_cli.code == 0 and via_cli.json()["predictions"] == [expected["pred"]]

    health = httpx.get(f"{url}/health").json()
    assert health["model_sha256"] == first["model_sha256"] and health["pid"] == pid
    docs = httpx.get(f"{url}/openapi.json").json()["paths"]["/predict"]["post"]
    assert docs["requestBody"]["content"]["application/json"]["example"] == bundle.example

    # the secret: only in the user's .env and the 0600 copies of it, never on a command line or in the environment
    kept = Path(first["ids"]["model_file"])
    assert stat.S_IMODE((kept / ".env").stat().st_mode) == 0o600
    holders = _files_holding(project.dir, SECRET)
    assert set(holders) == {project.dir / "src" / ".env", kept / ".env"}, holders
    assert _command_lines_holding(SECRET) == []
    assert SECRET.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    for output in (created, via_cli):
        assert SECRET not in output.out + output.err

    # update to a changed script: a new revision on the same URL
    sync_bundle(project.dir / "src", seed=1, env={"API_SECRET": SECRET, "THRESHOLD": "0.7"})
    again = cli("deploy", "src/app.py:score", "--model-file", "src/model.pkl", "--env", "src/.env",
                "--schema", "src/example.json", "--name", "churn", "--json")
    assert again.code == 0, again.err
    second = again.json()
    assert (second["action"], second["revision"], second["url"]) == ("updated", 2, url)
    assert _post(url, bundle.example).json()["threshold"] == 0.7
    unchanged = cli("deploy", "src/app.py:score", "--model-file", "src/model.pkl", "--env", "src/.env",
                    "--schema", "src/example.json", "--name", "churn", "--json")
    assert unchanged.json()["action"] == "unchanged"

    back = cli("rollback", "churn", "--json")
    assert back.code == 0, back.err
    assert back.json()["revision"] == 1
    assert _post(url, bundle.example).json() == expected  # the whole earlier bundle, its env file too

    assert SECRET not in project.metadata.read_text()
    assert set(_files_holding(project.dir, SECRET)) <= {project.dir / "src" / ".env"} | \
        {p for p in project.dir.rglob(".env") if stat.S_IMODE(p.stat().st_mode) == 0o600}
    gone = cli("delete", "churn", "--json")
    assert gone.code == 0, gone.err
    served = back.json()["ids"]["pid"]
    deadline = time.monotonic() + 10
    while _alive(served) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(served)


def test_script_errors_are_4xx_or_5xx_with_its_message_and_the_server_keeps_serving(project) -> None:
    bundle = sync_bundle(project.dir / "src")
    (bundle.folder / "app.py").write_text((bundle.folder / "app.py").read_text() + '''

def broken(data, base_path):
    payload = json.loads(data)
    if payload.get("crash"):
        raise RuntimeError("the feature store is down")
    if payload.get("unjsonable"):
        return {"when": object()}
    return score(data, base_path)
''')
    dep = deploykit.deploy(bundle.script(entrypoint="app.py:broken"), name="broken")
    try:
        bad = _post(dep.url, {"age": 41})
        assert bad.status_code == 422
        assert bad.json()["error"] == "the scoring script rejected the input: KeyError: \"['balance'] not in index\""
        crash = _post(dep.url, {"crash": True})
        assert crash.status_code == 500 and "RuntimeError: the feature store is down" in crash.json()["error"]
        odd = _post(dep.url, {"unjsonable": True})
        assert odd.status_code == 500 and "the answer['when'] as a builtins.object, which is not JSON-able" in odd.json()["error"]
        not_json = httpx.post(f"{dep.url}/predict", content=b"{nope", headers={"Content-Type": "application/json"})
        assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]
        assert _post(dep.url, bundle.example).json() == bundle.expected(bundle.example)  # still serving
        log = Path(dep.ids["log"]).read_text()
        assert "Traceback" in log and "RuntimeError: the feature store is down" in log
        assert "raise RuntimeError" in log  # the script's own line is in the logged traceback

        for path, key in (("/invocations", "message"), ("/v2/models/broken/infer", "error"),
                          ("/ml/v4/deployments/x/predictions", "errors")):
            refused = httpx.post(f"{dep.url}{path}", json={"inputs": []})
            assert refused.status_code == 404, path
            assert "POST /predict" in json.dumps(refused.json()[key]), refused.text
        assert httpx.get(f"{dep.url}/ping").status_code == 200
    finally:
        deploykit.delete("broken")


def test_numpy_values_in_the_answer_are_converted(project) -> None:
    bundle = sync_bundle(project.dir / "src", raw_numpy=True)
    dep = deploykit.deploy(bundle.script(), name="raw")
    try:
        answer = _post(dep.url, bundle.example)
        assert answer.status_code == 200
        assert answer.json() == pytest.approx(bundle.expected(bundle.example))
        assert isinstance(answer.json()["probas"], list)
    finally:
        deploykit.delete("raw")


def test_two_pickles_glued_in_the_script(project) -> None:
    bundle = two_pickle_bundle(project.dir / "course")
    dep = deploykit.deploy(bundle.folder, name="course")  # the folder with its deploykit.yaml
    try:
        for row in [bundle.example, *bundle.rows(4)]:
            assert _post(dep.url, row).json() == bundle.expected(row)
    finally:
        deploykit.delete("course")


def test_requirements_build_an_environment_and_a_bad_one_leaves_the_old_revision_serving(project,
                                                                                         env_cache) -> None:
    assert importlib.util.find_spec("inflection") is None, "the test needs a package the base interpreter lacks"
    bundle = sync_bundle(project.dir / "src", extra_module=True, requirements=["inflection==0.5.1"])
    dep = deploykit.deploy(bundle.folder, name="labels")
    try:
        answer = _post(dep.url, bundle.example).json()
        assert answer == {**bundle.expected(bundle.example), "label": "Bank Customer"}
        python = Path(f"/proc/{dep.ids['pid']}/cmdline").read_bytes().split(b"\0")[0].decode()
        assert python.startswith(str(env_cache)) and Path(python).parent.parent.name == environment_key(
            "inflection==0.5.1\n", *_interpreter())
        site = Path(python).parent.parent / "lib"
        assert list(site.glob(f"python*/site-packages/{PTH_NAME}")) and list(site.glob("python*/site-packages/inflection*"))
        assert not list(env_cache.glob(".*.tmp"))  # built aside, renamed into place

        (bundle.folder / "requirements.txt").write_text("inflection==0.5.1\ndeploykit-no-such-package==0.0.1\n")
        with pytest.raises(DeploymentError) as failed:
            deploykit.deploy(bundle.folder, name="labels")
        message = str(failed.value)
        assert "installing requirements.txt failed" in message and "deploykit-no-such-package" in message
        assert "what served keeps serving" in message
        assert not list(env_cache.glob(".*.tmp"))
        kept = {p.name for p in (project.dir / ".deploykit" / "artifacts").iterdir() if p.is_dir()}
        assert kept == {dep.model_sha256}  # the refused bundle was not kept
        now = deploykit.status("labels")
        assert (now.revision, now.ids["pid"], now.status) == (1, dep.ids["pid"], "ready")
        assert _post(dep.url, bundle.example).json() == answer
    finally:
        deploykit.delete("labels")


def _interpreter() -> tuple[str, str]:
    import sys

    return sys.version, sys.executable


def test_async_script_predict_is_409_and_the_smoke_test_is_skipped_and_said(cli, project) -> None:
    async_bundle(project.dir / "batch")
    created = cli("deploy", "batch", "--name", "nightly", "--json")
    assert created.code == 0, created.err
    record = created.json()
    assert record["ids"]["bundle"] == "async"
    assert record["smoke_test"].startswith("skipped: an async scoring script")
    refused = _post(record["url"], {"age": 41, "balance": 10.0})
    assert refused.status_code == 409 and "POST /jobs" in refused.json()["error"]
    with pytest.raises(ScoringError, match="deploykit score nightly FILE --async"):
        deploykit.score("nightly", {"age": 41, "balance": 10.0})
    assert cli("delete", "nightly").code == 0


def test_no_example_request_skips_the_smoke_test_and_says_so(cli, project) -> None:
    sync_bundle(project.dir / "src")
    human = cli("deploy", "src/app.py:score", "--model-file", "src/model.pkl", "--name", "plain")
    assert human.code == 0, human.err
    assert "smoke test skipped: the bundle has no schema or example request; pass --schema" in human.err
    assert cli("delete", "plain").code == 0


def test_a_script_that_fails_at_import_fails_the_deploy_with_its_message(project) -> None:
    bundle = sync_bundle(project.dir / "src")
    (bundle.folder / "app.py").write_text("raise RuntimeError('no GPU here')\n\ndef score(data, base_path):\n"
                                          "    return {}\n")
    with pytest.raises(DeploymentError, match=r"(?s)exited during start-up.*importing the script 'app.py' failed: "
                                              r"RuntimeError: no GPU here"):
        deploykit.deploy(bundle.folder, name="noimport")
    assert not project.metadata.exists() or "noimport" not in project.metadata.read_text()


def test_a_changed_file_in_the_kept_bundle_is_refused_on_rollback(project) -> None:
    first = sync_bundle(project.dir / "v1")
    dep = deploykit.deploy(first.folder, name="kept")
    try:
        deploykit.deploy(sync_bundle(project.dir / "v2", seed=1).folder, name="kept")
        kept = Path(dep.ids["model_file"])
        (kept / "app.py").write_text((kept / "app.py").read_text() + "\n# changed\n")
        with pytest.raises(DeploymentError, match="kept model file .* has sha256 .* it was changed on disk"):
            deploykit.rollback("kept")
        assert deploykit.status("kept").revision == 2
    finally:
        deploykit.delete("kept")


def test_environment_cache_root_and_key() -> None:
    assert cache_root("/srv/envs") == Path("/srv/envs")
    key = environment_key("pandas==2.1.0\n", "3.11.7", "/usr/bin/python3")
    assert key != environment_key("pandas==2.2.0\n", "3.11.7", "/usr/bin/python3")
    assert key != environment_key("pandas==2.1.0\n", "3.12.1", "/usr/bin/python3")
    assert key != environment_key("pandas==2.1.0\n", "3.11.7", "/opt/python")


def test_environment_cache_default_follows_xdg(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root(None) == tmp_path / "deploykit" / "envs"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root(None) == Path.home() / ".cache" / "deploykit" / "envs"


def test_a_scripts_answer_as_predictions() -> None:
    assert script_predictions({"pred": 1, "proba": 0.8}, 1).labels == [1]
    assert script_predictions({"prediction": [0, 1]}, 2).labels == [0, 1]
    assert script_predictions([{"a": 1}, {"a": 2}], 2).labels == [{"a": 1}, {"a": 2}]
    odd = script_predictions({"score": 7}, 1)
    assert odd.labels == [{"score": 7}] and odd.raw == {"score": 7}


def test_what_the_script_gets_as_data() -> None:
    assert script_data(b'{"age": 41}', {"age": 41}) == '{"age": 41}'  # the body's text, as the client wrote it
    assert json.loads(script_data(b'{"Input": {"age": 41}}', {"Input": {"age": 41}})) == {"age": 41}
    assert script_data(b'{"Input": 3}', {"Input": 3}) == '{"Input": 3}'


@pytest.mark.parametrize("step", ["update:spawned", "update:joined"])
def test_an_update_killed_mid_way_is_reconciled_like_a_model_files(cli, project, step) -> None:
    first = sync_bundle(project.dir / "v1")
    created = cli("deploy", "v1", "--name", "churn", "--json")
    assert created.code == 0, created.err
    url = created.json()["url"]
    second = sync_bundle(project.dir / "v2", seed=1, raw_numpy=True)
    killed = cli("deploy", "v2", "--name", "churn", env={"DEPLOYKIT_CRASH_AT": step})
    assert killed.code == -9, killed.err
    again = cli("deploy", "v2", "--name", "churn", "--json")  # reconciles first, then deploys or finds it done
    assert again.code == 0, again.err
    record = again.json()
    assert record["revision"] == 2 and record["status"] == "ready"
    assert _post(url, second.example).json() == pytest.approx(second.expected(second.example))
    servers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _alive(int(p.name))
               and str(project.dir / ".deploykit" / "run").encode() in _cmdline(p)]
    assert [int(p.name) for p in servers] == [record["ids"]["pid"]]
    back = cli("rollback", "churn", "--json")
    assert back.code == 0 and _post(url, first.example).json() == first.expected(first.example)
    assert cli("delete", "churn").code == 0


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
