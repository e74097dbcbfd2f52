"""The processes that serve an MLflow deployment on this machine, and how they start and stop.

Two detached processes per deployment: the front (``deploykit_plugins.mlflow.front``, a TCP
relay on the deployment's stable port) and one MLflow scoring server per revision
(``mlflow models serve -m models:/NAME/VERSION --env-manager local`` on a private port of
127.0.0.1). Each runs in its own session, so stopping one stops its whole process group
(``mlflow models serve`` execs uvicorn in a child process).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deploykit import process
from deploykit.errors import DeploymentError
from deploykit.files import atomic_write
from deploykit.process import alive, free_port, group_alive, is_ours, spawn

__all__ = ["FRONT_MODULE", "ServerFiles", "alive", "backend_port", "backends_of", "free_port", "fronts_of",
           "group_alive", "is_backend", "is_front", "log_tail", "port_is_free", "processes_with", "read_backend",
           "root_cause", "start_backend", "start_front", "startup_failure", "stop", "wait_front", "write_backend"]

FRONT_MODULE = "deploykit_plugins.mlflow.front"


def port_is_free(host: str, port: int) -> bool:
    """True if ``host:port`` can be bound (nothing listens there)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class ServerFiles:
    """Where one deployment's run and log files live: ``<state_dir>/mlflow/{run,logs}/``."""

    def __init__(self, state_dir: Path, name: str) -> None:
        self.root = state_dir / "mlflow"
        self.name = name

    @property
    def backend_file(self) -> Path:
        """The file the front reads the current backend port from."""
        return self._dir("run") / f"{self.name}.backend.json"

    @property
    def front_state(self) -> Path:
        """The file the front writes its pid and port to once it listens."""
        return self._dir("run") / f"{self.name}.front.json"

    def token_file(self) -> Path:
        """A fresh 0600 file name for handing the relay its token (the relay removes it once read)."""
        return self._dir("run") / f".{self.name}.token.{os.getpid()}.{time.monotonic_ns()}"

    def log(self, what: str) -> Path:
        """A fresh log file for one process start."""
        return self._dir("logs") / f"{self.name}-{what}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"

    def _dir(self, kind: str) -> Path:
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def write_backend(path: Path, port: int, version: str | None = None) -> None:
    """Point the front at ``127.0.0.1:port`` (atomic replace, so the front never reads half a file)."""
    atomic_write(path, json.dumps({"host": "127.0.0.1", "port": port, "version": version}).encode())


def read_backend(path: Path) -> int | None:
    """The backend port the front relays to now, or None."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return int(json.loads(path.read_text())["port"])
    return None


def start_backend(model_uri: str, settings: Any, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``mlflow models serve`` for ``model_uri`` on a free private port; returns (process, port)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", settings.env_manager,
           "-h", "127.0.0.1", "-p", str(port), "-w", str(settings.workers), "-t", str(settings.server_timeout)]
    return spawn(cmd, env, log), port


def start_front(host: str, port: int, files: ServerFiles, log: Path, *, certfile: str | None = None,
                keyfile: str | None = None, token: str | None = None) -> subprocess.Popen[bytes]:
    """Start the relay on ``host:port`` in front of whatever ``files.backend_file`` names.

    With ``certfile``/``keyfile`` it serves HTTPS; a ``token`` is handed over in a 0600 file the
    relay reads once and removes (never on its command line or in its environment)."""
    with contextlib.suppress(OSError):
        files.front_state.unlink()
    cmd = [sys.executable, "-m", FRONT_MODULE, "--host", host, "--port", str(port),
           "--backend-file", str(files.backend_file), "--state-file", str(files.front_state)]
    if certfile:
        cmd += ["--certfile", certfile, "--keyfile", str(keyfile)]
    if token:
        token_file = files.token_file()
        atomic_write(token_file, token.encode(), mode=0o600)
        cmd += ["--token-file", str(token_file)]
    return spawn(cmd, process.child_environment({"PYTHONUNBUFFERED": "1"}), log)


def processes_with(*markers: bytes) -> list[int]:
    """Pids of running processes whose command line holds every one of ``markers`` (from /proc).

    How reconcile finds a scoring server or relay whose pid was never recorded: their command
    lines carry deterministic names (``models:/NAME/VERSION``, the deployment's backend file)."""
    proc = Path("/proc")
    found: list[int] = []
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        cmd = process.cmdline(int(entry.name))
        if cmd and all(marker in cmd for marker in markers) and alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def backends_of(model_uri: str) -> list[int]:
    """Session leaders of running ``mlflow models serve -m MODEL_URI`` processes (a uvicorn child excluded)."""
    exact = model_uri.encode() + b"\0"
    pids = [pid for pid in processes_with(b"mlflow", b"serve", exact) if is_backend(pid)]
    return [pid for pid in pids if _session_leader(pid)]


def fronts_of(files: ServerFiles) -> list[int]:
    """Running relays in front of ``files.backend_file`` (one deployment's)."""
    return processes_with(FRONT_MODULE.encode(), str(files.backend_file).encode() + b"\0")


def _session_leader(pid: int) -> bool:
    try:
        return os.getsid(pid) == pid
    except OSError:
        return False


def backend_port(pid: int) -> int | None:
    """The ``-p`` port on the command line of scoring server ``pid``, or None."""
    cmd = process.cmdline(pid) or b""
    args = cmd.split(b"\0")
    with contextlib.suppress(ValueError, IndexError):
        return int(args[args.index(b"-p") + 1])
    return None


def is_backend(pid: int | None) -> bool:
    """True if ``pid`` is a running ``mlflow models serve`` (guards against a recycled pid)."""
    return is_ours(pid, b"mlflow") and is_ours(pid, b"serve")


def is_front(pid: int | None) -> bool:
    """True if ``pid`` is a running deploykit front relay."""
    return is_ours(pid, FRONT_MODULE.encode())


def stop(pid: int | Iterable[int] | None, grace: float = 20.0) -> None:
    """Stop the process group of ``pid``, or of each of several (uvicorn finishes requests in flight);
    SIGKILL after ``grace``.

    Only a group that still holds an MLflow or front process is signalled: a recycled pid is left alone."""
    process.stop(pid, grace, markers=(b"mlflow", FRONT_MODULE.encode()), group=True)


def _without_wrapper_traceback(lines: list[str]) -> list[str]:
    """The log's lines without the traceback ``mlflow models serve`` adds when its uvicorn child fails
    ("Command ... returned non zero return code"): what is left ends with the child's own error."""
    if lines and "returned non zero return code" in lines[-1]:
        starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
        if starts and starts[-1] > 0:
            lines = lines[:starts[-1]]
    return lines


def log_tail(path: str | Path | None, lines: int = 15) -> str:
    """The last ``lines`` lines of a scoring server's log, its own error last ('' if unreadable)."""
    return process.log_tail(path, lines, trim=_without_wrapper_traceback)


def root_cause(path: str | Path | None) -> str | None:
    """The last ``SomethingError: message`` line of the log, i.e. why the server died."""
    for line in reversed(_without_wrapper_traceback(process.log_lines(path))):
        stripped = line.strip()
        head = stripped.split(":", 1)[0]
        if head and " " not in head and ("Error" in head or "Exception" in head or "Exit" in head) \
                and ":" in stripped:
            return stripped
    return None


def startup_failure(what: str, pid: int, log: str | None, code: int | None = None) -> DeploymentError:
    """The error for a process that exited while starting: why (if the log says) and the log's tail."""
    cause = root_cause(log)
    how = f" with exit code {code}" if code is not None else ""
    return DeploymentError(
        f"{what} (pid {pid}) exited during start-up{how}" + (f": {cause}" if cause else "")
        + f"; fix that and deploy again. Its log {log} ends with:\n{log_tail(log)}"
    )


def wait_front(state_file: Path, pid: int, timeout: float = 15.0) -> int:
    """Wait until the front wrote its state file; its port. DeploymentError if it exited instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            state = json.loads(state_file.read_text())
            if int(state["pid"]) == pid:
                return int(state["port"])
        if not alive(pid):
            break
        time.sleep(0.02)
    raise DeploymentError(f"the front relay (pid {pid}) did not start")  # caller adds the log tail

