"""deploykit.process: spawning with a minimal environment, "is this pid ours", stopping, log tails, scoped env."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from deploykit.process import alive, child_environment, group_alive, is_ours, log_tail, scoped_environ, spawn, stop

_MARK = "deploykit-process-test"


def _python(tmp_path: Path, code: str, env: dict[str, str] | None = None) -> int:
    """Start a detached Python running ``code`` (the marker in its command line); its pid."""
    log = tmp_path / "child.log"
    proc = spawn([sys.executable, "-c", code, _MARK], env if env is not None else child_environment(), log)
    return proc.pid


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path.exists(), "the child did not start"


def test_stop_terminates_gracefully(tmp_path: Path) -> None:
    ready, done = tmp_path / "ready", tmp_path / "done"
    pid = _python(tmp_path, "import pathlib, signal, sys, time\n"
                            "signal.signal(signal.SIGTERM,\n"
                            f"    lambda s, f: (pathlib.Path({str(done)!r}).touch(), sys.exit(0)))\n"
                            f"pathlib.Path({str(ready)!r}).touch()\n"
                            "time.sleep(60)")
    _wait_for(ready)
    assert is_ours(pid, _MARK.encode())
    stop(pid, grace=10, markers=(_MARK.encode(),))
    assert not alive(pid) and done.exists()  # SIGTERM reached its handler: a graceful stop


def test_stop_kills_what_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    pid = _python(tmp_path, "import pathlib, signal, time\n"
                            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                            f"pathlib.Path({str(ready)!r}).touch()\n"
                            "time.sleep(60)")
    _wait_for(ready)
    stop(pid, grace=0.3)
    assert not alive(pid)


def test_stop_leaves_a_pid_that_is_not_ours(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    pid = _python(tmp_path, f"import pathlib, time\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)")
    _wait_for(ready)
    try:
        assert not is_ours(pid, b"some-other-server")
        stop(pid, grace=0.3, markers=(b"some-other-server",))
        assert alive(pid)
    finally:
        stop(pid, grace=2)
    assert not alive(pid) and not is_ours(pid, _MARK.encode())


def test_group_stop_ends_the_children_too(tmp_path: Path) -> None:
    child_pid = tmp_path / "child.pid"
    pid = _python(tmp_path, "import pathlib, subprocess, sys, time\n"
                            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                            f"pathlib.Path({str(child_pid)!r}).write_text(str(c.pid))\n"
                            "time.sleep(60)")
    _wait_for(child_pid)
    grandchild = int(child_pid.read_text())
    assert group_alive(pid)
    stop(pid, grace=5, markers=(_MARK.encode(),), group=True)
    assert not group_alive(pid) and not alive(pid)
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.01)  # reaped by init once its parent is gone
    assert not alive(grandchild)


def test_stop_of_nothing_is_a_no_op() -> None:
    stop(None)
    stop([])
    assert not is_ours(None)


def test_child_environment_keeps_what_python_needs_and_drops_keys(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
    monkeypatch.setenv("IBM_CLOUD_API_KEY", "s3cret")
    monkeypatch.setenv("LC_TIME", "C")
    monkeypatch.setenv("TZ", "UTC")
    env = child_environment({"MLFLOW_TRACKING_URI": "http://x"})
    assert "AWS_SECRET_ACCESS_KEY" not in env and "IBM_CLOUD_API_KEY" not in env
    assert env["LC_TIME"] == "C" and env["TZ"] == "UTC" and env["MLFLOW_TRACKING_URI"] == "http://x"
    assert env["PATH"] == os.environ["PATH"]
    assert child_environment(keep_prefixes=("PIP_",), base={"PIP_INDEX_URL": "u", "X": "y"}) == {"PIP_INDEX_URL": "u"}
    out = tmp_path / "env.txt"
    # written under another name, then renamed: the file exists only once it is whole
    pid = _python(tmp_path, f"import os, pathlib; p = pathlib.Path({str(out)!r}); t = p.with_suffix('.tmp'); "
                            f"t.write_text(repr(sorted(os.environ))); os.replace(t, p)", env)
    _wait_for(out)
    stop(pid, grace=2)
    seen = out.read_text()
    assert "AWS_SECRET_ACCESS_KEY" not in seen and "'MLFLOW_TRACKING_URI'" in seen


def test_log_tail_last_lines_and_trim(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_bytes(b"one\ntwo\nbad \xff byte\nnoise\n")
    assert log_tail(log, 2) == "bad \ufffd byte\nnoise"
    assert log_tail(log, 2, trim=lambda lines: lines[:-1]) == "two\nbad \ufffd byte"
    assert log_tail(tmp_path / "absent.log") == "" and log_tail(None) == ""


def test_scoped_environ_restores_and_reports_what_the_block_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DK_TEST_A", "before")
    monkeypatch.delenv("DK_TEST_B", raising=False)
    with scoped_environ({"DK_TEST_A": None, "DK_TEST_B": "inside"}) as left:
        assert "DK_TEST_A" not in os.environ and os.environ["DK_TEST_B"] == "inside"
        os.environ["DK_TEST_A"] = "written by an SDK"
    assert os.environ["DK_TEST_A"] == "before" and "DK_TEST_B" not in os.environ
    assert left == {"DK_TEST_A": "written by an SDK", "DK_TEST_B": "inside"}
    with pytest.raises(RuntimeError), scoped_environ({"DK_TEST_B": "x"}):
        raise RuntimeError("boom")
    assert "DK_TEST_B" not in os.environ
