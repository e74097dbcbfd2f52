"""Shared fixtures: the trained example models and rows, and the sample third-party target.

``project``, ``cli`` and ``memory`` come from deploykit's own pytest plugin (deploykit.testing,
loaded through its ``pytest11`` entry point), exactly as plugin authors get them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploykit.testing.models import ContractModels
from deploykit.testing.project import stop_servers as _stop_servers  # noqa: F401  (tests.plugins.mlflow.conftest)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import train_model  # noqa: E402  (examples/ is not a package)

from tests.sample_target import SampleInstall, install_sample_target  # noqa: E402

pytest_plugins = ["pytester"]  # tests/deploykit/test_testing.py runs deploykit's plugin in an inner pytest


def _train(folder: Path, seed: int) -> Path:
    import joblib

    from deploykit.schema import Schema

    model, frame = train_model.train(rows=1500, seed=seed, n_estimators=15)
    path = folder / "bank-model.joblib"
    joblib.dump(model, path)
    (folder / "bank-model.schema.json").write_text(json.dumps(Schema.from_frame(frame).to_dict()))
    return path


@pytest.fixture(scope="session")
def bank_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example classifier (seed 0) saved as bank-model.joblib with its schema beside it."""
    return _train(tmp_path_factory.mktemp("model-v1"), seed=0)


@pytest.fixture(scope="session")
def bank_model_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A different fit of the same pipeline (seed 1): same schema, other sha256 and predictions."""
    return _train(tmp_path_factory.mktemp("model-v2"), seed=1)


@pytest.fixture(scope="session")
def bank_rows() -> list[dict]:
    """Twenty input rows as records, from the example's data generator (seed 7)."""
    frame, _ = train_model.make_data(rows=20, seed=7)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in frame.to_dict("records")]


@pytest.fixture(scope="session")
def bank_contract_rows(bank_model: Path, bank_model_v2: Path) -> list[dict]:
    """Rows on which the two example fits predict different labels (plus two they agree on)."""
    import joblib
    import pandas as pd

    frame, _ = train_model.make_data(rows=2000, seed=7)
    differ = joblib.load(bank_model).predict(frame) != joblib.load(bank_model_v2).predict(frame)
    picked = pd.concat([frame[differ].head(8), frame[~differ].head(2)])
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in picked.to_dict("records")]


@pytest.fixture(scope="session")
def bank_contract_models(tmp_path_factory: pytest.TempPathFactory, bank_model: Path, bank_model_v2: Path,
                         bank_contract_rows: list[dict]) -> ContractModels:
    """The example fits as TargetContract models, with a refusing model of their schema."""
    from deploykit.testing import refusing_model

    failing = refusing_model(tmp_path_factory.mktemp("refusing-model"), bank_model, name="bank-model")
    return ContractModels(bank_model, bank_model_v2, bank_contract_rows, failing)


@pytest.fixture
def sample_target(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[SampleInstall]:
    """The sample third-party target (tests/sample_target), discoverable through the ``deploykit``
    entry-point group for this test, in this process and in subprocesses (PYTHONPATH)."""
    from deploykit import plugins

    install = install_sample_target(tmp_path_factory.mktemp("site"))
    for folder in install.paths:
        monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([*map(str, install.paths), os.environ.get("PYTHONPATH", "")]))
    plugins.reset()
    yield install
    plugins.reset()
