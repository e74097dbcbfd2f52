"""Scoring-script bundles (Neomaril's sync contract) on the mlflow target, against a real `mlflow server`
and MLflow's own scoring server (env-manager local: the bundle's requirements are recorded in the
model's requirements.txt, not installed).

The scripts are Neomaril's documented shape: ``score(data, base_path)`` loads ``base_path +
"/model.pkl"`` (or ``base_path + os.getenv("modelFileName")``) and returns a dict of numpy values.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import stat
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import deploykit
from deploykit.artifact import load_artifact
from deploykit.bundle import Script
from deploykit.cli import cli
from deploykit_plugins.mlflow import serving
from deploykit_plugins.mlflow.registry import NAME_TAG, REVISION_TAG, SHA_TAG

ROWS = [{"age": 23, "balance": 120.5, "plan": "basic"}, {"age": 61, "balance": 9800.0, "plan": "gold"},
        {"age": 45, "balance": 2500.25, "plan": "silver"}]
NOT_INSTALLED = "pyjokes==0.8.3"  # a small pure-Python package from the registry, absent from the test venv

NEOMARIL_SCRIPT = '''
import hashlib
import json
import os

import pandas as pd
from joblib import load

from features import numeric


def score(data, base_path):
    model = load(base_path + "/model.pkl")
    df = pd.DataFrame(data=json.loads(data), index=[0])
    proba = model.predict_proba(numeric(df))[0]
    pred = model.predict(numeric(df))[0]
    token = os.environ["SCORING_TOKEN"]
    return {"pred": int(pred), "proba": float(proba[1]), "model": os.getenv("modelFileName"),
            "token_sha": hashlib.sha256(token.encode()).hexdigest()[:16], "version": VERSION}

VERSION = 1
'''

FEATURES_MODULE = '''
def numeric(df):
    """The model's two numeric features (an extra module beside the script)."""
    return df[["age", "balance"]].to_numpy(dtype=float)
'''

TWO_PICKLES_SCRIPT = '''
import json
import os

import numpy as np
from joblib import load

KNOWN = {"basic", "silver", "gold"}


def score(data, base_path):
    row = json.loads(data)
    if row["plan"] not in KNOWN:
        raise ValueError(f"unknown plan {row['plan']!r}; send one of {sorted(KNOWN)}")
    ohe = load(base_path + "/ohe.pkl")
    model = load(base_path + os.getenv("modelFileName"))
    X = np.hstack([np.array([[row["age"], row["balance"]]]), ohe.transform([[row["plan"]]]).toarray()])
    return {"pred": model.predict(X)[0], "proba": model.predict_proba(X)[0], "n": np.int32(X.shape[1])}
'''


def _fit(folder: Path) -> None:
    """model.pkl (numeric features) and ohe.pkl + model2.pkl (the two-pickle case), written with joblib."""
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(3)
    X = np.column_stack([rng.integers(18, 80, 300), rng.uniform(0, 10000, 300)])
    y = ((X[:, 0] > 40) ^ (X[:, 1] > 5000)).astype(int)
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), folder / "model.pkl")
    plans = np.array([["basic"], ["silver"], ["gold"]])[rng.integers(0, 3, 300)]
    ohe = OneHotEncoder().fit(plans)
    joblib.dump(ohe, folder / "ohe.pkl")
    joblib.dump(LogisticRegression(max_iter=500).fit(np.hstack([X, ohe.transform(plans).toarray()]), y),
                folder / "model2.pkl")


def neomaril_bundle(folder: Path, secret: str, version: int = 1) -> Path:
    """A folder with deploykit.yaml: the Neomaril sync script, its model, an extra module, a requirement
    that is not installed, an env file holding ``secret`` and an example request."""
    folder.mkdir(parents=True, exist_ok=True)
    _fit(folder)
    (folder / "app.py").write_text(NEOMARIL_SCRIPT.replace("VERSION = 1", f"VERSION = {version}"))
    (folder / "features.py").write_text(FEATURES_MODULE)
    (folder / "requirements.txt").write_text(f"# the script's own pins\n{NOT_INSTALLED}\n")
    (folder / ".env").write_text(f"# secrets of the scoring script\nexport SCORING_TOKEN='{secret}'\n")
    (folder / "example.json").write_text(json.dumps(ROWS[0]))
    (folder / "deploykit.yaml").write_text(yaml.safe_dump({
        "entrypoint": "app.py:score", "model_file": "model.pkl", "extra": ["features.py"],
        "requirements": "requirements.txt", "env": ".env", "schema": "example.json"}))
    return folder


def expected(folder: Path, secret: str, version: int = 1) -> list[dict]:
    """What the Neomaril script answers for ROWS, computed here from the model (not by running the script)."""
    import joblib

    model = joblib.load(folder / "model.pkl")
    X = pd.DataFrame(ROWS)[["age", "balance"]].to_numpy(dtype=float)
    token_sha = hashlib.sha256(secret.encode()).hexdigest()[:16]
    return [{"pred": int(p), "proba": float(q[1]), "model": "model.pkl", "token_sha": token_sha, "version": version}
            for p, q in zip(model.predict(X), model.predict_proba(X))]


def files_holding(root: Path, secret: str) -> list[Path]:
    """Every file under ``root`` whose bytes contain ``secret``."""
    needle = secret.encode()
    return sorted(p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes())


def _record(project) -> dict | None:
    data = yaml.safe_load(project.metadata.read_text()) or {}
    return (data.get("deployments") or {}).get(project.name, {}).get("mlflow")


def _model_file(project, version: str, path: str) -> str:
    """One file of a registered version's model, read back from the tracking server."""
    import mlflow.artifacts

    from deploykit_plugins.mlflow.settings import MlflowSettings, connected

    with connected(MlflowSettings(tracking_uri=project.tracking_uri)):
        local = mlflow.artifacts.download_artifacts(f"models:/{project.name}/{version}/{path}")
    return Path(local).read_text()


def test_neomaril_script_deploys_updates_rolls_back_and_keeps_its_secret(mlflow_project, mlflow_tracking_server,
                                                                        tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # as a CI shell: the scoring server must still find uvicorn
    p = mlflow_project
    secret = f"tok-{uuid.uuid4().hex}"
    v1 = neomaril_bundle(tmp_path / "bundle-v1", secret)
    v2 = neomaril_bundle(tmp_path / "bundle-v2", secret, version=2)
    runner = CliRunner()
    outputs = []

    result = runner.invoke(cli, ["deploy", str(v1), "--target", "mlflow", "--name", p.name, "--json"])
    outputs.append(result.output)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["action"] == "created"
    preds = deploykit.score(p.name, ROWS, **p.kwargs())
    assert preds.raw["predictions"] == expected(v1, secret)  # the script ran in the scoring server, env included
    assert preds.labels == [row["pred"] for row in expected(v1, secret)]

    # what MLflow holds: a pyfunc of our vendored module, the bundle as an artifact, the tags as for model files
    client = p.client()
    version = client.get_model_version_by_alias(p.name, "production")
    artifact = load_artifact(v1)
    assert version.version == "1"
    assert (version.tags[NAME_TAG], version.tags[REVISION_TAG], version.tags[SHA_TAG]) == (p.name, "1", artifact.sha256)
    mlmodel = yaml.safe_load(_model_file(p, "1", "MLmodel"))
    pyfunc = mlmodel["flavors"]["python_function"]
    assert (pyfunc["loader_module"], pyfunc["code"], list(pyfunc["artifacts"])) == ("mlflow.pyfunc.model", "code",
                                                                                 ["bundle"])
    assert NOT_INSTALLED in _model_file(p, "1", "requirements.txt").splitlines()  # recorded ...
    assert importlib.util.find_spec("pyjokes") is None  # ... not installed (env-manager local)

    # a changed script is a new version behind the same URL; rollback moves the alias back
    again = runner.invoke(cli, ["deploy", str(v1), "--target", "mlflow", "--name", p.name, "--json"])
    outputs.append(again.output)
    assert json.loads(again.output)["action"] == "unchanged"
    result = runner.invoke(cli, ["deploy", str(v2), "--target", "mlflow", "--name", p.name, "--json"])
    outputs.append(result.output)
    assert result.exit_code == 0, result.output
    updated = json.loads(result.output)
    assert (updated["action"], updated["revision"]) == ("updated", 2)
    assert client.get_model_version_by_alias(p.name, "production").version == "2"
    assert deploykit.score(p.name, ROWS, **p.kwargs()).raw["predictions"] == expected(v2, secret, version=2)
    result = runner.invoke(cli, ["rollback", p.name, "--json"])
    outputs.append(result.output)
    assert result.exit_code == 0, result.output
    assert client.get_model_version_by_alias(p.name, "production").version == "1"
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))
    result = runner.invoke(cli, ["score", p.name, str(tmp_path / "rows.json"), "--json"])
    outputs.append(result.output)
    assert result.exit_code == 0, result.output
    assert deploykit.score(p.name, ROWS, **p.kwargs()).raw["predictions"] == expected(v1, secret)

    # the secret: only in the bundle's own .env in the artifact store (one per version), nowhere else
    store = mlflow_tracking_server.log.parent
    held = files_holding(store, secret)
    assert len(held) == 2  # model/artifacts/<bundle folder>/.env of versions 1 and 2
    assert all(f.name == ".env" and (f.parent / "deploykit.yaml").is_file() and f.parent.parent.name == "artifacts"
               and (f.parent.parent.parent / "MLmodel").is_file() for f in held)
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in held)
    assert files_holding(p.dir / ".deploykit", secret) == []  # the scoring servers' logs included
    assert secret not in p.metadata.read_text()
    assert not any(secret in out for out in outputs)
    for key in ("MLmodel", "conda.yaml", "requirements.txt", "python_env.yaml"):
        assert secret not in _model_file(p, "1", key)
    run = client.get_run(version.run_id)
    assert secret not in json.dumps([run.data.tags, run.data.params, dict(version.tags)])

    live = _record(p)["ids"]
    result = runner.invoke(cli, ["delete", p.name, "--json"])
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    assert client.get_registered_model(p.name).aliases == {}
    assert not serving.alive(live["pid"]) and not serving.alive(live["front_pid"])
    assert _record(p) is None


def test_two_pickles_raw_numpy_and_a_script_that_raises(mlflow_project, tmp_path):
    p = mlflow_project
    folder = tmp_path / "two-pickles"
    folder.mkdir()
    _fit(folder)
    (folder / "app.py").write_text(TWO_PICKLES_SCRIPT)
    script = Script("app.py:score", model_file="model2.pkl", extra=["ohe.pkl"], schema="example.json", root=folder)
    (folder / "example.json").write_text(json.dumps(ROWS[1]))

    dep = deploykit.deploy(script, target="mlflow", name=p.name, **p.kwargs())
    assert (dep.action, dep.status) == ("created", "ready")  # smoke-tested with the example request
    answers = deploykit.score(p.name, ROWS, **p.kwargs()).raw["predictions"]

    import joblib

    ohe, model = joblib.load(folder / "ohe.pkl"), joblib.load(folder / "model2.pkl")
    frame = pd.DataFrame(ROWS)
    X = np.hstack([frame[["age", "balance"]].to_numpy(), ohe.transform(frame[["plan"]].to_numpy()).toarray()])
    assert answers == [{"pred": int(a), "proba": [float(x) for x in b], "n": 5}  # numpy values converted
                       for a, b in zip(model.predict(X), model.predict_proba(X))]

    with pytest.raises(deploykit.ScoringError) as err:
        deploykit.score(p.name, [dict(ROWS[0], plan="platinum")], **p.kwargs())
    assert "ValueError: unknown plan 'platinum'; send one of ['basic', 'gold', 'silver']" in str(err.value)
    assert err.value.status == 400  # a ValueError is bad input, not a server fault
    assert deploykit.score(p.name, ROWS[:1], **p.kwargs()).raw["predictions"] == answers[:1]  # still serving
    deploykit.delete(p.name, **p.kwargs())


def test_an_async_bundle_is_refused_naming_what_to_use(mlflow_project, tmp_path):
    p = mlflow_project
    (tmp_path / "batch.py").write_text("def score(data_path, model_path):\n    return data_path + '/output.csv'\n")
    script = Script("batch.py:score", mode="async", root=tmp_path, name=p.name)
    with pytest.raises(deploykit.DeploymentError) as err:
        deploykit.deploy(script, target="mlflow", **p.kwargs())
    message = str(err.value)
    assert f"{p.name!r} is an async scoring-script bundle" in message
    assert "--target local" in message and "--async" in message and "--target watsonml" in message
    assert p.client().search_model_versions(f"name = '{p.name}'") == []  # nothing was logged or registered
    assert not p.metadata.exists() or _record(p) is None


def test_a_script_that_fails_to_import_fails_the_deploy_with_its_message(mlflow_project, tmp_path):
    p = mlflow_project
    (tmp_path / "app.py").write_text("raise RuntimeError('the scoring script needs GPU_COUNT')\n"
                                     "def score(data, base_path):\n    return {}\n")
    with pytest.raises(deploykit.DeploymentError, match="RuntimeError: the scoring script needs GPU_COUNT"):
        deploykit.deploy(Script("app.py:score", root=tmp_path), target="mlflow", name=p.name, **p.kwargs())
    assert _record(p) is None
    assert p.client().search_model_versions(f"name = '{p.name}'") == []  # the failed version was removed


# -- the vendored wrapper keeps deploykit.bundle's contract (pure logic, no server) --------------------------

def _vendored(folder: Path):
    from deploykit_plugins.mlflow import bundle_model

    model = bundle_model.BundleModel()
    model.load_context(type("Context", (), {"artifacts": {"bundle": str(folder)}})())
    return model


def test_the_vendored_wrapper_answers_as_deploykit_bundle_does(tmp_path, monkeypatch):
    """Both run the same script on the same rows (in this test process: a unit test of the contract)."""
    secret = "s3cr3t"
    artifact = load_artifact(neomaril_bundle(tmp_path / "src", secret))
    monkeypatch.setattr(os, "environ", dict(os.environ))  # both set the script's variables: keep them here
    monkeypatch.syspath_prepend(str(artifact.path))
    ours = artifact.model.load()
    vendored = _vendored(artifact.path)
    assert vendored.base_path == ours.base_path and vendored.base_path.endswith("/")
    for row in ROWS:
        assert vendored.score_row(json.dumps(row)) == ours.score_sync(json.dumps(row))
    frame = vendored.predict(None, pd.DataFrame(ROWS))
    assert frame.to_dict("records") == [ours.score_sync(json.dumps(r)) for r in ROWS]
    assert os.environ["SCORING_TOKEN"] == secret and os.environ["modelFileName"] == "model.pkl"


@pytest.mark.parametrize("text", ["A=1\n# comment\nexport B = 'two words'\nC=\"3\"\nD=x=y\n", "\n\n"])
def test_the_vendored_env_parser_reads_what_deploykit_bundle_reads(tmp_path, text):
    from deploykit.bundle import read_env_file
    from deploykit_plugins.mlflow.bundle_model import read_env_file as vendored

    path = tmp_path / ".env"
    path.write_text(text)
    assert vendored(path) == read_env_file(path)


def test_the_vendored_wrapper_converts_numpy_and_wraps_non_objects():
    from deploykit_plugins.mlflow.bundle_model import plain

    value = {"a": np.int64(3), "b": np.array([[1.5, np.nan]]), "c": np.bool_(True), "d": [np.float32(0.5)],
             "e": pd.Timestamp("2024-05-01T12:00:00")}
    assert plain(value) == {"a": 3, "b": [[1.5, None]], "c": True, "d": [0.5], "e": "2024-05-01T12:00:00"}
    assert json.dumps(plain(value))


def test_the_pickled_wrapper_holds_no_code(tmp_path):
    """The model's python_model.pkl refers to the module in the model's code/ folder: no deploykit import, no bytecode."""
    from deploykit_plugins.mlflow.registry import BUNDLE_MODULE, _shipped

    module, path = _shipped(BUNDLE_MODULE, tmp_path)
    import cloudpickle

    data = cloudpickle.dumps(module.BundleModel())
    assert path.name == f"{BUNDLE_MODULE}.py" and BUNDLE_MODULE.encode() in data
    assert b"deploykit_plugins" not in data and len(data) < 200
    assert type(pickle.loads(data)).__module__ == BUNDLE_MODULE


def test_requirements_are_the_bundles_own_lines(tmp_path):
    from deploykit_plugins.mlflow.registry import bundle_requirements

    (tmp_path / "app.py").write_text("def score(data, base_path):\n    return {}\n")
    (tmp_path / "requirements.txt").write_text("# pins\npyjokes==0.8.3  # jokes\n\ncloudpickle>=2\n")
    artifact = load_artifact(Script("app.py:score", requirements="requirements.txt", root=tmp_path))
    assert bundle_requirements(artifact) == ["pyjokes==0.8.3", "cloudpickle>=2"]
    (tmp_path / "requirements.txt").write_text("pyjokes\n-r more.txt\n")
    artifact = load_artifact(Script("app.py:score", requirements="requirements.txt", root=tmp_path))
    with pytest.raises(deploykit.ArtifactError, match=r"line 2 of the bundle's requirements file 'requirements.txt' "
                                                      r"includes another file \(-r\)"):
        bundle_requirements(artifact)
    bare = load_artifact(Script("app.py:score", root=tmp_path))
    assert [r.split("==")[0] for r in bundle_requirements(bare)] == ["cloudpickle"]


def test_mlflow_table_answers_with_probability_columns_decode_to_probabilities():
    body = {"predictions": [{"prediction": "yes", "probability_no": 0.25, "probability_yes": 0.75},
                            {"prediction": "no", "probability_no": 1, "probability_yes": 0.0}]}
    preds = deploykit.Predictions.decode(body)
    assert (preds.labels, preds.probabilities, preds.classes) == (["yes", "no"], [[0.25, 0.75], [1.0, 0.0]],
                                                                 ["no", "yes"])
    ints = deploykit.Predictions.decode({"predictions": [{"prediction": 1, "probability_0": 0.4, "probability_1": 0.6}]})
    assert ints.classes == [0, 1]
    script = deploykit.Predictions.decode({"predictions": [{"pred": 1, "proba": 0.8}]})
    assert (script.labels, script.probabilities) == ([1], None)

