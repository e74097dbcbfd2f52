"""Worker processes share the port, hand over to the next revision and stop together."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploykit_plugins.local.settings import (
    LocalSettings,
    ServerDocument,
    write_document,
)


def _children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads process children from Linux /proc")
def test_workers_share_the_port_hand_over_to_the_next_revision_and_stop_together(
        bank_model: Path, tmp_path: Path, bank_rows: list[dict]) -> None:
    import json
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    def start(revision: int) -> subprocess.Popen[bytes]:
        state = tmp_path / f"state-{revision}.json"
        document = tmp_path / f"settings-{revision}"
        write_document(document, ServerDocument(model=str(bank_model), name="bank", revision=revision,
                                                reuse_port=True, state_file=str(state),
                                                settings=LocalSettings(port=port, workers=2)))
        proc = subprocess.Popen([sys.executable, "-m", "deploykit_plugins.local.server", "--settings", str(document)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: state.exists() or proc.poll() is not None, f"revision {revision} to serve")
        assert proc.poll() is None and json.loads(state.read_text())["workers"] == 2
        return proc

    def served_by() -> set[tuple[int, int]]:
        """(revision, pid) of whoever answers, over fresh connections, after scoring one row each."""
        seen = set()
        for _ in range(30):
            with httpx.Client() as client:
                assert client.post(f"{url}/predict", json=bank_rows[:1]).status_code == 200
                health = client.get(f"{url}/health").json()
                seen.add((health["revision"], health["pid"]))
        return seen

    first = start(1)
    second = None
    try:
        [worker] = _children(first.pid)
        assert served_by() == {(1, first.pid), (1, worker)}  # the kernel spreads connections over both
        # The next revision binds the same port beside the first. This "bind" mode (``deploykit
        # serve``) promises no zero-downtime switch: each listener has its own accept queue, and
        # connections still queued in the old one are reset when it closes. Deploys hand the one
        # listening socket over instead (handover.py), tested under load in test_zero_downtime.py.
        second = start(2)
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
        _wait(lambda: not _alive(worker), "revision 1's worker to stop with it")
        [worker2] = _children(second.pid)
        assert {revision for revision, _ in served_by()} == {2}
        second.kill()  # even SIGKILL of the main process takes its workers down
        second.wait(30)
        _wait(lambda: not _alive(worker2), "revision 2's worker to stop after its main process died")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
