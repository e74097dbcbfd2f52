"""The mlflow target: log and register the model, serve it with MLflow's scoring server, move the alias.

deploy: log the model in a run (sklearn flavor, pyfunc for other objects), register a new version
of the registered model, start ``mlflow models serve -m models:/NAME/VERSION`` on a private port
behind the deployment's stable front port, and once it answers ``/health`` point the alias
(``production`` by default) at the version. update: the same with the next version; the front
switches to the new server and the old one stops gracefully, so the URL stays and no request is
refused. rollback: the alias back to the previous version, which is served again. delete: stop
the servers and remove the alias (versions are kept unless ``delete_versions``).

The alias moves only after the new server is healthy: a server that fails to start leaves the
registry pointing where it was. Versions created by a deploy that did not complete are deleted
again (with their run), so a failed deploy leaves nothing unrecorded.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import Any

from deploykit.artifact import Artifact
from deploykit.deployment import Deployment
from deploykit.errors import DeploymentError, ScoringError
from deploykit.http import base_url, request_json
from deploykit.payload import Predictions, encode
from deploykit.target import TargetContext, wait_until
from deploykit_plugins.mlflow import serving
from deploykit_plugins.mlflow.settings import MlflowSettings, connected, ensure_reachable, server_environment

__all__ = ["MlflowSettings", "MlflowTarget"]


class MlflowTarget:
    """Deployer and Scorer for an MLflow tracking server plus MLflow scoring servers on this machine."""

    def __init__(self, context: TargetContext) -> None:
        self.context = context
        self.settings: MlflowSettings = context.settings
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        # (registered model, version) created during this call of the core (a target serves one deploy,
        # rollback or delete): when the call fails, its cleanup (delete / rollback) removes them again
        self._fresh: set[tuple[str, str]] = set()
        self._discard: list[tuple[str, str, str | None]] = []

    # -- helpers --------------------------------------------------------------------------
    def _progress(self, message: str) -> None:
        self.context.progress(message)

    def _url(self, port: int) -> str:
        return base_url("http", self.settings.host, port)

    def _register(self, client: Any, artifact: Artifact, name: str, model_name: str) -> dict[str, Any]:
        """A registered version for ``artifact``: the version a ``models:/`` artifact came from when it
        is a version of ``model_name`` in this registry (promoted, not logged again), else a new one."""
        from deploykit_plugins.mlflow import registry

        s = self.settings
        extra = artifact.extra
        if extra.get("tracking_uri") == s.tracking_uri and extra.get("version") \
                and extra.get("registered_model") == model_name:
            self._progress(f"reusing version {extra['version']} of {model_name!r}")
            return {"version": str(extra["version"]), "run_id": extra.get("run_id"),
                    "model_uri": f"models:/{model_name}/{extra['version']}"}
        self._progress(f"logging the model in experiment {s.experiment!r} and registering it as {model_name!r}")
        logged = registry.log_and_register(client, s, artifact, name, model_name)
        self._fresh.add((model_name, logged.version))
        return {"version": logged.version, "run_id": logged.run_id, "model_uri": logged.model_uri,
                "experiment_id": logged.experiment_id}

    def _check_pointer(self, client: Any, model_name: str, expected: str | None) -> None:
        """Refuse to take over an alias (or stage) that points at a version this deployment does not serve."""
        from deploykit_plugins.mlflow.registry import pointed_version

        s = self.settings
        now = pointed_version(client, s, model_name)
        if now is None or now == expected or s.take_over_alias:
            return
        serving_now = f"this deployment serves version {expected}" if expected else "this project has no record of it"
        raise DeploymentError(
            f"the {s.pointer} of registered model {model_name!r} at {s.tracking_uri} points at version {now}, "
            f"but {serving_now}; deploying would move it. Set mlflow.take_over_alias: true to move it anyway, "
            f"use another alias (mlflow.alias) or registered model (mlflow.registered_model), "
            f"or remove the {s.pointer} in MLflow first"
        )

    def _start_backend(self, name: str, model_uri: str, version: str) -> dict[str, Any]:
        files = serving.ServerFiles(self.context.state_dir, name)
        log = files.log(f"v{version}")
        self._progress(f"starting the MLflow scoring server for {model_uri}")
        try:
            proc, port = serving.start_backend(model_uri, self.settings, server_environment(self.settings), log)
        except OSError as exc:
            raise DeploymentError(f"the MLflow scoring server for {model_uri} could not be started "
                                  f"({exc.strerror}); is mlflow installed in {sys.executable}?") from None
        self._procs[proc.pid] = proc
        return {"pid": proc.pid, "server_port": port, "log": str(log)}

    def _ensure_front(self, name: str, ids: dict[str, Any], backend_port: int | None) -> None:
        """Start the front relay on ``ids['port']`` unless it already runs."""
        if serving.is_front(ids.get("front_pid")):
            return
        files = serving.ServerFiles(self.context.state_dir, name)
        if backend_port is not None:
            serving.write_backend(files.backend_file, backend_port, ids.get("version"))
        host, port = self.settings.host, int(ids["port"])
        if not serving.port_is_free(host, port):
            raise DeploymentError(f"port {port} on {host} is in use by another process; set mlflow.port in "
                                  "credentials.yaml to a free port, or 0 to let deploykit pick one")
        log = files.log("front")
        proc = serving.start_front(host, port, files, log)
        self._procs[proc.pid] = proc
        try:
            serving.wait_front(files.front_state, proc.pid)
        except DeploymentError:
            raise serving.startup_failure(f"the front relay of {name!r} on {host}:{port}", proc.pid, str(log)) from None
        ids.update(front_pid=proc.pid, backend_file=str(files.backend_file))

    def _forget_fresh(self, client: Any, model_name: str, version: str, run_id: str | None) -> None:
        from deploykit_plugins.mlflow.registry import delete_version

        if (model_name, version) in self._fresh:
            delete_version(client, self.settings, model_name, version, run_id)
            self._fresh.discard((model_name, version))

    # -- Deployer -------------------------------------------------------------------------
    def deploy(self, artifact: Artifact, name: str) -> Deployment:
        """Log and register ``artifact`` as a new version, then start its scoring server and the front.

        The alias is not moved here but in ``wait_ready``, once the server answers."""
        s = self.settings
        model_name = s.registered_model or name
        port = s.port or serving.free_port(s.host)
        if not serving.port_is_free(s.host, port):
            raise DeploymentError(f"port {port} on {s.host} is in use by another process; set mlflow.port in "
                                  "credentials.yaml to a free port, or 0 to let deploykit pick one")
        self._progress(f"checking the MLflow tracking server {s.tracking_uri}")
        ensure_reachable(s)
        with connected(s) as client:
            self._check_pointer(client, model_name, None)
            ids: dict[str, Any] = {"registered_model": model_name, **self._pointer_ids(),
                                   **self._register(client, artifact, name, model_name),
                                   "tracking_uri": s.tracking_uri, "port": port}
        record = Deployment(name=name, target="mlflow", status="starting", url=self._url(port), ids=ids)
        try:
            ids.update(self._start_backend(name, ids["model_uri"], ids["version"]))
            self._ensure_front(name, ids, ids["server_port"])
        except DeploymentError as exc:
            self._abandon(record)
            raise DeploymentError(str(exc), deployment=record if record.ids.get("version") else None) from None
        return record

    def _pointer_ids(self) -> dict[str, str]:
        return {"stage": self.settings.stage} if self.settings.stage else {"alias": self.settings.alias}

    def _abandon(self, record: Deployment) -> None:
        """Undo a create that failed before serving: stop what started, drop the fresh version."""
        serving.stop(record.ids.get("pid"), grace=5)
        serving.stop(record.ids.get("front_pid"), grace=5)
        with contextlib.suppress(DeploymentError), connected(self.settings) as client:
            self._forget_fresh(client, record.ids["registered_model"], str(record.ids["version"]),
                               record.ids.get("run_id"))
            record.ids.pop("version", None)

    def update(self, current: Deployment, artifact: Artifact) -> Deployment:
        """Register ``artifact`` as the next version and start its server beside the current one;
        ``wait_ready`` moves the alias, switches the front and stops the old server."""
        s = self.settings
        model_name = current.ids.get("registered_model") or s.registered_model or current.name
        self._progress(f"checking the MLflow tracking server {s.tracking_uri}")
        ensure_reachable(s)
        with connected(s) as client:
            self._check_pointer(client, model_name, str(current.ids.get("version")))
            registered = self._register(client, artifact, current.name, model_name)
        ids = {k: v for k, v in current.ids.items() if k not in ("version", "run_id", "model_uri", "experiment_id")}
        ids.update(registered_model=model_name, tracking_uri=s.tracking_uri, **self._pointer_ids(), **registered)
        ids.setdefault("port", s.port or serving.free_port(s.host))
        return self._replace(current, ids)

    def _replace(self, current: Deployment, ids: dict[str, Any]) -> Deployment:
        new = Deployment(name=current.name, target="mlflow", status="starting", url=self._url(int(ids["port"])), ids=ids)
        old_pid = current.ids.get("pid")
        old_running = serving.is_backend(old_pid)
        try:
            ids.update(self._start_backend(current.name, ids["model_uri"], str(ids["version"])))
            self._ensure_front(current.name, ids, None if old_running else ids["server_port"])
        except DeploymentError as exc:
            serving.stop(ids.get("pid"), grace=5)
            with contextlib.suppress(DeploymentError), connected(self.settings) as client:
                self._forget_fresh(client, ids["registered_model"], str(ids["version"]), ids.get("run_id"))
            raise DeploymentError(str(exc)) from None
        ids.pop("replaces_pid", None)
        if old_running and old_pid != ids["pid"]:
            ids["replaces_pid"] = int(old_pid)  # type: ignore[arg-type]
        return new

    def rollback(self, current: Deployment, previous: Deployment) -> Deployment:
        """Point the alias back at ``previous``'s version and serve it again (its server is reused when
        it still runs, as after an update that failed to start)."""
        s = self.settings
        model_name = previous.ids.get("registered_model") or current.ids.get("registered_model") or current.name
        version = str(previous.ids.get("version"))
        if version in ("", "None"):
            raise DeploymentError(f"revision {previous.revision} of {current.name!r} has no MLflow version recorded; "
                                  "deploy that model again instead of rolling back")
        current_version = str(current.ids.get("version"))
        if (model_name, current_version) in self._fresh and current_version != version:
            self._discard.append((model_name, current_version, current.ids.get("run_id")))
        ids = dict(current.ids)
        for key in ("version", "run_id", "model_uri", "experiment_id"):
            ids.pop(key, None)
            if key in previous.ids:
                ids[key] = previous.ids[key]
        ids.update(registered_model=model_name, model_uri=f"models:/{model_name}/{version}", version=version)
        files = serving.ServerFiles(self.context.state_dir, current.name)
        prev_pid = previous.ids.get("pid")
        if (prev_pid and prev_pid != current.ids.get("pid") and serving.is_backend(prev_pid)
                and serving.read_backend(files.backend_file) == previous.ids.get("server_port")):
            # the previous server never stopped (the new one failed before the switch): keep it
            serving.stop(current.ids.get("pid"), grace=5)
            ids.update(pid=prev_pid, server_port=previous.ids["server_port"], log=previous.ids.get("log"))
            ids.pop("replaces_pid", None)
            return Deployment(name=current.name, target="mlflow", status="starting", url=current.url, ids=ids)
        ensure_reachable(s)
        return self._replace(current, ids)

    def wait_ready(self, deployment: Deployment, timeout: float) -> Deployment:
        """Wait for the scoring server's /health, then point the alias at its version, switch the front
        to it and stop the server it replaces. A server that exits first: DeploymentError with its log."""
        ids = deployment.ids
        pid, port, version = int(ids["pid"]), int(ids["server_port"]), str(ids["version"])
        what = f"the MLflow scoring server of {deployment.name!r} for models:/{ids['registered_model']}/{version}"

        proc = self._procs.get(pid)

        def check() -> bool | None:
            exited = proc.poll() is not None if proc is not None else not serving.alive(pid)
            if exited:
                raise serving.startup_failure(what, pid, ids.get("log"), proc.returncode if proc else None)
            try:
                status, _ = request_json("GET", base_url("http", "127.0.0.1", port) + "/health", timeout=2, retries=0)
            except ScoringError:
                return None
            return True if status == 200 else None

        # a local process: poll often, so readiness is seen within a quarter second
        wait_until(check, timeout=timeout, what=what, progress=self.context.progress, first=0.1, most=0.25)
        s = self.settings
        from deploykit_plugins.mlflow.registry import point

        self._progress(f"pointing the {s.pointer} of {ids['registered_model']!r} at version {version}")
        with connected(s) as client:
            point(client, s, ids["registered_model"], version)
            for model_name, old_version, run_id in self._discard:
                self._forget_fresh(client, model_name, old_version, run_id)
            self._discard.clear()
        files = serving.ServerFiles(self.context.state_dir, deployment.name)
        serving.write_backend(files.backend_file, port, version)
        self._wait_front(deployment)
        old = ids.pop("replaces_pid", None)
        if old and int(old) != pid:
            self._progress(f"stopping the previous scoring server (pid {old})")
            serving.stop(int(old))
        deployment.status = "ready"
        return deployment

    def _wait_front(self, deployment: Deployment) -> None:
        def check() -> bool | None:
            if not serving.is_front(deployment.ids.get("front_pid")):
                raise DeploymentError(f"the front relay of {deployment.name!r} (pid {deployment.ids.get('front_pid')}) "
                                      f"is not running; run 'deploykit deploy ... --force' to start it again")
            try:
                status, _ = request_json("GET", f"{deployment.url}/health", timeout=2, retries=0)
            except ScoringError:
                return None
            return True if status == 200 else None

        wait_until(check, timeout=30, what=f"the endpoint {deployment.url} of {deployment.name!r}",
                   progress=self.context.progress, first=0.02, most=0.25)

    def delete(self, current: Deployment) -> None:
        """Stop the scoring server(s) and the front, then remove the alias if it still points at this
        deployment's version. Versions stay registered unless ``delete_versions`` is set."""
        from deploykit_plugins.mlflow.registry import delete_version, unpoint

        ids = current.ids
        for key in ("replaces_pid", "pid", "front_pid"):
            serving.stop(ids.get(key))
        files = serving.ServerFiles(self.context.state_dir, current.name)
        for path in (files.backend_file, files.front_state):
            with contextlib.suppress(OSError):
                path.unlink()
        model_name, version = ids.get("registered_model"), ids.get("version")
        if not model_name or not version:
            return
        s = self.settings
        ensure_reachable(s)
        with connected(s) as client:
            unpoint(client, s, model_name, str(version))
            self._forget_fresh(client, model_name, str(version), ids.get("run_id"))
            if s.delete_versions:
                for entry in [ids] + [h.get("ids") or {} for h in current.history]:
                    if entry.get("version") and entry.get("registered_model", model_name) == model_name:
                        delete_version(client, s, model_name, str(entry["version"]), entry.get("run_id"))

    def get(self, current: Deployment) -> Deployment:
        """Status from the processes and the endpoint's /health: ready, unhealthy or stopped."""
        refreshed = Deployment.from_dict(current.name, current.target, current.to_dict())
        front = serving.is_front(current.ids.get("front_pid"))
        backend = serving.is_backend(current.ids.get("pid"))
        if not front and not backend:
            refreshed.status = "stopped"
            return refreshed
        try:
            status, _ = request_json("GET", f"{current.url}/health", timeout=5, retries=1)
        except ScoringError:
            status = 0
        refreshed.status = "ready" if front and backend and status == 200 else "unhealthy"
        return refreshed

    def list(self) -> list[Deployment]:
        """Registered models whose alias (or stage) deploykit manages, as the registry reports them."""
        s = self.settings
        ensure_reachable(s)
        out = []
        with connected(s) as client:
            from deploykit_plugins.mlflow.registry import pointed_version

            for model in client.search_registered_models(max_results=1000):
                if (model.tags or {}).get("deploykit") != "true":
                    continue
                version = pointed_version(client, s, model.name)
                if version is None:
                    continue
                out.append(Deployment(name=model.name, target="mlflow", status="registered",
                                      ids={"registered_model": model.name, "version": version,
                                           **self._pointer_ids(), "tracking_uri": s.tracking_uri}))
        return out

    # -- Scorer ---------------------------------------------------------------------------
    def score(self, deployment: Deployment, frame: Any) -> Predictions:
        """POST the rows as ``dataframe_split`` to ``/invocations`` and decode the answer."""
        url = f"{deployment.url}/invocations"
        status, body = request_json("POST", url, encode(frame, "dataframe_split"),
                                    timeout=self.settings.server_timeout + 5)
        if status != 200:
            message = body.get("message", body) if isinstance(body, dict) else body
            raise ScoringError(f"{url} answered {status}: {message}", status=status, body=body)
        return Predictions.decode(body)
