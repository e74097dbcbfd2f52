"""skops model files, the safe alternative to pickle: deployed to a real local server and scored,
refused while they hold a type nobody listed as trusted, pinned by the same sha256 check."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import deploykit
from deploykit.artifact import load_artifact
from deploykit.errors import ArtifactError

TREE = "sklearn.tree._tree.Tree"  # what a random forest holds that skops does not trust by default


class Halver(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """A user's own transformer: a type skops cannot know, so it must be trusted by name."""

    def fit(self, X: object, y: object = None) -> Halver:
        return self

    def transform(self, X: object) -> object:
        return np.asarray(X, dtype=float) / 2


HALVER = f"{__name__}.Halver"


@pytest.fixture(scope="module")
def skops_model(bank_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example bank model saved with skops.io.dump, its schema beside it."""
    folder = tmp_path_factory.mktemp("skops-model")
    path = folder / "bank-model.skops"
    sio.dump(joblib.load(bank_model), path)
    shutil.copy(bank_model.with_name("bank-model.schema.json"), folder / "bank-model.schema.json")
    return path


@pytest.fixture(scope="module")
def halver_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("halver-model")
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    path = folder / "halver.skops"
    sio.dump(make_pipeline(Halver(), LogisticRegression()).fit(X, [0, 0, 1, 1]), path)
    return path


def test_a_skops_file_deploys_to_the_local_server_and_scores(cli, project, bank_model, skops_model, bank_rows) -> None:
    created = cli("deploy", skops_model, "--name", "bank", "--trust", TREE, "--json")
    assert created.code == 0, created.err
    record = created.json()
    assert record["status"] == "ready"
    # the server process loaded the file itself (the schema came from the sidecar) and serves its sha256
    assert record["model_sha256"] == hashlib.sha256(skops_model.read_bytes()).hexdigest()
    assert httpx.get(f"{record['url']}/health").json()["model_sha256"] == record["model_sha256"]
    rows = project.dir / "rows.json"
    rows.write_text(json.dumps(bank_rows))
    scored = cli("score", "bank", rows, "--json")
    assert scored.code == 0, scored.err
    assert scored.json()["predictions"] == joblib.load(bank_model).predict(pd.DataFrame(bank_rows)).tolist()


def test_an_untrusted_type_is_refused_before_anything_is_deployed(cli, project, skops_model) -> None:
    refused = cli("deploy", skops_model, "--name", "bank")
    assert refused.code != 0
    assert TREE in refused.err and f"--trust {TREE}" in refused.err, refused.err
    assert "skops does not trust by default" in refused.err
    assert not project.metadata.exists() or "bank" not in project.metadata.read_text()


def test_a_users_own_type_loads_only_once_it_is_listed(halver_model) -> None:
    with pytest.raises(ArtifactError) as refused:
        load_artifact(halver_model, defer=True)  # refused at once: reading the type list runs nothing
    message = str(refused.value)
    assert HALVER in message and f"trusted_types={[HALVER]!r}" in message
    assert "halver.skops" in message

    artifact = load_artifact(halver_model, trusted_types=[HALVER, "some.other.Type"])
    assert (artifact.flavor, artifact.extra["trusted_types"]) == ("skops", [HALVER])
    assert artifact.predict(pd.DataFrame({"a": [0.0, 3.0], "b": [1.0, 0.0]})).labels == [0, 1]


def test_the_library_deploy_takes_the_trusted_types(project, skops_model) -> None:
    with pytest.raises(ArtifactError, match="sklearn.tree._tree.Tree"):
        deploykit.deploy(skops_model, name="bank", metadata=project.metadata)
    created = deploykit.deploy(skops_model, name="bank", metadata=project.metadata, trusted_types=[TREE])
    assert created.status == "ready"
    assert created.action == "created"


def test_a_pickle_file_still_deploys_and_scores(project, bank_model, tmp_path, bank_rows) -> None:
    path = tmp_path / "bank-model.pkl"
    path.write_bytes(pickle.dumps(joblib.load(bank_model)))
    shutil.copy(bank_model.with_name("bank-model.schema.json"), tmp_path / "bank-model.schema.json")
    assert load_artifact(path).flavor == "joblib"  # joblib reads a plain pickle too
    created = deploykit.deploy(path, name="bank", metadata=project.metadata)
    assert created.status == "ready"
    scored = deploykit.score("bank", bank_rows[:3], metadata=project.metadata)
    assert scored.labels == joblib.load(bank_model).predict(pd.DataFrame(bank_rows[:3])).tolist()


def test_the_server_refuses_a_skops_file_changed_after_it_was_deployed(skops_model, tmp_path) -> None:
    from deploykit_plugins.local.server import approved_types, check_digest

    copy = tmp_path / "model.skops"
    shutil.copy(skops_model, copy)
    recorded = load_artifact(copy, trusted_types=[TREE], defer=True).sha256
    check_digest(copy, recorded)  # the digest covers the zip's bytes as they are
    assert approved_types(copy) == [TREE]
    with zipfile.ZipFile(copy, "a") as archive:  # a type smuggled in after deploy changes the bytes
        archive.writestr("extra.txt", "x")
    with pytest.raises(ArtifactError, match="changed after it was deployed"):
        check_digest(copy, recorded)


def test_a_zip_that_is_not_a_skops_file_is_named(tmp_path) -> None:
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ArtifactError, match=r"is a zip file but not a skops model file"):
        load_artifact(path)
