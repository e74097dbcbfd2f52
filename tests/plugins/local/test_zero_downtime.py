"""Zero downtime under load: client threads hammer a live local deployment (keep-alive clients, one
``http.client`` connection each, and clients that open a new connection per request) while the real
CLI runs (a) a good update, (b) an update whose smoke test fails, (c) a rollback.

Correctness only, no timing thresholds: no request may get a non-2xx answer or a connection error,
and every answer must come from the revision that should serve then. A request sent after a command
returned must be answered by what that command left serving: the new model after (a), still that
model during and after (b) (the refusing model never joins the public port), the first model after (c).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import deploykit
from deploykit.testing.models import ContractModels, two_fits
from deploykit.testing.project import Project, run_cli

KEEP_ALIVE_CLIENTS = 2
FRESH_CLIENTS = 2


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ContractModels:
    return two_fits(tmp_path_factory.mktemp("zero-downtime-models"))


def _predictions(model: Path, rows: list[dict]) -> list[Any]:
    import joblib
    import pandas as pd

    return list(joblib.load(model).predict(pd.DataFrame(rows)))


@dataclass
class Answer:
    """One request: when it was sent, and which model answered it (or what went wrong)."""

    sent: float
    model: str  # "first", "second", or "status 503: ..." / "error: ..."


@dataclass
class Load:
    """Client threads scoring ``rows`` on ``url`` until stopped; every answer is kept."""

    url: str
    rows: list[dict]
    labels: dict[str, list[Any]]
    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for i in range(KEEP_ALIVE_CLIENTS + FRESH_CLIENTS):
            thread = threading.Thread(target=self._client, args=(i < KEEP_ALIVE_CLIENTS,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _connect(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def _client(self, keep_alive: bool) -> None:
        body = json.dumps(self.rows).encode()
        headers = {"Content-Type": "application/json"}
        conn = self._connect() if keep_alive else None
        while not self.stop.is_set():
            sent = time.monotonic()
            use = conn if conn is not None else self._connect()
            try:
                use.request("POST", "/predict", body=body, headers=headers)
                response = use.getresponse()
                data = response.read()
                model = self._which(response.status, data)
            except (OSError, http.client.HTTPException) as exc:
                model = f"error: {type(exc).__name__}: {exc}"
                if conn is not None:  # a keep-alive client starts over on a new connection
                    conn.close()
                    conn = self._connect()
            finally:
                if conn is None:
                    use.close()
            with self.lock:
                self.answers.append(Answer(sent, model))
        if conn is not None:
            conn.close()

    def _which(self, status: int, data: bytes) -> str:
        if not 200 <= status < 300:
            return f"status {status}: {data[:300]!r}"
        predictions = json.loads(data)["predictions"]
        for label, expected in self.labels.items():
            if predictions == expected:
                return label
        return f"unknown predictions {predictions}"

    def between(self, start: float, end: float) -> list[Answer]:
        with self.lock:
            return [a for a in self.answers if start <= a.sent < end]


def _common(project: Project) -> list[Any]:
    return ["--credentials", project.credentials, "--metadata", project.metadata, "--json"]


def _settle(load: Load, after: float) -> None:
    """Let the clients send requests after ``after`` (so each phase's outcome is seen on the wire)."""
    deadline = time.monotonic() + 60
    while len(load.between(after, float("inf"))) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)


def test_update_failed_update_and_rollback_under_load(project: Project, models: ContractModels) -> None:
    first = deploykit.deploy(models.first, name="busy", credentials=project.credentials, metadata=project.metadata)
    labels = {"first": _predictions(models.first, models.rows), "second": _predictions(models.second, models.rows)}
    assert labels["first"] != labels["second"]
    load = Load(first.url, models.rows, labels)
    marks = {"start": time.monotonic()}
    load.start()
    try:
        _settle(load, marks["start"])
        marks["a"] = time.monotonic()
        good = run_cli(project.dir, "deploy", models.second, "--name", "busy", *_common(project), timeout=300)
        marks["a done"] = time.monotonic()
        assert good.code == 0, good.out + good.err
        assert (good.json()["action"], good.json()["revision"]) == ("updated", 2)
        _settle(load, marks["a done"])

        marks["b"] = time.monotonic()
        bad = run_cli(project.dir, "deploy", models.failing, "--name", "busy", *_common(project), timeout=300)
        marks["b done"] = time.monotonic()
        assert bad.code == 1 and "rolled back to revision 2" in bad.json()["error"], bad.out + bad.err
        _settle(load, marks["b done"])

        marks["c"] = time.monotonic()
        back = run_cli(project.dir, "rollback", "busy", *_common(project), timeout=300)
        marks["c done"] = time.monotonic()
        assert back.code == 0, back.out + back.err
        assert back.json()["revision"] == 1
        _settle(load, marks["c done"])
    finally:
        load.finish()
        deploykit.delete("busy", credentials=project.credentials, metadata=project.metadata)
    marks["end"] = float("inf")  # the clients stopped before the delete

    windows = {  # (start mark, end mark): the models allowed to answer a request sent then
        "before (a)": ("start", "a", {"first"}),
        "during (a) good update": ("a", "a done", {"first", "second"}),
        "after (a)": ("a done", "b", {"second"}),
        "during (b) failing update": ("b", "b done", {"second"}),
        "after (b)": ("b done", "c", {"second"}),
        "during (c) rollback": ("c", "c done", {"first", "second"}),
        "after (c)": ("c done", "end", {"first"}),
    }
    counts = {}
    for window, (start, end, allowed) in windows.items():
        answers = load.between(marks[start], marks[end])
        wrong = [a.model for a in answers if a.model not in allowed]
        assert answers, f"no request was sent {window}: the test proved nothing there"
        assert wrong == [], f"{window}: {len(wrong)} of {len(answers)} requests were answered wrongly: {wrong[:5]}"
        counts[window] = len(answers)
    print(f"zero-downtime requests per window: {counts}; "
          f"{KEEP_ALIVE_CLIENTS} keep-alive + {FRESH_CLIENTS} fresh-connection clients; non-2xx 0, errors 0")
