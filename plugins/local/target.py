"""The local target: deploy = start a detached server process on this machine and record it.

Update and rollback start the next server on the same port (SO_REUSEPORT), check its own
health socket, then stop the old one, so requests never meet a closed port. Each revision's
model file is kept under ``.deploykit/artifacts/<sha256>/`` for rollback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from deploykit_plugins.local.settings import (
    LocalSettings,
    ServerDocument,
    write_document,
)
from deploykit_plugins.local.sockets import bind

from deploykit.artifact import Artifact
from deploykit.deployment import Deployment
from deploykit.errors import DeploymentError, ScoringError
from deploykit.files import atomic_copy, atomic_write
from deploykit.http import base_url, close_pools, request_json
from deploykit.payload import Predictions, encode
from deploykit.process import alive, free_port, is_ours, log_tail, spawn, stop
from deploykit.target import TargetContext, wait_until

__all__ = ["LocalSettings", "LocalTarget"]

_SERVER_MODULE = "deploykit_plugins.local.server"


def _is_our_server(pid: int) -> bool:
    """True if ``pid`` runs a deploykit local server (guards against a recycled pid)."""
    return is_ours(pid, _SERVER_MODULE.encode())


def _stop(pid: int, grace: float = 15.0) -> None:
    """Stop our server ``pid`` gracefully (uvicorn finishes in-flight requests), SIGKILL after ``grace`` s."""
    close_pools()  # an idle TLS keep-alive connection of ours would hold up the graceful shutdown
    stop(pid, grace, markers=(_SERVER_MODULE.encode(),))


class LocalTarget:
    """Deployer and Scorer for a server process on this machine."""

    def __init__(self, context: TargetContext) -> None:
        self.context = context
        self.settings: LocalSettings = context.settings
        self.dir = context.state_dir

    # -- helpers --------------------------------------------------------------------------
    @property
    def _token(self) -> str | None:
        return self.settings.token.get_secret_value() if self.settings.token else None

    @property
    def _scheme(self) -> str:
        return "https" if self.settings.certfile else "http"

    def _keep(self, artifact: Artifact) -> tuple[Path, Path]:
        """Copy the model (and its schema) to the artifact store so rollback can re-serve it."""
        folder = self.dir / "artifacts" / artifact.sha256
        folder.mkdir(parents=True, exist_ok=True)
        model = folder / ("model" + "".join(artifact.path.suffixes) if artifact.path.is_file() else "model")
        if not model.exists():
            atomic_copy(artifact.path, model)
        schema = folder / "schema.json"
        atomic_write(schema, json.dumps(artifact.schema.to_dict(), indent=1).encode())
        return model, schema

    def _start(self, name: str, revision: int, model: Path, schema: Path, port: int, replacing: bool) -> Deployment:
        host = self.settings.host
        if not replacing:
            try:
                bind(host, port).close()
            except OSError as exc:
                code = "in use by another process" if exc.errno == errno.EADDRINUSE else exc.strerror
                raise DeploymentError(
                    f"port {port} on {host} is {code}; set local.port in credentials.yaml to a free port, "
                    "or 0 to let deploykit pick one"
                ) from None
        run = self.dir / "run"
        logs = self.dir / "logs"
        run.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        state_file = run / f"{name}-{revision}-{time.time_ns()}.json"
        log = logs / f"{name}.log"
        # One settings document, readable by this user only, holds everything (the token too):
        # nothing secret goes on the command line or into the environment.
        document = state_file.with_suffix(".settings")
        settings = self.settings.model_copy(update={"port": port})
        write_document(document, ServerDocument(model=str(model), schema_file=str(schema), name=name,
                                                revision=revision, reuse_port=True, state_file=str(state_file),
                                                settings=settings))
        cmd = [self.settings.python or sys.executable, "-m", _SERVER_MODULE, "--settings", str(document)]
        env = dict(os.environ)
        proc = spawn(cmd, env, log)
        url = base_url(self._scheme, host, port)
        ids = {"pid": proc.pid, "port": port, "host": host, "model_file": str(model), "schema_file": str(schema),
               "state_file": str(state_file), "log": str(log)}
        return Deployment(name=name, target="local", revision=revision, status="starting", url=url, ids=ids)

    # -- Deployer -------------------------------------------------------------------------
    def deploy(self, artifact: Artifact, name: str) -> Deployment:
        """Start a server for ``artifact`` on the configured port (or a free one)."""
        model, schema = self._keep(artifact)
        port = self.settings.port or free_port(self.settings.host)
        return self._start(name, 1, model, schema, port, replacing=False)

    def update(self, current: Deployment, artifact: Artifact) -> Deployment:
        """Start the new revision beside the old one on the same port; ``wait_ready`` stops the old."""
        model, schema = self._keep(artifact)
        return self._replace(current, model, schema, current.revision + 1)

    def _replace(self, current: Deployment, model: Path, schema: Path, revision: int) -> Deployment:
        port = int(current.ids.get("port") or self.settings.port or free_port(self.settings.host))
        old_pid = current.ids.get("pid")
        running = bool(old_pid) and _is_our_server(int(old_pid))
        new = self._start(current.name, revision, model, schema, port, replacing=running)
        if running:
            new.ids["replaces_pid"] = int(old_pid)  # type: ignore[arg-type]
        return new

    def rollback(self, current: Deployment, previous: Deployment) -> Deployment:
        """Re-serve ``previous``'s kept model file on the same port.

        After an update whose new process never became ready, the previous process is still
        serving: the failed one is stopped and the previous one kept as it is.
        """
        old_pid = previous.ids.get("pid")
        if current.ids.get("replaces_pid") == old_pid and old_pid and _is_our_server(int(old_pid)):
            _stop(int(current.ids["pid"]))
            kept = Deployment.from_dict(previous.name, previous.target, previous.to_dict())
            kept.status = "starting"
            return kept
        model = Path(previous.ids.get("model_file", ""))
        schema = Path(previous.ids.get("schema_file", ""))
        if not model.exists():
            raise DeploymentError(
                f"revision {previous.revision}'s model file {str(model)!r} is gone from the artifact store; "
                f"deploy that model file again instead of rolling back"
            )
        return self._replace(current, model, schema, previous.revision)

    def wait_ready(self, deployment: Deployment, timeout: float) -> Deployment:
        """Wait for the new process's health socket; then stop the process it replaces."""
        pid = int(deployment.ids["pid"])
        state_file = Path(deployment.ids["state_file"])

        def check() -> dict[str, Any] | None:
            if not alive(pid):
                raise DeploymentError(
                    f"the local server for {deployment.name!r} (pid {pid}) exited during start-up; "
                    f"its log ({deployment.ids.get('log')}) ends with:\n{log_tail(deployment.ids.get('log'))}"
                )
            if not state_file.exists():
                return None
            state: dict[str, Any] = json.loads(state_file.read_text())
            try:
                # our own process on loopback, identified by pid: no certificate check needed
                health = base_url(self._scheme, "127.0.0.1", state["health_port"]) + "/health"
                status, body = request_json("GET", health, timeout=2, retries=0, verify=False)
            except ScoringError:
                return None
            return state if status == 200 and body.get("pid") == pid else None

        try:
            state = wait_until(check, timeout=timeout, what=f"local server {deployment.name!r} (pid {pid})",
                               progress=self.context.progress, most=0.25)
        except DeploymentError:
            _stop(pid, grace=2)  # never leave a half-started server holding the port
            raise
        deployment.ids["health_port"] = state["health_port"]
        old = deployment.ids.pop("replaces_pid", None)
        if old:
            _stop(int(old))
        deployment.status = "ready"
        return deployment

    def delete(self, current: Deployment) -> None:
        """Stop the server process (if it still runs) and remove its run file."""
        if current.ids.get("pid"):
            _stop(int(current.ids["pid"]))
        if current.ids.get("replaces_pid"):
            _stop(int(current.ids["replaces_pid"]))
        with contextlib.suppress(OSError):
            Path(current.ids.get("state_file", "")).unlink()

    def get(self, current: Deployment) -> Deployment:
        """Status from the process and its /health: ready, unhealthy or stopped."""
        pid = current.ids.get("pid")
        refreshed = Deployment.from_dict(current.name, current.target, current.to_dict())
        if not pid or not _is_our_server(int(pid)):
            refreshed.status = "stopped"
            return refreshed
        try:
            status, body = request_json("GET", f"{current.url}/health", timeout=5, retries=1, verify=self._verify)
        except ScoringError:
            status, body = 0, None
        ok = status == 200 and isinstance(body, dict) and body.get("model_sha256") == current.model_sha256
        refreshed.status = "ready" if ok else "unhealthy"
        return refreshed

    def list(self) -> list[Deployment]:
        """Servers of this metadata folder that are running now (from their run files)."""
        out = []
        for path in sorted((self.dir / "run").glob("*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                state = json.loads(path.read_text())
                if _is_our_server(int(state["pid"])):
                    name = path.name.rsplit("-", 2)[0]
                    out.append(Deployment(name=name, target="local", status="ready",
                                          url=base_url(self._scheme, self.settings.host, state["port"]), ids=state))
        return out

    # -- Scorer ---------------------------------------------------------------------------
    @property
    def _verify(self) -> bool | str:
        return self.settings.certfile or True

    def score(self, deployment: Deployment, frame: Any) -> Predictions:
        """POST the rows as records to ``/predict`` and decode the answer."""
        status, body = request_json("POST", f"{deployment.url}/predict", encode(frame, "records"),
                                    token=self._token, verify=self._verify)
        if status != 200:
            message = body.get("error") if isinstance(body, dict) else body
            raise ScoringError(f"{deployment.url}/predict answered {status}: {message}", status=status, body=body)
        return Predictions.decode(body)
