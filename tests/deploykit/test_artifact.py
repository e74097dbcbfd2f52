"""Loading model files: facts gathered, schema found, and clear errors for what is not a model."""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import pytest

from deploykit.artifact import infer_schema, load_artifact, sha256_of
from deploykit.errors import ArtifactError


def test_facts_of_the_example_model(bank_model: Path) -> None:
    art = load_artifact(bank_model)
    assert art.sha256 == sha256_of(bank_model) and len(art.sha256) == 64
    assert art.framework == "scikit-learn" and art.framework_version
    assert art.schema.names == ["age", "job", "marital", "education", "balance", "housing", "duration", "campaign"]
    assert {c.name: c.type for c in art.schema.columns}["age"] == "integer"
    assert art.source.endswith("bank-model.schema.json")
    assert art.name == "bank-model"
    assert art.classes == ["no", "yes"]


def test_schema_inferred_from_fitted_pipeline(bank_model: Path) -> None:
    model = joblib.load(bank_model)
    schema = infer_schema(model)
    types = {c.name: c.type for c in schema.columns}
    assert types["job"] == "string" and types["age"] == "float"
    assert schema.example["job"] in ("admin.", "blue-collar", "entrepreneur", "management", "retired",
                                     "services", "student", "technician")


def test_predict_in_process_matches_the_model(bank_model: Path, bank_rows: list[dict]) -> None:
    import pandas as pd

    art = load_artifact(bank_model)
    frame = art.schema.validate(pd.DataFrame(bank_rows))
    preds = art.predict(frame)
    model = joblib.load(bank_model)
    assert preds.labels == model.predict(frame).tolist()
    assert preds.probabilities == model.predict_proba(frame).tolist()


def test_missing_file() -> None:
    with pytest.raises(ArtifactError, match="'nope.joblib' does not exist; pass a joblib/pickle file"):
        load_artifact("nope.joblib")


def test_not_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    path.write_text("hello, I am a text file")
    with pytest.raises(ArtifactError, match=r"is not a joblib/pickle file \(it starts with b'he'\)"):
        load_artifact(path)


def test_pickle_of_something_that_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ArtifactError, match="holds a builtins.dict, which has no predict"):
        load_artifact(path)


def test_unreadable_file(tmp_path: Path, bank_model: Path) -> None:
    import os

    if os.geteuid() == 0:
        path = tmp_path / "dir.joblib"
        path.mkdir()
        with pytest.raises(ArtifactError, match="is a directory without an MLmodel file"):
            load_artifact(path)
        return
    path = tmp_path / "m.joblib"
    path.write_bytes(bank_model.read_bytes())
    path.chmod(0)
    with pytest.raises(ArtifactError, match="cannot be read"):
        load_artifact(path)


def test_bad_schema_file(tmp_path: Path, bank_model: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"columns": [{"name": "age", "type": "int128"}]}')
    with pytest.raises(ArtifactError, match="type 'int128'.*use one of integer, float"):
        load_artifact(bank_model, schema)


def test_a_huge_non_model_file_is_refused_from_its_first_bytes(tmp_path: Path) -> None:
    import resource
    import subprocess

    from deploykit.artifact import load_artifact

    big = tmp_path / "huge.joblib"
    subprocess.run(["truncate", "-s", "1G", str(big)], check=True)  # sparse: 1 GiB of zeros
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ArtifactError, match=r"is not a joblib/pickle file \(it starts with b'\\x00\\x00'\)"):
        load_artifact(big)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100 * 1024, f"loading grew the process by {grown_kib} KiB"
