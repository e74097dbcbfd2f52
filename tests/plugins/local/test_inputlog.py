"""Logged inputs: a load of known rows through a real uvicorn server, read back with pyarrow."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from deploykit.artifact import Artifact
from deploykit.process import free_port
from deploykit.testing.servers import running
from deploykit_plugins.local.app import ServerConfig, create_app
from deploykit_plugins.local.settings import LocalSettings
from tests.plugins.local.test_metrics import scrape, value


def test_every_scored_row_is_logged_with_its_prediction(artifact: Artifact, bank_rows: list[dict],
                                                       tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    app = create_app(artifact, ServerConfig(name="bank", revision=2, inputs_dir=str(folder)))
    answers = []
    with running(app) as url:
        for i in range(0, 20, 4):
            answer = httpx.post(f"{url}/predict", json=bank_rows[i:i + 4])
            assert answer.status_code == 200
            answers.extend(answer.json()["predictions"])
        assert httpx.post(f"{url}/predict", json=[dict(bank_rows[0], age="old")]).status_code == 422
    app.state.input_log.close()  # the server's clean shutdown does the same (atexit)
    table = pq.read_table(sorted(folder.glob("inputs-*.parquet"))).to_pandas()
    assert len(table) == 20  # the rejected row was not scored, so it is not logged
    assert table["age"].tolist() == [r["age"] for r in bank_rows]
    assert table["job"].tolist() == [r["job"] for r in bank_rows]
    assert table["__prediction"].tolist() == [str(a) for a in answers]
    assert set(table["__revision"]) == {2}
    assert table["__request_id"].nunique() == 5
    assert table["__time"].is_monotonic_increasing
    assert not list(folder.glob(".*.tmp"))


def test_logging_is_off_unless_asked(tmp_path: Path) -> None:
    assert ServerConfig.from_settings(LocalSettings(), "bank").inputs_dir is None
    on = ServerConfig.from_settings(LocalSettings(log_inputs=True), "bank", state_dir=str(tmp_path))
    assert on.inputs_dir == str(tmp_path / "input-logs" / "bank")


def test_a_path_that_cannot_be_a_folder_still_serves_and_counts_failures(artifact: Artifact, bank_rows: list[dict],
                                                                        tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # mkdir under a file fails for root too
    app = create_app(artifact, ServerConfig(name="bank", inputs_dir=str(blocker / "bank")))
    _served_while_logging_fails(app, bank_rows)


def _served_while_logging_fails(app: object, bank_rows: list[dict]) -> None:
    with running(app) as url:
        for _ in range(3):
            assert httpx.post(f"{url}/predict", json=bank_rows[:2]).status_code == 200
        app.state.input_log.close()  # type: ignore[attr-defined]
        samples = scrape(url)
    assert value(samples, "deploykit_input_log_failures_total") >= 1
    assert value(samples, "deploykit_input_log_rows_total") == 0


def _serve(bank_model: Path, folder: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "deploykit", "serve", str(bank_model), "--schema",
                             str(bank_model.with_name("bank-model.schema.json")), "--port", str(port),
                             "--workers", str(workers), "--log-inputs", "--log-inputs-dir", str(folder),
                             "--batch-wait-ms", "0"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180  # a start-up bound, not a timing check: two workers load the model on a busy machine
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"deploykit serve did not start: {proc.stderr.read().decode() if proc.stderr else ''}")


def _logged(folder: Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in folder.glob("inputs-*.parquet"))


def test_nothing_is_lost_at_a_clean_shutdown_of_several_workers(bank_model: Path, bank_rows: list[dict],
                                                               tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    proc = _serve(bank_model, tmp_path / "logs", port, workers=2)
    try:
        for i in range(40):  # a new connection each, so both workers take some
            answer = httpx.post(f"http://127.0.0.1:{port}/predict", json=bank_rows[i % 20:i % 20 + 1])
            assert answer.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    log = proc.stderr.read().decode() if proc.stderr else ""
    assert _logged(tmp_path / "logs") == 40, log
    writers = {f.name.split("-")[2] for f in (tmp_path / "logs").glob("inputs-*.parquet")}
    assert len(writers) == 2, writers  # the forked worker flushed its own rows before exiting


def test_after_kill_9_only_the_last_unflushed_second_can_be_lost(bank_model: Path, bank_rows: list[dict],
                                                                tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    proc = _serve(bank_model, tmp_path / "logs", port, workers=1)
    try:
        for _ in range(3):
            assert httpx.post(f"http://127.0.0.1:{port}/predict", json=bank_rows).status_code == 200
        time.sleep(2.5)  # more than one flush interval
        assert httpx.post(f"http://127.0.0.1:{port}/predict", json=bank_rows[:5]).status_code == 200
        proc.kill()
        proc.wait(30)
    finally:
        proc.kill()
    assert _logged(tmp_path / "logs") in (60, 65)  # the last request may be in the lost second
    assert not list((tmp_path / "logs").glob("inputs-*.tmp"))
