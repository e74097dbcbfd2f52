"""deploykit's ``code/inference.py`` on the real model.tar.gz: in process (every payload shape, the schema
enforced, errors with their HTTP status), and in a fresh interpreter where deploykit is not importable."""

from __future__ import annotations

import importlib.util
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

from deploykit.artifact import load_artifact
from deploykit_plugins.sagemaker.packaging import build_model_tarball


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory, bank_model: Path) -> Path:
    """The tarball deploykit uploads for the example model, extracted as SageMaker does into /opt/ml/model."""
    folder = tmp_path_factory.mktemp("tarball")
    path, sha = build_model_tarball(load_artifact(bank_model), folder / "model.tar.gz")
    assert build_model_tarball(load_artifact(bank_model), folder / "again.tar.gz")[1] == sha  # deterministic
    with tarfile.open(path) as tar:
        tar.extractall(folder / "model", filter="data")
    return folder / "model"


@pytest.fixture(scope="module")
def handlers(unpacked: Path) -> Any:
    """``code/inference.py`` imported in this process (its vendored ``_dkserve`` from the tarball)."""
    spec = importlib.util.spec_from_file_location("dk_sagemaker_inference", unpacked / "code" / "inference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(unpacked / "code"))
    for name in [m for m in sys.modules if m == "_dkserve" or m.startswith("_dkserve.")]:
        del sys.modules[name]


def _answer(handlers: Any, model: Any, body: Any, ctype: str = "application/json", accept: str = "application/json"):
    text = body if isinstance(body, str) else json.dumps(body)
    out, out_type = handlers.output_fn(handlers.predict_fn(handlers.input_fn(text.encode(), ctype), model), accept)
    return json.loads(out) if out_type == "application/json" else out


def test_every_payload_shape_scores_like_the_model(handlers: Any, unpacked: Path, bank_model: Path,
                                                   bank_rows: list[dict[str, Any]]) -> None:
    model = handlers.model_fn(str(unpacked))
    fitted = joblib.load(bank_model)
    frame = pd.DataFrame(bank_rows)
    expected = {"predictions": fitted.predict(frame).tolist(), "probabilities": fitted.predict_proba(frame).tolist(),
                "classes": fitted.classes_.tolist()}
    columns, values = list(frame.columns), frame.values.tolist()
    shapes = [
        bank_rows,
        {"dataframe_split": {"columns": columns, "data": values}},
        {"dataframe_records": bank_rows},
        {"instances": bank_rows},
        {"input_data": [{"fields": columns, "values": values}]},
    ]
    for body in shapes:
        assert _answer(handlers, model, body) == expected, body
    csv = frame.to_csv(index=False)
    assert _answer(handlers, model, csv, "text/csv") == expected
    assert _answer(handlers, model, csv, "text/csv", "text/csv").splitlines()[0].startswith("prediction")


@pytest.mark.parametrize(("body", "ctype", "status", "message"), [
    ('[{"age": "forty"}]', "application/json", 422, r"column 'age'.*expected integer, got 'forty'"),
    ("not json", "application/json", 400, r"not valid JSON"),
    ("", "application/json", 400, r"empty"),
    ("[]", "application/json", 400, r"no rows"),
    ("x", "application/x-npy", 415, r"Content-Type 'application/x-npy' is not supported"),
])
def test_refusals_carry_a_status_and_the_fix(handlers: Any, unpacked: Path, body: str, ctype: str, status: int,
                                             message: str) -> None:
    model = handlers.model_fn(str(unpacked))
    with pytest.raises(handlers.InferenceError, match=message) as caught:
        handlers.predict_fn(handlers.input_fn(body.encode(), ctype), model)
    assert caught.value.status_code == status
    assert json.loads(caught.value.body())["error"] == str(caught.value)


def test_unknown_accept_is_406(handlers: Any, unpacked: Path, bank_rows: list[dict[str, Any]]) -> None:
    model = handlers.model_fn(str(unpacked))
    prediction = handlers.predict_fn(handlers.input_fn(json.dumps(bank_rows[:1]).encode(), "application/json"), model)
    with pytest.raises(handlers.InferenceError, match=r"Accept 'application/x-npy'") as caught:
        handlers.output_fn(prediction, "application/x-npy")
    assert caught.value.status_code == 406


def test_handlers_run_where_deploykit_is_not_importable(unpacked: Path, bank_model: Path,
                                                        bank_rows: list[dict[str, Any]]) -> None:
    """``python -I -S``: no .pth file runs (so no editable install of deploykit), and sys.path holds only the
    standard library and the base interpreter's site-packages (scikit-learn, pandas, joblib), like the image."""
    libraries = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["purelib"]
    code = f"""
import importlib.util, json, sys
sys.path.append({libraries!r})
assert importlib.util.find_spec("deploykit") is None, "deploykit is importable"
assert importlib.util.find_spec("deploykit_plugins") is None, "deploykit_plugins is importable"
sys.path.insert(0, {str(unpacked / "code")!r})
import inference
model = inference.model_fn({str(unpacked)!r})
body, ctype = inference.output_fn(inference.predict_fn(inference.input_fn({json.dumps(bank_rows)!r}, "application/json"), model), None)
print(json.dumps({{"body": json.loads(body), "ctype": ctype, "modules": sorted(m for m in sys.modules if "deploykit" in m)}}))
"""
    run = subprocess.run([sys._base_executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=120,
                         check=False, cwd=unpacked)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["modules"] == [] and answer["ctype"] == "application/json"
    assert answer["body"]["predictions"] == joblib.load(bank_model).predict(pd.DataFrame(bank_rows)).tolist()
