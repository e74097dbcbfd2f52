"""The crash switch kills a real process at the named step, and only there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

CODE = ("from deploykit.faults import crash_point, arm_timer\n"
        "import time\n"
        "arm_timer()\n"
        "crash_point('create:spawned'); print('passed create:spawned', flush=True)\n"
        "crash_point('create:ready'); print('passed create:ready', flush=True)\n"
        "time.sleep(float(__import__('os').environ.get('SLEEP', '0')))\n"
        "print('finished', flush=True)\n")


def _run(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_without_the_switch_nothing_happens() -> None:
    proc = _run()
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["passed create:spawned", "passed create:ready",
                                                                   "finished"]


def test_the_named_step_kills_the_process_there() -> None:
    proc = _run(DEPLOYKIT_CRASH_AT="update:x, create:ready")
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout.splitlines() == ["passed create:spawned"]


def test_the_timer_kills_between_steps() -> None:
    proc = _run(DEPLOYKIT_CRASH_AFTER_MS="200", SLEEP="30")
    assert proc.returncode == -signal.SIGKILL
    assert "finished" not in proc.stdout
