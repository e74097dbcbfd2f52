"""Test helpers for the mlflow target: rows the two example models disagree on, a load generator,
and a model whose code the scoring server cannot import."""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import train_model  # examples/, put on sys.path by tests/conftest.py


def contested_rows(v1: Any, v2: Any, n: int = 12) -> list[dict[str, Any]]:
    """Rows on which the two artifacts predict different labels (so a test can tell which one serves)."""
    import pandas as pd

    frame, _ = train_model.make_data(rows=2000, seed=7)
    differ = v1.model.predict(frame) != v2.model.predict(frame)
    picked = pd.concat([frame[differ].head(n), frame[~differ].head(2)])
    assert differ.sum() > 0, "the two example models agree everywhere; pick other seeds"
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in picked.to_dict("records")]


class Hammer:
    """Scores one row in a loop on a fresh connection per request while the block runs; keeps every failure."""

    def __init__(self, url: str, row: dict[str, Any]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.body = json.dumps({"dataframe_split": {"columns": list(row), "data": [list(row.values())]}})
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                conn.request("POST", "/invocations", self.body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 200 and b"predictions" in data:
                    self.ok += 1
                else:
                    self.failures.append(f"{resp.status}: {data[:200]!r}")
            except OSError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()
            time.sleep(0.01)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=90)


FRAGILE_MODULE = '''
class Thresholds:
    """A tiny model with its own class: the scoring server needs this module to unpickle it."""

    def __init__(self):
        self.cut = 600

    def predict(self, frame):
        return ["yes" if d > self.cut else "no" for d in frame["duration"]]
'''


def fragile_model(folder: Path, bank_model: Path) -> Path:
    """A joblib model whose class lives in a module only this test process can import (like a user's
    model that needs code missing from the serving environment). It keeps bank-model's schema."""
    import importlib

    import joblib

    code = folder / "code"
    code.mkdir()
    (code / "fragile_model.py").write_text(FRAGILE_MODULE)
    sys.path.insert(0, str(code))  # stays: this process loads the artifact, the scoring server cannot
    module = importlib.import_module("fragile_model")
    path = folder / "fragile.joblib"
    joblib.dump(module.Thresholds(), path)
    (folder / "fragile.schema.json").write_text(bank_model.with_name("bank-model.schema.json").read_text())
    return path


def leftovers(project: Any, name: str) -> list[str]:
    """What exists of deployment ``name`` in the tracking server and on this machine: registered
    versions, aliases, active runs tagged with the name, and live scoring servers and relays."""
    from mlflow.exceptions import MlflowException

    from deploykit_plugins.mlflow import serving
    from deploykit_plugins.mlflow.registry import NAME_TAG

    client = project.client()
    found = [f"version {mv.version}" for mv in client.search_model_versions(f"name = '{name}'")]
    try:
        found += [f"alias {alias}" for alias in client.get_registered_model(name).aliases]
    except MlflowException:
        pass
    experiment = client.get_experiment_by_name("deploykit")
    if experiment is not None:
        runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{NAME_TAG}` = '{name}'")
        found += [f"run {run.info.run_id}" for run in runs]
    found += [f"scoring server pid {pid}" for pid in serving.processes_with(b"mlflow", b"serve",
                                                                             f"models:/{name}/".encode())]
    files = serving.ServerFiles(project.dir / ".deploykit", name)
    found += [f"relay pid {pid}" for pid in serving.fronts_of(files)]
    return found


def serving_servers(name: str) -> list[int]:
    """Pids of the live ``mlflow models serve`` session leaders of any version of ``name``."""
    from deploykit_plugins.mlflow import serving

    return [pid for pid in serving.processes_with(b"mlflow", b"serve", f"models:/{name}/".encode())
            if serving.is_backend(pid) and os.getsid(pid) == pid]
