"""Scoring-script bundles on Watson: a deployable Python function with the bundle as a package extension.

The real ibm-watsonx-ai client against the emulator, which installs the package extension and
runs the function in a process of its own (the scripts below never run in the test process:
expected answers are computed from the model files directly)."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

import deploykit
from deploykit.errors import DeploymentError, ScoringError
from tests.plugins.watsonml.conftest import WatsonProject

# Neomaril's documented sync script, verbatim in shape, returning the raw numpy values.
NEOMARIL_SYNC = '''\
import json

import joblib
import pandas as pd


def score(data, base_path):
    model = joblib.load(base_path + "/model.pkl")
    df = pd.DataFrame(data=json.loads(data), index=[0])
    proba = model.predict_proba(df)[0, 1]
    pred = model.predict(df)[0]
    return {"pred": pred, "proba": proba}
'''

TWO_PICKLES = '''\
import json
import os

import joblib
import pandas as pd


def score(data, base_path):
    ohe = joblib.load(base_path + "/ohe.pkl")
    model = joblib.load(base_path + os.getenv("modelFileName"))
    df = pd.DataFrame([json.loads(data)])
    encoded = ohe.transform(df[["color"]])
    features = pd.concat([df[["x"]].reset_index(drop=True),
                          pd.DataFrame(encoded, columns=ohe.get_feature_names_out())], axis=1)
    return {"pred": int(model.predict(features)[0]), "proba": float(model.predict_proba(features)[0, 1])}
'''

WITH_MODULE = '''\
import json

from helpers import double


def score(data, base_path):
    row = json.loads(data)
    return json.dumps({"doubled": double(row["x"])})
'''

SECRET_SCRIPT = '''\
import os


def score(data, base_path):
    return {"secret_length": len(os.environ["API_SECRET"]), "model": os.environ["modelFileName"]}
'''

RAISES = '''\
import json


def score(data, base_path):
    row = json.loads(data)
    if row.get("x", 0) < 0:
        raise ValueError(f"x must not be negative, got {row['x']}")
    return {"ok": True}
'''

# Neomaril's documented async script, verbatim in shape.
NEOMARIL_ASYNC = '''\
import os

import joblib
import pandas as pd


def score(data_path, model_path):
    model = joblib.load(model_path + "/model.pkl")
    df = pd.read_csv(data_path + "/" + os.getenv("inputFileName"))
    features = df.copy()
    df["pred"] = model.predict(features)
    df["proba"] = model.predict_proba(features)[:, 1]
    output = data_path + "/output.csv"
    df.to_csv(output, index=False)
    return output
'''

SECRET = "s3cr3t-watson-value-7f1c9e"


def write_bundle(folder: Path, script: str, files: dict[str, Any] | None = None, **manifest: Any) -> Path:
    """A user's bundle folder: app.py, a deploykit.yaml naming the rest, and ``files`` (bytes/text/Path)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(script)
    for name, content in (files or {}).items():
        if isinstance(content, Path):
            shutil.copyfile(content, folder / name)
        elif isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            (folder / name).write_text(content)
    (folder / "deploykit.yaml").write_text(yaml.safe_dump({"entrypoint": "app.py:score", **manifest}))
    return folder


def neomaril_answers(model: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the Neomaril script answers for each row, from the model file itself."""
    fitted = joblib.load(model)
    frame = pd.DataFrame(rows)
    return [{"pred": p.item(), "proba": pytest.approx(q)}
            for p, q in zip(fitted.predict(frame), fitted.predict_proba(frame)[:, 1])]


def left_on_watson(emu: Any) -> dict[str, Any]:
    return {"functions": emu.functions, "models": emu.models, "deployments": emu.deployments,
            "software_specs": emu.custom_software_specs, "package_extensions": emu.package_extensions}


def test_neomaril_sync_script_deploy_update_rollback_delete(watson_project: WatsonProject, bank_model: Path,
                                                            bank_rows: list[dict[str, Any]]) -> None:
    emu = watson_project.emulator
    folder = write_bundle(watson_project.dir / "bundle", NEOMARIL_SYNC, {"model.pkl": bank_model,
                                                                         "example.json": json.dumps(bank_rows[0])},
                          model_file="model.pkl", schema="example.json", name="bank-script")
    created = deploykit.deploy(folder, target="watsonml")
    assert (created.name, created.action, created.revision, created.status) == ("bank-script", "created", 1, "ready")
    ids = created.ids
    assert ids["asset_kind"] == "function" and ids["model_rev"] == "1"
    assert set(emu.functions) == {ids["model_uid"]} and set(emu.deployments) == {ids["deployment_uid"]}
    assert emu.models == {}
    spec = emu.custom_software_specs[ids["software_spec_uid"]]
    assert spec["entity"]["software_specification"]["base_software_specification"]["name"] == "runtime-25.1-py3.12"
    assert [e["metadata"]["asset_id"] for e in spec["entity"]["software_specification"]["package_extensions"]] == \
        [ids["package_extension_uid"]]
    function = emu.functions[ids["model_uid"]].latest.doc
    assert {"deploykit", "deploykit-name:bank-script", "deploykit-rev:1"} <= set(function["metadata"]["tags"])
    assert function["entity"]["custom"]["deploykit_sha256"] == created.model_sha256
    assert function["entity"]["software_spec"]["id"] == ids["software_spec_uid"]
    # the stored code is the outer function with primitive defaults, ending in score = generator()
    code = gzip.decompress(emu.functions[ids["model_uid"]].latest.archive).decode()
    assert f"package='{ids['package']}'" in code and code.rstrip().endswith("score = deploykit_bundle_function()")

    scored = deploykit.score("bank-script", bank_rows)
    assert scored.labels == neomaril_answers(bank_model, bank_rows)  # numpy values came back plain
    assert scored.raw["predictions"][0]["fields"] == ["pred", "proba"]

    again = deploykit.deploy(folder, target="watsonml")
    assert (again.action, again.revision) == ("unchanged", 1)

    (folder / "app.py").write_text(NEOMARIL_SYNC.replace('return {"pred": pred, "proba": proba}',
                                                         'return {"pred": pred, "proba": proba, "version": 2}'))
    updated = deploykit.deploy(folder, target="watsonml")
    assert (updated.action, updated.revision, updated.url) == ("updated", 2, created.url)
    assert updated.ids["deployment_uid"] == ids["deployment_uid"] and updated.ids["model_uid"] != ids["model_uid"]
    assert {a["version"] for a in deploykit.score("bank-script", bank_rows[:3]).labels} == {2}

    back = deploykit.rollback("bank-script")
    assert (back.action, back.revision, back.url) == ("rolled-back", 1, created.url)
    assert back.ids["model_uid"] == ids["model_uid"] and back.ids["software_spec_uid"] == ids["software_spec_uid"]
    assert deploykit.score("bank-script", bank_rows[:3]).labels == neomaril_answers(bank_model, bank_rows[:3])
    assert len(emu.functions) == 2 and len(emu.custom_software_specs) == 2 and len(emu.package_extensions) == 2

    deploykit.delete("bank-script")
    assert all(not found for found in left_on_watson(emu).values()), left_on_watson(emu)


def test_two_pickles_glued_in_the_script(cpd_project: WatsonProject) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"color": rng.choice(["red", "green", "blue"], 200), "x": rng.normal(size=200)})
    target = ((frame["color"] == "red") ^ (frame["x"] > 0.3)).astype(int)
    ohe = OneHotEncoder(sparse_output=False).fit(frame[["color"]])
    features = pd.concat([frame[["x"]], pd.DataFrame(ohe.transform(frame[["color"]]),
                                                     columns=ohe.get_feature_names_out())], axis=1)
    model = LogisticRegression().fit(features, target)
    tmp = cpd_project.dir / "fits"
    tmp.mkdir()
    joblib.dump(ohe, tmp / "ohe.pkl")
    joblib.dump(model, tmp / "model.pkl")
    rows = [{"color": c, "x": float(x)} for c, x in zip(frame["color"][:6], frame["x"][:6])]
    folder = write_bundle(cpd_project.dir / "bundle", TWO_PICKLES,
                          {"model.pkl": tmp / "model.pkl", "ohe.pkl": tmp / "ohe.pkl", "example.json": json.dumps(rows[0])},
                          model_file="model.pkl", extra=["ohe.pkl"], schema="example.json", name="two-pickles")
    deployed = deploykit.deploy(folder, target="watsonml")
    assert deployed.status == "ready"

    answers = deploykit.score("two-pickles", rows).labels
    assert [a["pred"] for a in answers] == model.predict(features[:6]).tolist()
    assert [a["proba"] for a in answers] == pytest.approx(model.predict_proba(features[:6])[:, 1].tolist())
    deploykit.delete("two-pickles")
    assert all(not found for found in left_on_watson(cpd_project.emulator).values())


def test_extra_module_and_a_json_string_answer(cpd_project: WatsonProject) -> None:
    folder = write_bundle(cpd_project.dir / "bundle", WITH_MODULE,
                          {"helpers.py": "def double(x):\n    return 2 * x\n", "example.json": '{"x": 1.5}'},
                          extra=["helpers.py"], schema="example.json", name="with-module")
    deploykit.deploy(folder, target="watsonml")
    scored = deploykit.score("with-module", {"input_data": [{"fields": ["x"], "values": [[1], [2.5]]},
                                                           {"fields": ["x"], "values": [[-4]]}]})
    assert scored.labels == [{"doubled": 2}, {"doubled": 5.0}, {"doubled": -8}]
    assert scored.raw["predictions"][0]["fields"] == ["doubled"]


def test_env_file_secret_reaches_the_script_and_nothing_else(cli: Any, cpd_project: WatsonProject,
                                                             bank_model: Path) -> None:
    emu = cpd_project.emulator
    folder = write_bundle(cpd_project.dir / "bundle", SECRET_SCRIPT,
                          {"model.pkl": bank_model, "secrets.env": f"# keys\nAPI_SECRET={SECRET}\n",
                           "example.json": '{"x": 1}'},
                          model_file="model.pkl", env="secrets.env", schema="example.json", name="secret-script")
    created = cli("deploy", folder, "--target", "watsonml", "--json")
    assert created.code == 0, created.err
    rows = cpd_project.dir / "rows.json"
    rows.write_text(json.dumps([{"x": 1}, {"x": 2}]))
    scored = cli("score", "secret-script", rows, "--json")
    assert scored.code == 0, scored.err
    assert scored.json()["predictions"] == [{"secret_length": len(SECRET), "model": "model.pkl"}] * 2
    status = cli("status", "secret-script", "--json")
    outputs = [created.out, created.err, scored.out, scored.err, status.out, status.err]

    assert not any(SECRET in text for text in outputs)
    assert SECRET not in cpd_project.metadata.read_text()
    state = cpd_project.dir / ".deploykit"
    for path in state.rglob("*") if state.exists() else []:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in json.dumps(emu.stored_documents())
    for function in emu.functions.values():
        assert SECRET.encode() not in gzip.decompress(function.latest.archive or b"")
    # it travels inside the package extension only, as the bundle's 0600 .env
    packages = [zipfile.ZipFile(io.BytesIO(e.content or b"")) for e in emu.package_extensions.values()]
    envs = [z.getinfo(n) for z in packages for n in z.namelist() if n.endswith("/.env")]
    assert envs and all(SECRET.encode() in z.read(i) for z in packages for i in envs if i.filename in z.namelist())
    assert all(info.external_attr >> 16 == 0o600 for info in envs)


def test_a_script_that_raises_is_a_scoring_error_with_its_message(cpd_project: WatsonProject) -> None:
    folder = write_bundle(cpd_project.dir / "bundle", RAISES, {"example.json": '{"x": 1}'}, schema="example.json",
                          name="raising")
    deploykit.deploy(folder, target="watsonml")
    assert deploykit.score("raising", [{"x": 2}]).labels == [{"ok": True}]
    with pytest.raises(ScoringError, match=r"ValueError: x must not be negative, got -3"):
        deploykit.score("raising", [{"x": -3}])
    assert deploykit.score("raising", [{"x": 5}]).labels == [{"ok": True}]  # the function's process lives on


def test_a_script_that_fails_at_import_fails_the_deploy_and_leaves_nothing(cpd_project: WatsonProject) -> None:
    folder = write_bundle(cpd_project.dir / "bundle", "raise RuntimeError('cannot start: no config')\n"
                                                      "def score(data, base_path):\n    return {}\n", name="broken")
    with pytest.raises(DeploymentError, match=r"RuntimeError: cannot start: no config"):
        deploykit.deploy(folder, target="watsonml")
    assert all(not found for found in left_on_watson(cpd_project.emulator).values())


def test_neomaril_async_script_runs_as_a_watson_batch_job(cpd_project: WatsonProject, bank_model: Path,
                                                          bank_rows: list[dict[str, Any]]) -> None:
    emu = cpd_project.emulator
    folder = write_bundle(cpd_project.dir / "bundle", NEOMARIL_ASYNC, {"model.pkl": bank_model,
                                                                     "example.json": json.dumps(bank_rows[0])},
                          model_file="model.pkl", schema="example.json", mode="async", name="async-script")
    created = deploykit.deploy(folder, target="watsonml")
    assert (created.action, created.status, created.ids["bundle_mode"]) == ("created", "ready", "async")
    assert "batch" in emu.deployments[created.ids["deployment_uid"]].doc["entity"]  # a batch deployment
    scored = deploykit.score("async-script", bank_rows[:5])
    assert [{"pred": a["pred"], "proba": a["proba"]} for a in scored.labels] == neomaril_answers(bank_model, bank_rows[:5])
    assert list(scored.labels[0]) == [*bank_rows[0], "pred", "proba"]  # the output file's columns
    assert emu.jobs == {}  # each job is removed once read

    (folder / "app.py").write_text("def score(data_path, model_path):\n    return '/etc/passwd'\n")
    with pytest.raises(DeploymentError, match=r"not a file it wrote in its execution folder"):
        deploykit.deploy(folder, target="watsonml")  # the smoke test's job fails: the update is rolled back
    assert deploykit.score("async-script", bank_rows[:1]).labels[0]["pred"] == neomaril_answers(bank_model,
                                                                                                bank_rows[:1])[0]["pred"]
    deploykit.delete("async-script")
    assert all(not found for found in left_on_watson(emu).values()), left_on_watson(emu)


def test_a_mode_change_is_refused_by_name(cpd_project: WatsonProject) -> None:
    folder = write_bundle(cpd_project.dir / "bundle", RAISES, name="mode-change")
    deploykit.deploy(folder, target="watsonml")
    write_bundle(folder, "def score(data_path, model_path):\n    return data_path\n", mode="async", name="mode-change")
    with pytest.raises(DeploymentError, match=r"serves a sync scoring script.*this one is async.*--name"):
        deploykit.deploy(folder, target="watsonml")


# -- crash safety: what an interrupted deploy of a bundle left is adopted or removed ------------------
class Killed(BaseException):
    """Stands for SIGKILL at a crash point: nothing after it runs, not even ``except Exception``."""


def _die() -> None:
    raise Killed()


def _target(project: WatsonProject, op: Any = None, drop: tuple[str, ...] = ()) -> Any:
    from deploykit.lifecycle import open_target

    target = open_target("watsonml", project.credentials, project.dir / ".deploykit")
    if op is not None:
        target.context.note = lambda **ids: op.ids.update({k: v for k, v in ids.items() if k not in drop})
    return target


BUNDLE_STEPS = ["package-stored", "spec-stored", "model-stored", "revision-created", "deployment-created"]
LOST = ("package_extension_uid", "software_spec_uid", "model_uid", "model_rev", "deployment_uid")


@pytest.mark.parametrize("step", BUNDLE_STEPS)
@pytest.mark.parametrize("drop", [(), LOST], ids=["noted", "ids-lost"])
def test_killed_create_of_a_bundle_is_removed(cpd_project: WatsonProject, monkeypatch: pytest.MonkeyPatch,
                                              step: str, drop: tuple[str, ...]) -> None:
    import deploykit.faults as faults
    from deploykit.artifact import load_artifact
    from deploykit.operations import PendingOperation

    emu = cpd_project.emulator
    emu.ready_after_polls = 10_000  # still initializing when reconciled: not complete, so removed
    artifact = load_artifact(write_bundle(cpd_project.dir / "bundle", RAISES, name="killed"))
    op = PendingOperation("killed", "watsonml", "create", 1, planned={"model_sha256": artifact.sha256})
    monkeypatch.setattr(faults, "_die", _die)
    monkeypatch.setenv(faults.CRASH_AT_ENV, f"create:{step}")
    with pytest.raises(Killed):
        _target(cpd_project, op, drop).deploy(artifact, "killed")
    assert emu.package_extensions, "the kill came after the package extension was stored"
    monkeypatch.delenv(faults.CRASH_AT_ENV)
    assert _target(cpd_project).reconcile(op, None) is None
    assert all(not found for found in left_on_watson(emu).values()), left_on_watson(emu)
    assert _target(cpd_project).reconcile(op, None) is None  # idempotent


def test_killed_update_of_a_bundle_is_undone_or_adopted(cpd_project: WatsonProject,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import deploykit.faults as faults
    from deploykit.artifact import load_artifact
    from deploykit.operations import PendingOperation

    emu = cpd_project.emulator
    folder = write_bundle(cpd_project.dir / "bundle", RAISES, {"example.json": '{"x": 1}'}, schema="example.json",
                          name="killed")
    current = deploykit.deploy(folder, target="watsonml")
    (folder / "app.py").write_text(RAISES.replace('{"ok": True}', '{"ok": "v2"}'))
    monkeypatch.setattr(faults, "_die", _die)

    artifact = load_artifact(folder)
    op = PendingOperation("killed", "watsonml", "update", 2, planned={"model_sha256": artifact.sha256})
    monkeypatch.setenv(faults.CRASH_AT_ENV, "update:model-stored")
    with pytest.raises(Killed):
        _target(cpd_project, op).update(current, artifact)
    monkeypatch.delenv(faults.CRASH_AT_ENV)
    assert len(emu.functions) == 2
    assert _target(cpd_project).reconcile(op, current) is None  # removed: current keeps serving alone
    assert set(emu.functions) == {current.ids["model_uid"]}
    assert set(emu.custom_software_specs) == {current.ids["software_spec_uid"]}
    assert set(emu.package_extensions) == {current.ids["package_extension_uid"]}
    assert deploykit.score("killed", [{"x": 1}]).labels == [{"ok": True}]

    op = PendingOperation("killed", "watsonml", "update", 2, planned={"model_sha256": artifact.sha256})
    monkeypatch.setenv(faults.CRASH_AT_ENV, "update:deployment-patched")
    with pytest.raises(Killed):
        _target(cpd_project, op).update(current, artifact)
    monkeypatch.delenv(faults.CRASH_AT_ENV)
    loading = emu.deployments[current.ids["deployment_uid"]].loading
    assert loading is not None and loading.done.wait(120)  # the switch completed while nobody watched
    adopted = _target(cpd_project).reconcile(op, current)
    assert adopted is not None and adopted.revision == 2 and adopted.ids["asset_kind"] == "function"
    assert adopted.ids["software_spec_uid"] in emu.custom_software_specs
    assert adopted.ids["package_extension_uid"] in emu.package_extensions
    adopted.history = [current.snapshot()]
    _target(cpd_project).delete(adopted)
    assert all(not found for found in left_on_watson(emu).values()), left_on_watson(emu)
