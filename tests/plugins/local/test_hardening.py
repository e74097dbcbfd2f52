"""The server refuses a model file whose digest is not the recorded one, protects its docs with the
token, and documents an example row built from the schema, never a training row."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deploykit.artifact import Artifact, sha256_of
from deploykit.errors import ArtifactError
from deploykit_plugins.local.app import ServerConfig, create_app
from deploykit_plugins.local.openapi import example_row
from deploykit_plugins.local.server import check_digest


def test_a_model_file_with_another_digest_is_refused_naming_both(bank_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model.joblib"
    shutil.copy(bank_model, copy)
    check_digest(copy, sha256_of(bank_model))  # the recorded digest: accepted
    wrong = "0" * 64
    with pytest.raises(ArtifactError, match=f"has sha256 {sha256_of(copy)}, but the recorded sha256 is {wrong}"):
        check_digest(copy, wrong)


def test_with_a_token_the_docs_need_it_too(artifact: Artifact) -> None:
    client = TestClient(create_app(artifact, ServerConfig(name="bank", token="s3cret")))
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200, path
    open_docs = TestClient(create_app(artifact, ServerConfig(name="bank", token="s3cret", protect_docs=False)))
    assert open_docs.get("/openapi.json").status_code == 200


def test_the_openapi_example_is_built_from_the_schema_not_a_training_row(client: TestClient,
                                                                        artifact: Artifact) -> None:
    spec = client.get("/openapi.json").json()
    example = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"][0]
    assert example == example_row(artifact.schema)
    row = artifact.schema.example
    assert any(example[k] != v for k, v in row.items())
