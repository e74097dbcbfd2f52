"""The bundle core (deploykit.bundle) without a server: staging, digests, the manifest, and every bad
input's message naming the value and the fix; the deploy command's script options."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from deploykit.artifact import load_artifact
from deploykit.bundle import Script, is_bundle
from deploykit.errors import ArtifactError
from deploykit.lifecycle import smoke_test_skipped
from deploykit.testing.bundles import async_bundle, sync_bundle

SECRET = "env-secret-91ab"


@pytest.fixture
def bundle(tmp_path):
    return sync_bundle(tmp_path / "src", env={"API_SECRET": SECRET})


def test_a_bundle_is_staged_flat_with_a_manifest_and_its_env_file_at_0600(bundle) -> None:
    artifact = load_artifact(bundle.script())
    staged = artifact.path
    assert (artifact.flavor, artifact.framework, artifact.extra["mode"]) == ("script", "script", "sync")
    assert sorted(p.name for p in staged.iterdir()) == [".env", "app.py", "deploykit.yaml", "example.json",
                                                        "model.pkl"]
    assert stat.S_IMODE((staged / ".env").stat().st_mode) == 0o600
    manifest = (staged / "deploykit.yaml").read_text()
    assert "env: .env" in manifest and SECRET not in manifest
    assert artifact.extra["bundle"]["entrypoint"] == "app.py:score"
    assert artifact.example == bundle.example and artifact.name == "app"


def test_the_digest_covers_every_file_and_a_staged_folder_loads_with_the_same_digest(bundle) -> None:
    first = load_artifact(bundle.script())
    assert load_artifact(bundle.folder).sha256 == first.sha256  # the folder's deploykit.yaml names the same files
    assert load_artifact(first.path).sha256 == first.sha256  # what a server does with the kept copy
    (bundle.folder / ".env").write_text(f"API_SECRET={SECRET}x\n")
    assert load_artifact(bundle.script()).sha256 != first.sha256


def test_a_user_folder_is_staged_afresh_so_only_the_bundles_files_are_deployed(bundle) -> None:
    clean = load_artifact(bundle.folder).sha256
    (bundle.folder / "notes.txt").write_text("not part of the bundle")
    (bundle.folder / ".git").mkdir()
    (bundle.folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    artifact = load_artifact(bundle.folder)
    assert artifact.path != bundle.folder and artifact.sha256 == clean
    assert not (artifact.path / "notes.txt").exists() and not (artifact.path / ".git").exists()


def test_nothing_of_the_script_runs_while_staging(tmp_path) -> None:
    bundle = sync_bundle(tmp_path / "src")
    (bundle.folder / "app.py").write_text("raise SystemExit('ran at import')\n\ndef score(data, base_path):\n"
                                          "    return {}\n")
    artifact = load_artifact(bundle.script())
    assert artifact.flavor == "script"  # parsed, not imported


def test_is_bundle() -> None:
    assert is_bundle("app.py:score") and not is_bundle("model.joblib") and not is_bundle("app.py")


def test_smoke_test_skipped_says_why(tmp_path, bundle) -> None:
    assert smoke_test_skipped(load_artifact(bundle.script())) is None
    no_example = smoke_test_skipped(load_artifact(bundle.script(schema=None)))
    assert no_example is not None and "no schema or example request; pass --schema" in no_example
    batch = async_bundle(tmp_path / "batch")
    assert "async scoring script" in str(smoke_test_skipped(load_artifact(batch.folder)))


# -- bad input: each message names the value and the fix ------------------------------------------

def test_missing_script(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ArtifactError, match=r"the scoring script 'nope.py' \(from 'nope.py:score'\) does not "
                                            r"exist; pass an existing .py file"):
        load_artifact("nope.py:score")


def test_missing_function(bundle) -> None:
    with pytest.raises(ArtifactError, match=r"defines no top-level function 'predict' \(it defines \['score'\]\); "
                                            r"name the function after ':'"):
        load_artifact(bundle.script(entrypoint="app.py:predict"))


def test_wrong_arity(bundle) -> None:
    (bundle.folder / "one.py").write_text("def score(data):\n    return {}\n")
    with pytest.raises(ArtifactError, match=r"score\(\) in .*one.py' takes 1 argument\(s\) \['data'\], but a sync "
                                            r"scoring function is called as score\(data, base_path\); change its "
                                            r"signature"):
        load_artifact(bundle.script(entrypoint="one.py:score"))


def test_an_async_signature_deployed_as_sync_says_use_async(bundle) -> None:
    (bundle.folder / "batch.py").write_text("def score(data_path):\n    return data_path\n")
    with pytest.raises(ArtifactError, match=r"\(or deploy it with --mode async\)"):
        load_artifact(bundle.script(entrypoint="batch.py:score"))


def test_unknown_deploykit_yaml_key(bundle) -> None:
    manifest = bundle.folder / "deploykit.yaml"
    manifest.write_text(manifest.read_text() + "modelfile: model.pkl\n")
    with pytest.raises(ArtifactError, match=r"has unknown key\(s\) \['modelfile'\]; the keys are entrypoint, "
                                            r"model_file, "):
        load_artifact(bundle.folder)


def test_a_bad_env_line_names_the_line_never_the_value(bundle) -> None:
    (bundle.folder / ".env").write_text(f"API_SECRET={SECRET}\nthis line {SECRET} is wrong\n")
    with pytest.raises(ArtifactError, match=r"has a line that is not KEY=value \(line 2\); fix that line") as bad:
        load_artifact(bundle.script())
    assert SECRET not in str(bad.value)


def test_duplicate_file_names(bundle, tmp_path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.pkl").write_bytes(b"another model")
    with pytest.raises(ArtifactError, match=r"share the file name 'model.pkl'; a bundle holds its files in one "
                                            r"folder, so rename one of them"):
        load_artifact(bundle.script(extra=[str(other / "model.pkl")]))


def test_missing_model_file(bundle) -> None:
    with pytest.raises(ArtifactError, match=r"the model file '.*missing.pkl' does not exist \(or is not a file\); "
                                            r"pass an existing file"):
        load_artifact(bundle.script(model_file="missing.pkl"))


def test_unknown_mode(bundle) -> None:
    with pytest.raises(ArtifactError, match=r"mode 'batch' is not a scoring mode; use 'sync' or 'async'"):
        load_artifact(bundle.script(mode="batch"))


# -- the deploy command's script options ------------------------------------------------------------

def test_script_options_with_a_model_file_are_refused(cli, project, bank_model) -> None:
    refused = cli("deploy", bank_model, "--model-file", "model.pkl", "--requirements", "requirements.txt")
    assert refused.code == 2
    assert f"--model-file, --requirements are for a scoring script, but MODEL '{bank_model}' is a model file" \
        in refused.err
    assert "deploykit deploy app.py:score --model-file model.pkl" in refused.err
    as_json = cli("deploy", bank_model, "--mode", "async", "--json")
    assert as_json.code == 2 and "--mode is for a scoring script" in as_json.json()["error"]
    assert not project.metadata.exists()


def test_a_script_file_without_its_function_is_named(cli, project, tmp_path) -> None:
    sync_bundle(project.dir / "src")
    refused = cli("deploy", "src/app.py", "--model-file", "src/model.pkl")
    assert refused.code == 2 and "'src/app.py' is a script file without its function" in refused.err


def test_a_bundle_folder_takes_no_script_options(cli, project) -> None:
    sync_bundle(project.dir / "src")
    refused = cli("deploy", "src", "--model-file", "src/model.pkl", "--schema", "src/example.json")
    assert refused.code == 2
    assert "MODEL 'src' is a folder whose deploykit.yaml names the bundle's files, so --model-file, --schema " \
           "cannot be given too; put them in 'src/deploykit.yaml'" in refused.err


def test_a_bad_bundle_fails_the_cli_before_anything_is_deployed(cli, project) -> None:
    sync_bundle(project.dir / "src")
    failed = cli("deploy", "src/app.py:predict", "--model-file", "src/model.pkl", "--json")
    assert failed.code == 1 and failed.json()["type"] == "ArtifactError"
    assert "defines no top-level function 'predict'" in failed.json()["error"]
    assert not project.metadata.exists()


def test_script_defaults(tmp_path) -> None:
    script = Script("app.py:score")
    assert (script.mode, script.extra, script.model_file) == ("sync", [], None)


def test_the_memory_target_refuses_a_bundle_by_name(memory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import deploykit
    from deploykit.errors import DeploymentError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "app.py").write_text("def score(data, base_path):\n    return {}\n")
    with pytest.raises(DeploymentError, match="memory target does not run scoring scripts.*--target local"):
        deploykit.deploy(deploykit.Script("app.py:score"), target="memory", name="app",
                         metadata=tmp_path / "metadata.yaml")
    assert not (tmp_path / "metadata.yaml").exists() or "app:" not in (tmp_path / "metadata.yaml").read_text()


def test_a_staged_looking_folder_with_a_readable_env_file_is_staged_afresh(tmp_path: Path) -> None:
    import shutil

    (tmp_path / "app.py").write_text("def score(data, base_path):\n    return {}\n")
    (tmp_path / ".env.user").write_text("SECRET=s3cr3t\n")
    staged = load_artifact(Script("app.py:score", env=".env.user", root=tmp_path))
    copy = tmp_path / "copy"
    shutil.copytree(staged.path, copy)
    assert load_artifact(copy).path == copy.resolve()  # 0600 kept: used as it is (a server's kept bundle)
    (copy / ".env").chmod(0o644)
    again = load_artifact(copy)
    assert again.path != copy.resolve() and stat.S_IMODE((again.path / ".env").stat().st_mode) == 0o600
