"""Scoring-script bundles (Neomaril's contract) on the sagemaker target, against the SageMaker emulator with the
real boto3 client: the script runs in the emulated scikit-learn container from ``code/inference.py`` (no
deploykit there), answers like the script called in process, updates, rolls back, deletes and reconciles like a
model file; the env file's secret reaches the script and nowhere else; an async script runs on SageMaker async
inference, one input file per execution."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
import yaml

import deploykit
from deploykit import faults
from deploykit.artifact import load_artifact
from deploykit.bundle import Script
from deploykit.errors import DeploymentError, ScoringError
from deploykit.lifecycle import open_target
from deploykit.operations import PendingOperation
from deploykit_plugins.sagemaker import batch
from deploykit_plugins.sagemaker.packaging import build_model_tarball
from tests.plugins.sagemaker.conftest import BUCKET, SageMakerProject, boto_client, leftovers

NAME = "churn-script"
SECRET = "tok-9f3b2c71-secret-value-ZQX"

# Neomaril's documented sync script: the model loaded from base_path + "/model.pkl", numpy values cast.
NEOMARIL = '''import json
import os

import joblib
import pandas as pd


def score(data, base_path):
    model = joblib.load(base_path + "/model.pkl")
    frame = pd.DataFrame([json.loads(data)])
    proba = model.predict_proba(frame)[0]
    return {"pred": int(proba.argmax()), "proba": float(proba[1])}
'''

# the same, changed: the model found through modelFileName, raw numpy values returned (converted by deploykit)
RAW_NUMPY = '''import json
import os

import joblib
import pandas as pd


def score(data, base_path):
    model = joblib.load(base_path + os.getenv("modelFileName"))
    frame = pd.DataFrame([json.loads(data)])
    proba = model.predict_proba(frame)[0]
    return {"pred": proba.argmax(), "proba": proba, "version": 2}
'''

# the FastAPI-course case: a one-hot encoder and a model pickled apart, glued here; a helper module; a requirement
TWO_PICKLES = '''import json

import joblib
import numpy as np
from features import numeric, slug


def score(data, base_path):
    ohe = joblib.load(base_path + "/ohe.pkl")
    model = joblib.load(base_path + "/model.pkl")
    row = json.loads(data)
    encoded = ohe.transform([[row["job"], row["marital"]]])
    x = np.hstack([encoded.toarray(), [numeric(row)]])
    return {"pred": int(model.predict(x)[0]), "job": slug(row["job"])}
'''
FEATURES = '''from text_unidecode import unidecode


def numeric(row):
    return [row["age"], row["balance"]]


def slug(text):
    return unidecode(text).upper()
'''

# Neomaril's documented async script: the input file named by inputFileName, output.csv written beside it
ASYNC_SCRIPT = '''import os

import joblib
import pandas as pd


def score(data_path, model_path):
    model = joblib.load(model_path + "/model.pkl")
    frame = pd.read_csv(data_path + "/" + os.getenv("inputFileName"))
    proba = model.predict_proba(frame)
    path = data_path + "/output.csv"
    pd.DataFrame({"pred": proba.argmax(axis=1), "proba": proba[:, 1]}).to_csv(path, index=False)
    return path
'''

SECRET_SCRIPT = '''import os


def score(data, base_path):
    return {"token_length": len(os.environ["API_TOKEN"]), "region": os.environ["REGION"]}
'''


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _neomaril(folder: Path, bank_model: Path, bank_rows: list[dict[str, Any]], script: str = NEOMARIL) -> Script:
    _write(folder, {"app.py": script, "example.json": json.dumps(bank_rows[0])})
    (folder / "model.pkl").write_bytes(bank_model.read_bytes())
    return Script("app.py:score", model_file="model.pkl", schema="example.json", name=NAME, root=folder)


def _expected(bank_model: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    fitted = joblib.load(bank_model)
    frame = pd.DataFrame(rows)
    return [{"pred": int(q.argmax()), "proba": float(q[1])} for q in fitted.predict_proba(frame)]


def _deploy(project: SageMakerProject, source: Any, **kwargs: Any) -> Any:
    return deploykit.deploy(source, name=NAME, timeout=180, **project.kwargs(NAME), **kwargs)


def _score(project: SageMakerProject, rows: Any) -> Any:
    return deploykit.score(NAME, rows, **project.kwargs(NAME))


def _tarball(project: SageMakerProject, url: str) -> tarfile.TarFile:
    key = url.split(f"{BUCKET}/", 1)[1]
    blob = boto_client(project.emulator, "s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return tarfile.open(fileobj=io.BytesIO(blob))


def test_neomaril_script_update_rollback_delete(sm_project: SageMakerProject, tmp_path: Path, bank_model: Path,
                                                bank_model_v2: Path, bank_rows: list[dict[str, Any]]) -> None:
    dep = _deploy(sm_project, _neomaril(tmp_path / "v1", bank_model, bank_rows))
    assert (dep.action, dep.revision, dep.status, dep.ids["bundle"]) == ("created", 1, "ready", "sync")
    with _tarball(sm_project, dep.ids["model_data_url"]) as tar:
        names = set(tar.getnames())
    assert {"bundle/app.py", "bundle/model.pkl", "bundle/example.json", "bundle/deploykit.yaml", "deploykit.json",
            "code/inference.py", "code/_dkserve/bundle.py", "code/_dkserve/payload/mlflow.py"} <= names
    assert "code/requirements.txt" not in names  # the bundle names none

    predictions = _score(sm_project, bank_rows)
    assert predictions.labels == _expected(bank_model, bank_rows)
    assert predictions.probabilities is None and predictions.raw == {"predictions": predictions.labels}

    # any client of the endpoint: Neomaril's request body is one call of score, answered as the script returns it
    runtime = boto_client(sm_project.emulator, "sagemaker-runtime")
    answer = runtime.invoke_endpoint(EndpointName=NAME, Body=json.dumps({"Input": bank_rows[3]}),
                                     ContentType="application/json")
    assert json.loads(answer["Body"].read()) == _expected(bank_model, bank_rows[3:4])[0]
    assert _deploy(sm_project, _neomaril(tmp_path / "v1", bank_model, bank_rows)).action == "unchanged"

    # a changed script (and model) is a new revision, blue/green on the same endpoint
    updated = _deploy(sm_project, _neomaril(tmp_path / "v2", bank_model_v2, bank_rows, RAW_NUMPY))
    assert (updated.action, updated.revision) == ("updated", 2)
    assert updated.ids["config_name"] != dep.ids["config_name"]
    fitted = joblib.load(bank_model_v2)
    frame = pd.DataFrame(bank_rows)
    assert _score(sm_project, bank_rows).labels == [  # numpy scalars and arrays come back as JSON values
        {"pred": int(q.argmax()), "proba": [float(x) for x in q], "version": 2} for q in fitted.predict_proba(frame)]
    assert sm_project.emulator.endpoints[NAME].config == updated.ids["config_name"]

    back = deploykit.rollback(NAME, **sm_project.kwargs(NAME))
    assert (back.revision, back.ids["config_name"], back.ids["bundle"]) == (1, dep.ids["config_name"], "sync")
    assert _score(sm_project, bank_rows).labels == _expected(bank_model, bank_rows)
    # a file of rows as one batch transform job of the same model: the script per row there too
    scored = batch.score_batch(NAME, bank_rows, credentials=sm_project.credentials, metadata=sm_project.metadata,
                               timeout=120)
    assert scored.labels == _expected(bank_model, bank_rows)

    deploykit.delete(NAME, **sm_project.kwargs(NAME))
    assert leftovers(sm_project.emulator, NAME) == []


def test_two_pickles_extra_module_and_a_requirement(sm_project: SageMakerProject, tmp_path: Path,
                                                    bank_rows: list[dict[str, Any]]) -> None:
    """``ohe.pkl`` + ``model.pkl`` glued in the script, a helper module beside it, and a requirement the test
    venv lacks (text-unidecode, pure Python) installed by the container from ``code/requirements.txt``;
    joblib, which the image has, is skipped."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    assert importlib.util.find_spec("text_unidecode") is None  # else the install below proves nothing
    frame = pd.DataFrame(bank_rows * 3)
    ohe = OneHotEncoder().fit(frame[["job", "marital"]].values)
    features = pd.concat([pd.DataFrame(ohe.transform(frame[["job", "marital"]].values).toarray()),
                          frame[["age", "balance"]].reset_index(drop=True)], axis=1).values
    target = (frame["balance"] > frame["balance"].median()).astype(int)
    model = LogisticRegression(max_iter=500).fit(features, target)
    folder = _write(tmp_path / "bundle", {"app.py": TWO_PICKLES, "features.py": FEATURES,
                                          "requirements.txt": "joblib\ntext-unidecode==1.3\n"})
    joblib.dump(ohe, folder / "ohe.pkl")
    joblib.dump(model, folder / "model.pkl")
    script = Script("app.py:score", model_file="model.pkl", extra=["ohe.pkl", "features.py"],
                    requirements="requirements.txt", name=NAME, root=folder)
    dep = _deploy(sm_project, script)
    with _tarball(sm_project, dep.ids["model_data_url"]) as tar:
        requirements = tar.extractfile("code/requirements.txt")
        assert requirements is not None and requirements.read() == b"joblib\ntext-unidecode==1.3\n"
    logs = "".join(c.log.read_text() for c in sm_project.emulator.containers())
    assert "joblib is installed already (skipped)" in logs and "installing ['text-unidecode==1.3']" in logs

    rows = bank_rows[:5]
    encoded = ohe.transform([[r["job"], r["marital"]] for r in rows]).toarray()
    expected = model.predict([[*e, r["age"], r["balance"]] for e, r in zip(encoded, rows)]).tolist()
    assert _score(sm_project, rows).labels == [{"pred": p, "job": r["job"].upper()} for p, r in zip(expected, rows)]

    with pytest.raises(ScoringError, match=r"ValueError: Found unknown categories \['astronaut'\]") as caught:
        _score(sm_project, [{**rows[0], "job": "astronaut"}])
    assert caught.value.status == 422  # a ValueError of the script is bad input, the server stays up
    assert len(_score(sm_project, rows[:1])) == 1
    deploykit.delete(NAME, **sm_project.kwargs(NAME))
    assert leftovers(sm_project.emulator, NAME) == []


def test_env_secret_reaches_the_script_and_nothing_else(sm_project: SageMakerProject, cli: Any,
                                                        bank_rows: list[dict[str, Any]]) -> None:
    folder = _write(sm_project.dir / "secret-bundle", {
        "app.py": SECRET_SCRIPT, ".env": f"API_TOKEN={SECRET}\nexport REGION='eu-west-1'\n",
        "example.json": json.dumps({"x": 1}),
        "deploykit.yaml": yaml.safe_dump({"entrypoint": "app.py:score", "env": ".env", "schema": "example.json"})})
    (sm_project.dir / "rows.json").write_text(json.dumps([{"x": 1}, {"x": 2}]))
    common = ("--target", "sagemaker", "--credentials", sm_project.credentials, "--metadata", sm_project.metadata)
    deployed = cli("deploy", folder, "--name", NAME, "--timeout", 180, *common, timeout=240)
    assert deployed.code == 0, deployed.err
    scored = cli("score", NAME, "rows.json", "--json", "--credentials", sm_project.credentials,
                 "--metadata", sm_project.metadata)
    assert scored.code == 0, scored.err
    assert scored.out.count(f'"token_length": {len(SECRET)}') == 2 and "eu-west-1" in scored.out

    record = sm_project.record(NAME)
    assert record is not None
    sm = boto_client(sm_project.emulator, "sagemaker")
    model = sm.describe_model(ModelName=record["ids"]["model_name"])
    assert model["PrimaryContainer"]["Environment"]["DEPLOYKIT_BUNDLE"] == "sync"
    config = sm.describe_endpoint_config(EndpointConfigName=record["ids"]["config_name"])
    tags = sm.list_tags(ResourceArn=model["ModelArn"])
    with _tarball(sm_project, record["ids"]["model_data_url"]) as tar:
        env_entry = tar.getmember("bundle/.env")
    assert env_entry.mode == 0o600  # the one copy: inside the tarball, private
    wrote = [deployed.out, deployed.err, scored.out, scored.err, json.dumps(model, default=str),
             json.dumps(config, default=str), json.dumps(tags, default=str), sm_project.metadata.read_text()]
    wrote += [p.read_text(errors="replace") for p in (sm_project.dir / ".deploykit").rglob("*") if p.is_file()]
    logs = list(sm_project.emulator.folder.rglob("*.log"))  # the container's log and moto's
    assert {"container.log", "moto.log"} <= {p.name for p in logs}
    wrote += [p.read_text(errors="replace") for p in logs]
    assert not [text[:200] for text in wrote if SECRET in text]
    deploykit.delete(NAME, **sm_project.kwargs(NAME))


def test_async_script_on_async_inference(sm_project: SageMakerProject, tmp_path: Path, bank_model: Path,
                                         bank_rows: list[dict[str, Any]]) -> None:
    """Neomaril's async script: the input file in a job folder, ``inputFileName`` set, ``output.csv`` written
    there and returned; served through SageMaker async inference (an AsyncInferenceConfig made for it)."""
    folder = _write(tmp_path / "job", {"job.py": ASYNC_SCRIPT, "example.json": json.dumps(bank_rows[0])})
    (folder / "model.pkl").write_bytes(bank_model.read_bytes())
    script = Script("job.py:score", model_file="model.pkl", schema="example.json", mode="async", name=NAME,
                    root=folder)
    dep = _deploy(sm_project, script)  # the smoke test ran the example row as a one-row file
    assert (dep.ids["bundle"], dep.ids["async_output"]) == ("async", f"s3://{BUCKET}/deploykit/{NAME}/async-output")
    config = boto_client(sm_project.emulator, "sagemaker").describe_endpoint_config(
        EndpointConfigName=dep.ids["config_name"])
    assert config["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"] == dep.ids["async_output"]

    source = tmp_path / "input.csv"
    pd.DataFrame(bank_rows).to_csv(source, index=False)
    proba = joblib.load(bank_model).predict_proba(pd.DataFrame(bank_rows))
    expected = pd.DataFrame({"pred": proba.argmax(axis=1), "proba": proba[:, 1]}).to_csv(index=False)
    out = batch.score_file(NAME, source, tmp_path / "out" / "output.csv", credentials=sm_project.credentials,
                           metadata=sm_project.metadata, timeout=120)
    assert out.read_text() == expected  # the script's own file, byte for byte

    labels = _score(sm_project, bank_rows[:3]).labels  # rows: sent as the input file, the output rows read back
    assert [row["pred"] for row in labels] == proba[:3].argmax(axis=1).tolist()
    assert [row["proba"] for row in labels] == pytest.approx(proba[:3, 1].tolist())

    # a script returning a file outside its job folder is refused: the update's smoke test fails, v1 serves on
    (folder / "job.py").write_text(ASYNC_SCRIPT.replace('path = data_path + "/output.csv"',
                                                        'path = model_path + "elsewhere.csv"'))
    with pytest.raises(DeploymentError, match=r"outside its job folder"):
        _deploy(sm_project, script)
    assert batch.score_file(NAME, source, tmp_path / "again.csv", credentials=sm_project.credentials,
                            metadata=sm_project.metadata, timeout=120).read_text() == expected
    with pytest.raises(ScoringError, match=r"suffix '.txt'"):
        batch.score_file(NAME, tmp_path / "input.txt", tmp_path / "x.csv", credentials=sm_project.credentials,
                         metadata=sm_project.metadata)
    deploykit.delete(NAME, **sm_project.kwargs(NAME))
    assert leftovers(sm_project.emulator, NAME) == []


def test_requirements_under_network_isolation_are_refused(sm_project: SageMakerProject, tmp_path: Path) -> None:
    sync = _write(tmp_path / "sync", {"app.py": "def score(data, base_path):\n    return {}\n",
                                      "requirements.txt": "joblib\n"})
    sm_project.write_credentials(network_isolation=True)
    with pytest.raises(DeploymentError, match=r"'requirements.txt' is installed .*network_isolation"):
        _deploy(sm_project, Script("app.py:score", requirements="requirements.txt", name=NAME, root=sync))
    assert leftovers(sm_project.emulator, NAME) == [] and sm_project.record(NAME) is None


class Killed(BaseException):
    """Stands for SIGKILL at a crash point (see test_reconcile.py)."""


def _die() -> None:
    raise Killed()


def test_killed_update_of_a_script_is_adopted(sm_project: SageMakerProject, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path, bank_model: Path, bank_model_v2: Path,
                                              bank_rows: list[dict[str, Any]]) -> None:
    current = _deploy(sm_project, bank_model)  # a model file first: the script replaces it
    artifact = load_artifact(_neomaril(tmp_path / "v2", bank_model_v2, bank_rows))
    op = PendingOperation(NAME, "sagemaker", "update", 2, planned={"model_sha256": artifact.sha256})
    target = open_target("sagemaker", sm_project.credentials, sm_project.dir / ".deploykit", timeout=120)
    target.context.note = lambda **ids: op.ids.update(ids)
    monkeypatch.setattr(faults, "_die", _die)
    monkeypatch.setenv(faults.CRASH_AT_ENV, "update:endpoint-updating")
    with pytest.raises(Killed):
        target.update(current, artifact)
    monkeypatch.delenv(faults.CRASH_AT_ENV)
    record = open_target("sagemaker", sm_project.credentials, sm_project.dir / ".deploykit",
                         timeout=120).reconcile(op, current)
    assert record is not None and record.status == "ready" and record.ids["bundle"] == "sync"
    assert target.score(record, pd.DataFrame(bank_rows[:2])).labels == _expected(bank_model_v2, bank_rows[:2])
    target.delete(record)


def test_tarball_is_deterministic_and_runs_without_deploykit(tmp_path: Path, bank_model: Path,
                                                             bank_rows: list[dict[str, Any]]) -> None:
    """Two stagings of the same files pack to the same bytes; the tarball's inference.py serves the script under
    ``python -I -S`` (no .pth file, so no editable deploykit; the base interpreter's libraries, like the image)."""
    script = _neomaril(tmp_path / "src", bank_model, bank_rows)
    (tmp_path / "src" / ".env").write_text(f"API_TOKEN={SECRET}\n")
    script.env = ".env"
    first, second = load_artifact(script), load_artifact(script)
    assert first.path != second.path and first.sha256 == second.sha256
    path, sha = build_model_tarball(first, tmp_path / "a" / "model.tar.gz")
    again, sha_again = build_model_tarball(second, tmp_path / "b" / "model.tar.gz")
    assert sha == sha_again and path.read_bytes() == again.read_bytes()
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "model", filter="data")
    unpacked = tmp_path / "model"

    libraries = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["purelib"]
    code = f"""
import importlib.util, json, os, sys
sys.path.append({libraries!r})
assert importlib.util.find_spec("deploykit") is None, "deploykit is importable"
sys.path.insert(0, {str(unpacked / "code")!r})
import inference
model = inference.model_fn({str(unpacked)!r})
body, ctype = inference.output_fn(inference.predict_fn(inference.input_fn({json.dumps(bank_rows)!r}, "application/json"), model), None)
print(json.dumps({{"body": json.loads(body), "token": len(os.environ["API_TOKEN"]), "model": os.environ["modelFileName"],
                  "modules": sorted(m for m in sys.modules if "deploykit" in m)}}))
"""
    run = subprocess.run([sys._base_executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=120,
                         check=False, cwd=unpacked)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["modules"] == [] and (answer["token"], answer["model"]) == (len(SECRET), "model.pkl")
    assert answer["body"] == {"predictions": _expected(bank_model, bank_rows)}


def test_script_failing_at_import_fails_the_endpoint_with_its_message(sm_project: SageMakerProject,
                                                                     tmp_path: Path) -> None:
    folder = _write(tmp_path / "broken", {
        "app.py": "raise RuntimeError('the feature store is unreachable')\n\ndef score(data, base_path):\n"
                  "    return {}\n"})
    with pytest.raises(DeploymentError, match=r"RuntimeError: the feature store is unreachable"):
        _deploy(sm_project, Script("app.py:score", name=NAME, root=folder))
    assert sm_project.record(NAME) is None and leftovers(sm_project.emulator, NAME) == []  # a failed create is undone
