"""A project folder for tests: credentials.yaml, metadata.yaml, the real CLI, and clean-up of servers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CliResult", "Project", "run_cli", "stop_servers"]

#: what the ``project`` fixture writes: the local target on a free port
DEFAULT_CREDENTIALS = "local:\n  port: 0\n"


@dataclass
class Project:
    """A folder with credentials.yaml and metadata.yaml, the working directory of the test."""

    dir: Path
    credentials: Path
    metadata: Path

    def write_credentials(self, text: str) -> None:
        """Replace credentials.yaml with ``text`` (YAML, ``${ENV}`` references allowed)."""
        self.credentials.write_text(text)

    def record(self, name: str, target: str) -> dict[str, Any] | None:
        """The record of ``name`` on ``target`` as written in metadata.yaml, or None."""
        import yaml

        if not self.metadata.exists():
            return None
        data = yaml.safe_load(self.metadata.read_text()) or {}
        found: dict[str, Any] | None = ((data.get("deployments") or {}).get(name) or {}).get(target)
        return found


@dataclass
class CliResult:
    """What a real ``deploykit`` process printed and returned."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as JSON (the commands' ``--json`` output)."""
        return json.loads(self.out)


def run_cli(folder: Path, *args: Any, stdin: str | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> CliResult:
    """Run ``python -m deploykit ARGS`` (the console script's entry) in ``folder`` with this interpreter."""
    proc = subprocess.run([sys.executable, "-m", "deploykit", *map(str, args)], cwd=folder, input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env=None if env is None else {**os.environ, **env})
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def _kill(pid: Any) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, ValueError, TypeError):
        os.kill(int(pid), signal.SIGKILL)


def stop_servers(folder: Path) -> None:
    """SIGKILL every local-target server started from ``folder`` (run files and metadata.yaml records),
    so a failing test leaves no process behind."""
    for state in (folder / ".deploykit" / "run").glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            _kill(json.loads(state.read_text())["pid"])
    metadata = folder / "metadata.yaml"
    if not metadata.exists():
        return
    import yaml

    with contextlib.suppress(Exception):  # also a server whose run file was never written
        data = yaml.safe_load(metadata.read_text()) or {}
        for targets in (data.get("deployments") or {}).values():
            for rec in targets.values():
                for ids in [rec.get("ids") or {}] + [h.get("ids") or {} for h in rec.get("history") or []]:
                    if ids.get("pid") and "state_file" in ids:
                        _kill(ids["pid"])
