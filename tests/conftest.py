"""Shared fixtures: a trained example model, a project folder, and clean-up of server processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import train_model  # noqa: E402  (examples/ is not a package)


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


@dataclass
class Project:
    """A folder with credentials.yaml and metadata.yaml, the working directory of the test."""

    dir: Path
    credentials: Path
    metadata: Path

    def write_credentials(self, text: str) -> None:
        self.credentials.write_text(text)


def _stop_servers(folder: Path) -> None:
    for state in (folder / ".deploykit" / "run").glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, ProcessLookupError):
            os.kill(int(json.loads(state.read_text())["pid"]), signal.SIGKILL)
    metadata = folder / "metadata.yaml"
    if metadata.exists():  # also a server whose run file was never written
        import yaml

        with contextlib.suppress(Exception):
            data = yaml.safe_load(metadata.read_text()) or {}
            for targets in (data.get("deployments") or {}).values():
                for rec in targets.values():
                    for ids in [rec.get("ids", {})] + [h.get("ids", {}) for h in rec.get("history", [])]:
                        if ids.get("pid") and "state_file" in ids:
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(int(ids["pid"]), signal.SIGKILL)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A fresh project folder (cwd) with a local-only credentials.yaml; servers left running are killed after."""
    monkeypatch.chdir(tmp_path)
    creds = tmp_path / "credentials.yaml"
    creds.write_text("local:\n  port: 0\n")
    yield Project(tmp_path, creds, tmp_path / "metadata.yaml")
    _stop_servers(tmp_path)


@dataclass
class CliResult:
    """What a real `deploykit` process printed and returned."""

    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture
def cli(project: Project):
    """Run the real `deploykit` console script in the project folder: cli("deploy", "m.joblib", "--json")."""
    import subprocess

    def run(*args: str, stdin: str | None = None, timeout: float = 120) -> CliResult:
        proc = subprocess.run([sys.executable, "-m", "deploykit", *map(str, args)], cwd=project.dir, input=stdin,
                              capture_output=True, text=True, timeout=timeout)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run
