"""Async jobs on real local server processes: plain models and an async script bundle.

Each server is ``python -m deploykit_plugins.local.server`` started as the deployer starts it
(a settings document, a state folder), so a test can kill it with SIGKILL and start it again."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import train_model

from deploykit.artifact import Artifact, load_artifact, sha256_of
from deploykit.bundle import Script
from deploykit.process import alive, child_environment, free_port, spawn
from deploykit_plugins.local.settings import LocalSettings, ServerDocument, write_document


class Server:
    """A real local server process over a state folder, which survives the process."""

    def __init__(self, folder: Path, model: Path, schema: Path | None = None, **settings: Any) -> None:
        self.folder = folder
        self.state = folder / ".deploykit"
        self.model, self.schema = model, schema
        self.settings = LocalSettings(port=free_port(), **settings)
        self.url = f"http://127.0.0.1:{self.settings.port}"
        self.pid = 0

    @property
    def jobs_dir(self) -> Path:
        return self.state / "jobs" / "jobs"

    def start(self) -> Server:
        run, logs = self.state / "run", self.state / "logs"
        run.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        document, state = run / "jobs-r1-00000000.settings", run / "jobs.json"
        state.unlink(missing_ok=True)
        write_document(document, ServerDocument(
            model=str(self.model), schema_file=str(self.schema) if self.schema else None, name="jobs",
            model_sha256=sha256_of(self.model), log_file=str(logs / "jobs.log"), state_file=str(state),
            settings=self.settings))
        proc = spawn([sys.executable, "-m", "deploykit_plugins.local.server", "--settings", str(document)],
                     child_environment(), logs / "jobs.launch.log")
        self.pid = proc.pid
        deadline = time.monotonic() + 60
        while not state.exists():
            assert proc.poll() is None, (logs / "jobs.log").read_text() if (logs / "jobs.log").exists() else ""
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        if self.pid and alive(self.pid):
            self.kill()

    def log(self) -> str:
        path = self.state / "logs" / "jobs.log"
        return path.read_text() if path.exists() else ""


def submit(server: Server, body: bytes, content_type: str = "text/csv", job_id: str | None = None,
           **params: str) -> httpx.Response:
    headers = {"content-type": content_type}
    if job_id is None:
        return httpx.post(f"{server.url}/jobs", content=body, headers=headers, params=params, timeout=60)
    return httpx.put(f"{server.url}/jobs/{job_id}", content=body, headers=headers, params=params, timeout=60)


def upload(server: Server, path: Path, job_id: str | None = None) -> httpx.Response:
    files = {"file": (path.name, path.read_bytes(), "text/csv")}
    if job_id is None:
        return httpx.post(f"{server.url}/jobs", files=files, timeout=60)
    return httpx.put(f"{server.url}/jobs/{job_id}", files=files, timeout=60)


def status(server: Server, job_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/jobs/{job_id}", timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def wait(server: Server, job_id: str, until: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
         timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = status(server, job_id)
        if doc["status"] in until:
            return doc
        assert time.monotonic() < deadline, f"job {job_id} still {doc['status']}; server log:\n{server.log()}"
        time.sleep(0.05)


def metric(server: Server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def in_process(artifact: Artifact, frame: pd.DataFrame) -> pd.DataFrame:
    """What Artifact.predict gives for ``frame``, as the job's prediction columns."""
    preds = artifact.predict(artifact.schema.validate(frame))
    out = pd.DataFrame({"prediction": preds.labels})
    for i, cls in enumerate(preds.classes):
        out[f"probability_{cls}"] = [row[i] for row in preds.probabilities]
    return out


def check_equal(result: pd.DataFrame, frame: pd.DataFrame, artifact: Artifact) -> None:
    expected = in_process(artifact, frame)
    assert list(result.columns) == list(frame.columns) + list(expected.columns)
    pd.testing.assert_frame_equal(result[frame.columns].reset_index(drop=True), frame.reset_index(drop=True),
                                  check_dtype=False)
    pd.testing.assert_frame_equal(result[expected.columns].reset_index(drop=True), expected, check_dtype=False)


@pytest.fixture(scope="module")
def artifact(bank_model: Path) -> Artifact:
    return load_artifact(bank_model)


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory, bank_model: Path) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("model-jobs"), bank_model, bank_model.with_name("bank-model.schema.json"))
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    frame, _ = train_model.make_data(rows=500, seed=5)
    return frame


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame, _ = train_model.make_data(rows=100_000, seed=11)
    path = tmp_path_factory.mktemp("big") / "big.csv"
    frame.to_csv(path, index=False)
    return path


# -- plain model -----------------------------------------------------------------------------

def test_a_csv_job_scores_like_predict_in_process(model_server: Server, rows: pd.DataFrame, artifact: Artifact) -> None:
    answer = submit(model_server, rows.to_csv(index=False).encode())
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["location"] == f"/jobs/{job['id']}"
    assert job["status"] == "queued" and job["created_at"] and job["input"]["format"] == "csv"
    done = wait(model_server, job["id"])
    assert done["status"] == "succeeded", done
    assert done["rows_in"] == done["rows_out"] == len(rows)
    assert done["started_at"] and done["finished_at"] and done["expires_at"]
    result = httpx.get(f"{model_server.url}/jobs/{job['id']}/result", timeout=30)
    assert result.status_code == 200 and result.headers["content-type"].startswith("text/csv")
    import io

    check_equal(pd.read_csv(io.BytesIO(result.content)), rows, artifact)
    listed = httpx.get(f"{model_server.url}/jobs", timeout=30).json()["jobs"]
    assert job["id"] in [j["id"] for j in listed]


def test_a_parquet_upload_gives_parquet(model_server: Server, rows: pd.DataFrame, artifact: Artifact,
                                        tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    rows.to_parquet(path, index=False)
    answer = httpx.post(f"{model_server.url}/jobs", files={"file": ("rows.parquet", path.read_bytes(),
                                                                    "application/vnd.apache.parquet")}, timeout=60)
    assert answer.status_code == 202, answer.text
    assert wait(model_server, answer.json()["id"])["status"] == "succeeded"
    result = httpx.get(f"{model_server.url}/jobs/{answer.json()['id']}/result", timeout=30)
    assert result.headers["content-type"] == "application/vnd.apache.parquet"
    out = tmp_path / "out.parquet"
    out.write_bytes(result.content)
    check_equal(pd.read_parquet(out), rows, artifact)


def test_json_lines_in_json_lines_out(model_server: Server, rows: pd.DataFrame, artifact: Artifact) -> None:
    body = rows.head(20).to_json(orient="records", lines=True).encode()
    answer = submit(model_server, body, "application/x-ndjson")
    assert wait(model_server, answer.json()["id"])["status"] == "succeeded"
    result = httpx.get(f"{model_server.url}/jobs/{answer.json()['id']}/result", timeout=30)
    got = [json.loads(line) for line in result.text.splitlines()]
    assert len(got) == 20
    assert [g["prediction"] for g in got] == list(in_process(artifact, rows.head(20))["prediction"])


def test_a_retried_put_runs_once_and_another_input_is_409(model_server: Server, rows: pd.DataFrame) -> None:
    body = rows.head(50).to_csv(index=False).encode()
    before = metric(model_server, 'deploykit_jobs_total{status="succeeded"}')
    first = submit(model_server, body, job_id="nightly-2026-12-01")
    assert first.status_code == 202, first.text
    again = submit(model_server, body, job_id="nightly-2026-12-01")
    assert again.status_code == 200 and again.json()["id"] == "nightly-2026-12-01"
    done = wait(model_server, "nightly-2026-12-01")
    after_done = submit(model_server, body, job_id="nightly-2026-12-01")
    assert after_done.status_code == 200 and after_done.json()["finished_at"] == done["finished_at"]
    time.sleep(0.5)  # a second run, had there been one, would have been picked up by now
    assert metric(model_server, 'deploykit_jobs_total{status="succeeded"}') == before + 1
    assert status(model_server, "nightly-2026-12-01")["started_at"] == done["started_at"]
    other = submit(model_server, rows.head(51).to_csv(index=False).encode(), job_id="nightly-2026-12-01")
    assert other.status_code == 409
    assert "already exists with another input" in other.json()["error"]


def test_bad_inputs_are_named(model_server: Server, rows: pd.DataFrame) -> None:
    unknown = httpx.get(f"{model_server.url}/jobs/no-such-job", timeout=30)
    assert unknown.status_code == 404 and "no-such-job" in unknown.json()["error"]
    assert httpx.get(f"{model_server.url}/jobs/no-such-job/result", timeout=30).status_code == 404
    assert httpx.delete(f"{model_server.url}/jobs/no-such-job", timeout=30).status_code == 404
    wrong = submit(model_server, b"age\n1\n", "text/plain")
    assert wrong.status_code == 415
    assert "'text/plain'" in wrong.json()["error"] and "text/csv" in wrong.json()["error"]
    assert "application/vnd.apache.parquet" in wrong.json()["error"]
    assert submit(model_server, b"age\n1\n", job_id="-x").status_code == 400
    assert submit(model_server, b"").status_code == 400


def test_a_schema_error_in_row_3_fails_the_job_naming_it(model_server: Server, rows: pd.DataFrame) -> None:
    frame = rows.head(5).copy()
    frame["age"] = frame["age"].astype(object)
    frame.loc[2, "age"] = "old"
    answer = submit(model_server, frame.to_csv(index=False).encode())
    done = wait(model_server, answer.json()["id"])
    assert done["status"] == "failed"
    assert "row 3" in done["error"] and "'age'" in done["error"] and "old" in done["error"], done["error"]
    result = httpx.get(f"{model_server.url}/jobs/{done['id']}/result", timeout=30)
    assert result.status_code == 409 and result.json()["status"] == "failed"


def test_sync_requests_answer_while_a_100k_row_job_runs(model_server: Server, big_csv: Path,
                                                        bank_rows: list[dict]) -> None:
    answer = submit(model_server, big_csv.read_bytes())
    job_id = answer.json()["id"]
    early = httpx.get(f"{model_server.url}/jobs/{job_id}/result", timeout=30)
    assert early.status_code == 409 and early.json()["status"] in ("queued", "running")
    assert early.json()["status"] in early.json()["error"]
    assert wait(model_server, job_id, until=("running", "succeeded", "failed"))["status"] == "running"
    assert metric(model_server, "deploykit_jobs_running") == 1

    def one(i: int) -> int:
        return httpx.post(f"{model_server.url}/predict", json=[bank_rows[i % len(bank_rows)]], timeout=60).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(one, range(20)))
    was = status(model_server, job_id)["status"]
    assert codes == [200] * 20
    done = wait(model_server, job_id)
    assert done["status"] == "succeeded" and done["rows_out"] == 100_000
    assert was in ("running", "succeeded")


def test_cancel_a_running_model_job_and_remove_it(model_server: Server, big_csv: Path) -> None:
    before = metric(model_server, 'deploykit_jobs_total{status="cancelled"}')
    job_id = submit(model_server, big_csv.read_bytes()).json()["id"]
    wait(model_server, job_id, until=("running",))
    cancelled = httpx.delete(f"{model_server.url}/jobs/{job_id}", timeout=30)
    # 200 once it stopped, 202 while it still finishes the chunk it was scoring
    assert cancelled.status_code in (200, 202) and cancelled.json()["cancel_requested"], cancelled.text
    done = wait(model_server, job_id)
    assert done["status"] == "cancelled" and done["rows_in"] < 100_000, done
    assert metric(model_server, 'deploykit_jobs_total{status="cancelled"}') == before + 1
    assert httpx.delete(f"{model_server.url}/jobs/{job_id}", timeout=30).status_code == 204
    assert httpx.get(f"{model_server.url}/jobs/{job_id}", timeout=30).status_code == 404
    assert not (model_server.jobs_dir / job_id).exists()


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/done", received
    server.shutdown()


def _delivered(received: list[dict[str, Any]], job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while not any(r["id"] == job_id for r in received):
        assert time.monotonic() < deadline, f"no webhook for {job_id}: {received}"
        time.sleep(0.05)
    return next(r for r in received if r["id"] == job_id)


def test_the_submits_webhook_is_posted_the_job(model_server: Server, rows: pd.DataFrame, webhook: Any) -> None:
    url, received = webhook
    job_id = submit(model_server, rows.head(10).to_csv(index=False).encode(), webhook=url).json()["id"]
    doc = _delivered(received, job_id)
    assert doc["status"] == "succeeded" and doc["rows_out"] == 10
    dead = submit(model_server, rows.head(10).to_csv(index=False).encode(),
                  webhook=f"http://127.0.0.1:{free_port()}/nobody").json()["id"]
    assert wait(model_server, dead)["status"] == "succeeded"  # an undeliverable webhook never fails the job


def test_limits_retention_and_the_webhook_setting(tmp_path: Path, bank_model: Path, rows: pd.DataFrame,
                                                  webhook: Any) -> None:
    url, received = webhook
    server = Server(tmp_path, bank_model, bank_model.with_name("bank-model.schema.json"), max_job_bytes=4000,
                    job_retention_s=1.5, job_webhook=url).start()
    try:
        big = submit(server, rows.to_csv(index=False).encode())
        assert big.status_code == 413 and "4000" in big.json()["error"] and "max_job_bytes" in big.json()["error"]
        job_id = submit(server, rows.head(10).to_csv(index=False).encode()).json()["id"]
        done = wait(server, job_id)
        assert _delivered(received, job_id)["status"] == "succeeded"
        deadline = time.monotonic() + 30
        while (answer := httpx.get(f"{server.url}/jobs/{job_id}", timeout=30)).status_code != 410:
            assert answer.status_code == 200 and time.monotonic() < deadline
            time.sleep(0.1)
        assert answer.json()["expired_at"] == done["expires_at"] and done["expires_at"] in answer.json()["error"]
        assert httpx.get(f"{server.url}/jobs/{job_id}/result", timeout=30).status_code == 410
        while (server.jobs_dir / job_id).exists():
            assert time.monotonic() < deadline, "the expired job's files were not removed"
            time.sleep(0.1)
    finally:
        server.stop()


# -- async script bundle ---------------------------------------------------------------------

SCRIPT = '''\
import os
import time

import joblib
import pandas as pd


def score(data_path, model_path):
    name = os.getenv("inputFileName")
    with open(os.getenv("COUNTER"), "a") as fh:
        fh.write(name + "\\n")
    if name.startswith("slow"):
        while not os.path.exists(os.path.join(os.getenv("GATES"), name)):
            time.sleep(0.05)
    if name.startswith("outside"):
        elsewhere = os.path.join(os.getenv("GATES"), "elsewhere.csv")
        open(elsewhere, "w").write("score\\n1\\n")
        return elsewhere
    if name.startswith("raise"):
        raise ValueError("the column 'age' is missing from the input")
    model = joblib.load(model_path + "/model.pkl")
    df = pd.read_csv(data_path + "/" + os.getenv("inputFileName"))
    df["score"] = model.predict_proba(df)[:, 1]
    output = data_path + "/output.csv"
    df.to_csv(output, index=False)
    return output
'''


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, bank_model: Path) -> tuple[Path, Path, Path]:
    """The staged async bundle (kept), its gate folder and its execution counter."""
    src = tmp_path_factory.mktemp("script")
    gates, counter = src / "gates", src / "counter.txt"
    gates.mkdir()
    (src / "app.py").write_text(SCRIPT)
    shutil.copyfile(bank_model, src / "model.pkl")
    (src / ".env").write_text(f"GATES={gates}\nCOUNTER={counter}\n")
    staged = load_artifact(Script("app.py:score", model_file=src / "model.pkl", env=src / ".env", mode="async",
                                  root=src))
    kept = src / "bundle"
    shutil.copytree(staged.path, kept)
    return kept, gates, counter


def started(counter: Path, name: str) -> None:
    """Wait until the script runs for the input ``name`` (past its imports)."""
    deadline = time.monotonic() + 60
    while executions(counter, name) == 0:
        assert time.monotonic() < deadline, f"the script never started on {name}"
        time.sleep(0.05)


def executions(counter: Path, name: str) -> int:
    return counter.read_text().split().count(name) if counter.exists() else 0


def test_async_script_jobs_cancel_fail_and_survive_a_restart(tmp_path: Path, bundle: tuple[Path, Path, Path],
                                                             rows: pd.DataFrame) -> None:
    kept, gates, counter = bundle
    server = Server(tmp_path, kept).start()
    try:
        data = tmp_path / "data"
        data.mkdir()
        for name in ("slow-a.csv", "slow-b.csv", "slow-c.csv", "slow-d.csv", "outside.csv", "raise.csv"):
            rows.head(30).to_csv(data / name, index=False)
        # a retried PUT runs the script once
        first = upload(server, data / "slow-a.csv", job_id="a")
        assert first.status_code == 202 and first.json()["kind"] == "script"
        assert upload(server, data / "slow-a.csv", job_id="a").status_code == 200
        running = wait(server, "a", until=("running",))
        started(counter, "slow-a.csv")
        child = int(_row(server, "a")["child_pid"])
        assert alive(child)
        queued = upload(server, data / "slow-b.csv").json()["id"]
        # cancel a queued job: it never runs
        assert httpx.delete(f"{server.url}/jobs/{queued}", timeout=30).json()["status"] == "cancelled"
        # cancel the running one: its process group is killed
        cancelled = httpx.delete(f"{server.url}/jobs/a", timeout=30)
        assert cancelled.json()["status"] == "cancelled", cancelled.text
        deadline = time.monotonic() + 10
        while alive(child):
            assert time.monotonic() < deadline, "the cancelled script still runs"
            time.sleep(0.02)
        assert executions(counter, "slow-a.csv") == 1 and executions(counter, "slow-b.csv") == 0
        assert running["started_at"]
        # restart mid-queue: the running job fails with the reason, the queued ones run
        c = upload(server, data / "slow-c.csv").json()["id"]
        wait(server, c, until=("running",))
        started(counter, "slow-c.csv")
        orphan = int(_row(server, c)["child_pid"])
        d = upload(server, data / "slow-d.csv").json()["id"]
        outside = upload(server, data / "outside.csv").json()["id"]
        server.kill()
        (gates / "slow-d.csv").touch()
        server.start()
        stopped = wait(server, c)
        assert stopped["status"] == "failed" and stopped["error"] == "the server stopped while the job ran"
        deadline = time.monotonic() + 10
        while alive(orphan):  # the script the killed server left behind is stopped by the next one
            assert time.monotonic() < deadline, "the orphaned script still runs"
            time.sleep(0.02)
        assert wait(server, d)["status"] == "succeeded"
        result = httpx.get(f"{server.url}/jobs/{d}/result", timeout=30)
        assert result.status_code == 200 and "score" in result.text.splitlines()[0]
        refused = wait(server, outside)
        assert refused["status"] == "failed" and "outside its job folder" in refused["error"], refused
        raised = wait(server, upload(server, data / "raise.csv").json()["id"])
        assert raised["status"] == "failed"
        assert "the column 'age' is missing from the input" in raised["error"]
    finally:
        server.stop()


def _row(server: Server, job_id: str) -> dict[str, Any]:
    import sqlite3

    with sqlite3.connect(server.jobs_dir / "jobs.sqlite") as db:
        db.row_factory = sqlite3.Row
        return dict(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())


NEOMARIL = '''\
import os

import joblib
import pandas as pd


def score(data_path, model_path):
    model = joblib.load(model_path + "/model.pkl")
    df = pd.read_csv(data_path + "/" + os.getenv("inputFileName"))
    df["score"] = model.predict_proba(df)[:, 1]
    output = data_path + "/output.csv"
    df.to_csv(output, index=False)
    return output
'''


def test_the_neomaril_async_script_deployed_as_a_bundle(project: Any, bank_model: Path, rows: pd.DataFrame) -> None:
    import joblib

    import deploykit

    (project.dir / "app.py").write_text(NEOMARIL)
    shutil.copyfile(bank_model, project.dir / "model.pkl")
    dep = deploykit.deploy(Script("app.py:score", model_file="model.pkl", mode="async"), target="local", name="neo")
    assert dep.status == "ready"
    rows.to_csv(project.dir / "customers.csv", index=False)
    answer = httpx.post(f"{dep.url}/jobs", files={"file": ("customers.csv", (project.dir / "customers.csv").read_bytes(),
                                                           "text/csv")}, timeout=60)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    deadline = time.monotonic() + 120
    while (doc := httpx.get(f"{dep.url}/jobs/{job_id}", timeout=30).json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert doc["status"] == "succeeded", doc
    assert doc["input"]["name"] == "customers.csv" and doc["output"] == "output.csv" and doc["rows_out"] == len(rows)
    import io

    got = pd.read_csv(io.BytesIO(httpx.get(f"{dep.url}/jobs/{job_id}/result", timeout=30).content))
    expected = joblib.load(bank_model).predict_proba(rows)[:, 1]
    assert list(got["score"].round(12)) == list(pd.Series(expected).round(12))
    assert (project.dir / ".deploykit" / "jobs" / "neo" / job_id / "output.csv").is_file()
    deploykit.delete("neo")


def test_jobs_need_the_scoring_token(tmp_path: Path, bank_model: Path, rows: pd.DataFrame) -> None:
    server = Server(tmp_path, bank_model, bank_model.with_name("bank-model.schema.json"), token="t0ps3cret").start()
    try:
        body = rows.head(5).to_csv(index=False).encode()
        refused = submit(server, body)
        assert refused.status_code == 401 and "bearer token" in refused.json()["error"]
        assert httpx.get(f"{server.url}/jobs", timeout=30).status_code == 401
        auth = {"authorization": "Bearer t0ps3cret", "content-type": "text/csv"}
        accepted = httpx.post(f"{server.url}/jobs", content=body, headers=auth, timeout=30)
        assert accepted.status_code == 202
        assert httpx.get(f"{server.url}/jobs/{accepted.json()['id']}", timeout=30).status_code == 401
        assert httpx.get(f"{server.url}/jobs/{accepted.json()['id']}", headers=auth, timeout=30).status_code == 200
    finally:
        server.stop()
