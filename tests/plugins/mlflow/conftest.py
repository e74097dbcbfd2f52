"""Real servers for the mlflow target's tests: an MLflow tracking server (sqlite backend, local or S3
artifact root) and moto's S3 server, each on a free port of 127.0.0.1, started once per session."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import _stop_servers


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A process group we started, its URL and its log."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        """SIGTERM the whole group (mlflow server forks uvicorn workers), SIGKILL if it lingers."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # children that outlived their parent
            os.killpg(self.proc.pid, signal.SIGKILL)


def start(cmd: list[str], url: str, probe: str, log: Path, env: dict[str, str] | None = None,
          timeout: float = 120.0) -> Server:
    """Start ``cmd`` detached and wait until GET ``url + probe`` answers 200."""
    full_env = dict(os.environ, **(env or {}))
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=full_env, start_new_session=True)
    server = Server(url, proc, log, env or {})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url + probe, timeout=2) as resp:
                if resp.status == 200:
                    return server
        time.sleep(0.2)
    server.stop()
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise RuntimeError(f"{' '.join(cmd[:4])} did not become healthy at {url}{probe}; log tail:\n{tail}")


def mlflow_server(folder: Path, artifact_root: str, env: dict[str, str] | None = None) -> Server:
    """``mlflow server`` with a sqlite backend on a free port (one worker, background jobs off)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
           "--default-artifact-root", artifact_root, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return start(cmd, f"http://127.0.0.1:{port}", "/health", folder / "mlflow-server.log",
                 {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})})


@pytest.fixture(scope="session")
def mlflow_tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real MLflow tracking server (sqlite, artifacts in a local folder), shared by the session.
    Its folder (``server.log.parent``) holds the backend store ``mlflow.db``, the artifact store
    ``artifacts/`` and the server's log."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    server = mlflow_server(folder, str(folder / "artifacts"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server_url(mlflow_tracking_server: Server) -> str:
    """The URL of the session's tracking server."""
    return mlflow_tracking_server.url


@dataclass
class S3:
    """moto's S3 server: its endpoint, a bucket, and the variables a client needs."""

    endpoint: str
    bucket: str
    env: dict[str, str]

    def keys(self, prefix: str = "") -> list[str]:
        """Object keys in the bucket (boto3 against the moto server)."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """moto's server (``python -m moto.server``) on a free port, with an empty bucket."""
    import boto3

    folder = tmp_path_factory.mktemp("moto")
    port = free_port()
    server = start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                   f"http://127.0.0.1:{port}", "/moto-api/", folder / "moto.log")
    env = {"MLFLOW_S3_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=server.url, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="models")
    yield S3(server.url, "models", env)
    server.stop()


@pytest.fixture(scope="session")
def mlflow_s3_server_url(tmp_path_factory: pytest.TempPathFactory, moto_s3: S3) -> Iterator[str]:
    """A real MLflow tracking server whose artifact root is the moto bucket (s3://models/mlflow)."""
    folder = tmp_path_factory.mktemp("mlflow-s3-server")
    server = mlflow_server(folder, f"s3://{moto_s3.bucket}/mlflow", moto_s3.env)
    yield server.url
    server.stop()


def _stop_mlflow_processes(folder: Path) -> None:
    """Kill the process groups of every front and scoring server deploykit started from ``folder``."""
    pids: set[int] = set()
    for state in (folder / ".deploykit" / "mlflow" / "run").glob("*.front.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            pids.add(int(json.loads(state.read_text())["pid"]))
    metadata = folder / "metadata.yaml"
    if metadata.exists():
        import yaml

        with contextlib.suppress(Exception):
            data = yaml.safe_load(metadata.read_text()) or {}
            for targets in (data.get("deployments") or {}).values():
                rec = targets.get("mlflow") or {}
                for ids in [rec.get("ids") or {}] + [h.get("ids") or {} for h in rec.get("history") or []]:
                    pids.update(int(ids[k]) for k in ("pid", "front_pid", "replaces_pid") if ids.get(k))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes() if Path(f"/proc/{pid}").exists() else b""
            if b"mlflow" in cmd:
                os.killpg(pid, signal.SIGKILL)


@dataclass
class MlflowProject:
    """A project folder (cwd) whose credentials.yaml points the mlflow target at a tracking server."""

    dir: Path
    credentials: Path
    metadata: Path
    tracking_uri: str
    name: str
    base: dict[str, object] = field(default_factory=dict)

    def write(self, **settings: object) -> None:
        """Rewrite the mlflow section: ``tracking_uri``, the project's ``base`` settings, then ``settings``."""
        import yaml

        section = {"tracking_uri": self.tracking_uri, **self.base, **settings}
        self.credentials.write_text(yaml.safe_dump({"local": {"port": 0}, "mlflow": section}))

    def client(self):
        """An MlflowClient for this project's tracking server."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def kwargs(self, **extra: object) -> dict[str, object]:
        """The credentials/metadata keyword arguments of deploykit's API for this project."""
        return {"credentials": self.credentials, "metadata": self.metadata, **extra}


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracking_uri: str) -> Iterator[MlflowProject]:
    monkeypatch.chdir(tmp_path)
    project = MlflowProject(tmp_path, tmp_path / "credentials.yaml", tmp_path / "metadata.yaml", tracking_uri,
                            f"bank-{uuid.uuid4().hex[:8]}")
    project.write()
    yield project
    _stop_mlflow_processes(tmp_path)
    _stop_servers(tmp_path)  # local-target servers of the models:/ tests


@pytest.fixture
def mlflow_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_server_url: str) -> Iterator[MlflowProject]:
    """A fresh project against the shared tracking server, with a registered-model name of its own."""
    yield from _project(tmp_path, monkeypatch, mlflow_server_url)


@pytest.fixture
def mlflow_s3_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_s3_server_url: str,
                      moto_s3: S3) -> Iterator[MlflowProject]:
    """A fresh project against the S3-backed tracking server; its credentials.yaml holds the S3 settings."""
    for project in _project(tmp_path, monkeypatch, mlflow_s3_server_url):
        project.base = {"s3_endpoint_url": moto_s3.endpoint, "aws_access_key_id": "testing",
                        "aws_secret_access_key": "testing", "aws_region": "us-east-1"}
        project.write()
        yield project
