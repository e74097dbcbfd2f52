"""The mlflow target: log and register the model, serve it with MLflow's scoring server, move the alias.

deploy: log the model in a run (sklearn flavor, whose pyfunc answers labels and class probabilities;
pyfunc for other objects; a sync scoring-script bundle as our vendored ``BundleModel``, see
``bundle_model``; an async bundle is refused, naming what to use instead), register a new version
of the registered model, start ``mlflow models serve -m models:/NAME/VERSION`` on a private port
behind the deployment's stable front port, and once it answers ``/health`` point the alias
(``production`` by default) at the version. update: the same with the next version; the front
switches to the new server and the old one stops gracefully, so the URL stays and no request is
refused. rollback: the alias back to the previous version, which is served again. delete: stop
the servers and remove the alias (versions are kept unless ``delete_versions``).

The alias moves only after the new server is healthy: a server that fails to start leaves the
registry pointing where it was. Versions created by a deploy that did not complete are deleted
again (with their run), so a failed deploy leaves nothing unrecorded.

Crash safety: every id is handed to ``context.note`` the moment it exists (run id, version,
scoring-server pid and port, relay pid and port), runs and versions carry the tags
``deploykit.name``, ``deploykit.revision`` and ``deploykit.sha256``, and the servers' command
lines name ``models:/NAME/VERSION`` and the deployment's backend file, so ``reconcile`` finds
what a killed deploy made even when a note was never written. Crash points (``<action>:``
``run-created``, ``version-registered``, ``server-spawned``, ``front-spawned``, ``alias-moved``,
``backend-switched``) sit at each of those boundaries (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deploykit import process
from deploykit.artifact import Artifact
from deploykit.deployment import Deployment
from deploykit.errors import DeploymentError, ScoringError
from deploykit.faults import crash_point
from deploykit.http import base_url, request_json
from deploykit.payload import Predictions, encode
from deploykit.target import TargetContext, wait_until
from deploykit_plugins.mlflow import serving
from deploykit_plugins.mlflow.settings import MlflowSettings, connected, ensure_reachable, server_environment

if TYPE_CHECKING:
    from deploykit.operations import PendingOperation

__all__ = ["MlflowSettings", "MlflowTarget", "refuse_async"]


def refuse_async(artifact: Artifact) -> None:
    """DeploymentError for an async scoring-script bundle: MLflow's scoring server answers requests
    and runs no file jobs, so the mlflow target serves sync scripts only."""
    if artifact.flavor == "script" and artifact.extra.get("mode") == "async":
        raise DeploymentError(
            f"{artifact.name!r} is an async scoring-script bundle (mode async: score(data_path, model_path)), "
            "and the mlflow target serves sync scripts only: MLflow's scoring server answers requests and runs "
            "no file jobs. Deploy it with --target local and submit files as jobs (deploykit score NAME FILE "
            "--async), or with --target watsonml, where it runs as a batch job; or give it a sync "
            "score(data, base_path) and mode: sync to serve it here")


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
        #: ``create``, ``update`` or ``rollback``: the prefix of this call's crash points
        self._action = "create"

    # -- helpers --------------------------------------------------------------------------
    def _progress(self, message: str) -> None:
        self.context.progress(message)

    def _url(self, port: int) -> str:
        return base_url(self.settings.relay_scheme, self.settings.host, port)

    def _note(self, **ids: Any) -> None:
        self.context.note(**ids)

    def _endpoint(self, method: str, url: str, body: Any = None, *, timeout: float, retries: int) -> tuple[int, Any]:
        """A request to the deployment's own endpoint (the relay): its token and TLS trust applied."""
        s = self.settings
        return request_json(method, url, body, token=s.relay_secret, verify=s.tls_verify, timeout=timeout,
                            retries=retries)

    def _register(self, client: Any, artifact: Artifact, name: str, model_name: str,
                  revision: int = 1) -> dict[str, Any]:
        """A registered version for ``artifact``: the version a ``models:/`` artifact came from when it
        is a version of ``model_name`` in this registry (promoted, not logged again), else a new one."""
        from deploykit_plugins.mlflow import registry

        s = self.settings
        extra = artifact.extra
        if extra.get("tracking_uri") == s.shown_uri and extra.get("version") \
                and extra.get("registered_model") == model_name:
            self._progress(f"reusing version {extra['version']} of {model_name!r}")
            self._note(registered_model=model_name, version=str(extra["version"]))
            return {"version": str(extra["version"]), "run_id": extra.get("run_id"),
                    "model_uri": f"models:/{model_name}/{extra['version']}"}
        self._progress(f"logging the model in experiment {s.experiment!r} and registering it as {model_name!r}")
        logged = registry.log_and_register(client, s, artifact, name, model_name, revision=revision,
                                           action=self._action, note=self._note)
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
            f"the {s.pointer} of registered model {model_name!r} at {s.shown_uri} points at version {now}, "
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
        self._note(pid=proc.pid, server_port=port, log=str(log))
        crash_point(f"{self._action}:server-spawned")
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
        s = self.settings
        proc = serving.start_front(host, port, files, log, certfile=s.relay_certfile, keyfile=s.relay_keyfile,
                                   token=s.relay_secret)
        self._procs[proc.pid] = proc
        self._note(front_pid=proc.pid, port=port, backend_file=str(files.backend_file))
        crash_point(f"{self._action}:front-spawned")
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
        refuse_async(artifact)
        s = self.settings
        self._action = "create"
        model_name = s.registered_model or name
        port = s.port or serving.free_port(s.host)
        if not serving.port_is_free(s.host, port):
            raise DeploymentError(f"port {port} on {s.host} is in use by another process; set mlflow.port in "
                                  "credentials.yaml to a free port, or 0 to let deploykit pick one")
        self._progress(f"checking the MLflow tracking server {s.shown_uri}")
        ensure_reachable(s)
        with connected(s) as client:
            self._check_pointer(client, model_name, None)
            ids: dict[str, Any] = {"registered_model": model_name, **self._pointer_ids(),
                                   **self._register(client, artifact, name, model_name),
                                   "tracking_uri": s.shown_uri, "port": port}
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
        refuse_async(artifact)
        s = self.settings
        self._action = "update"
        model_name = current.ids.get("registered_model") or s.registered_model or current.name
        self._progress(f"checking the MLflow tracking server {s.shown_uri}")
        ensure_reachable(s)
        with connected(s) as client:
            self._check_pointer(client, model_name, str(current.ids.get("version")))
            registered = self._register(client, artifact, current.name, model_name, max(current.revisions) + 1)
        ids = {k: v for k, v in current.ids.items() if k not in ("version", "run_id", "model_uri", "experiment_id")}
        ids.update(registered_model=model_name, tracking_uri=s.shown_uri, **self._pointer_ids(), **registered)
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
        self._action = "rollback"
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
        self._note(registered_model=model_name, version=version)
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
            crash_point(f"{self._action}:alias-moved")
            for model_name, old_version, run_id in self._discard:
                self._forget_fresh(client, model_name, old_version, run_id)
            self._discard.clear()
        files = serving.ServerFiles(self.context.state_dir, deployment.name)
        serving.write_backend(files.backend_file, port, version)
        crash_point(f"{self._action}:backend-switched")
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
                status, _ = self._endpoint("GET", f"{deployment.url}/health", timeout=2, retries=0)
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
            status, _ = self._endpoint("GET", f"{current.url}/health", timeout=5, retries=1)
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
                                           **self._pointer_ids(), "tracking_uri": s.shown_uri}))
        return out

    # -- reconcile ------------------------------------------------------------------------
    def reconcile(self, operation: PendingOperation, current: Deployment | None) -> Deployment | None:
        """Adopt what an interrupted create/update/rollback made when it is complete (its version is
        registered, its scoring server answers /health, the alias points at the version and a relay
        runs), else remove it: stop the servers and relays it started that ``current`` does not use,
        point the alias back (never touching an alias on ``current``'s version), delete the version
        and run it registered. What it made is found by ``operation.ids`` or, where a note was never
        written, by tags (versions, runs) and command lines (servers, relays). Idempotent."""
        from deploykit_plugins.mlflow import registry

        op, s = operation, self.settings
        if op.action == "delete":
            return None  # a delete creates nothing; running it again finishes it
        cur = current.ids if current is not None else {}
        model_name = str(op.ids.get("registered_model") or cur.get("registered_model") or s.registered_model or op.name)
        sha = op.planned.get("model_sha256")
        files = serving.ServerFiles(self.context.state_dir, op.name)
        ensure_reachable(s)
        with connected(s) as client:
            created, runs = ([], []) if op.action == "rollback" else registry.find_created(
                client, s, model_name, op.name, op.revision, sha)
            version = str(op.ids["version"]) if op.ids.get("version") else (created[0][0] if created else None)
            adopted = self._adoptable(client, op, model_name, version, current, files)
            if adopted is not None:
                return adopted
            self._progress(f"removing what the interrupted {op.action} of {op.name!r} created")
            self._undo(client, op, model_name, version, created, runs, current, files)
        return None

    def _used(self, current: Deployment | None, key: str) -> set[str]:
        """``key``'s values in ``current`` and its history, as text: what must survive a reconcile."""
        if current is None:
            return set()
        entries = [current.ids] + [h.get("ids") or {} for h in current.history]
        return {str(e[key]) for e in entries if e.get(key) is not None}

    def _live_backend(self, op: PendingOperation, model_uri: str) -> tuple[int, int] | None:
        """(pid, port) of a scoring server of ``model_uri`` that answers /health, or None."""
        noted = op.ids.get("pid")
        pids = ([int(noted)] if noted is not None and serving.is_backend(int(noted)) else []) + serving.backends_of(model_uri)
        for pid in dict.fromkeys(pids):
            cmd = process.cmdline(pid) or b""
            if model_uri.encode() + b"\0" not in cmd:
                continue
            port = serving.backend_port(pid)
            if port is None:
                continue
            try:
                status, _ = request_json("GET", base_url("http", "127.0.0.1", port) + "/health", timeout=3, retries=1)
            except ScoringError:
                continue
            if status == 200:
                return pid, port
        return None

    def _adoptable(self, client: Any, op: PendingOperation, model_name: str, version: str | None,
                   current: Deployment | None, files: serving.ServerFiles) -> Deployment | None:
        from deploykit_plugins.mlflow.registry import pointed_version

        if version is None or pointed_version(client, self.settings, model_name) != version:
            return None
        model_uri = f"models:/{model_name}/{version}"
        backend = self._live_backend(op, model_uri)
        cur = current.ids if current is not None else {}
        fronts = [int(p) for p in [op.ids.get("front_pid"), cur.get("front_pid")] if p is not None and serving.is_front(p)]
        fronts += [p for p in serving.fronts_of(files) if p not in fronts]
        port = op.ids.get("port") or cur.get("port")
        if backend is None or not fronts or not port:
            return None
        pid, server_port = backend
        front = int(fronts[0])
        serving.write_backend(files.backend_file, server_port, version)
        for other in fronts[1:]:
            serving.stop(int(other), grace=5)
        for old in (cur.get("pid"), cur.get("replaces_pid")):
            if old is not None and old and int(old) != pid:
                serving.stop(int(old))
        ids = {k: v for k, v in cur.items() if k not in ("version", "run_id", "model_uri", "experiment_id",
                                                         "replaces_pid", "pid", "server_port", "log")}
        ids.update({k: v for k, v in op.ids.items() if k != "replaces_pid"})
        ids.update(registered_model=model_name, version=version, model_uri=model_uri, pid=pid,
                   server_port=server_port, front_pid=front, port=int(port), tracking_uri=self.settings.shown_uri,
                   backend_file=str(files.backend_file), **self._pointer_ids())
        adopted = Deployment(name=op.name, target="mlflow", status="ready", url=self._url(int(port)), ids=ids)
        adopted.revision = op.revision
        if op.planned.get("model_sha256"):
            adopted.model_sha256 = str(op.planned["model_sha256"])
        self._progress(f"adopted revision {op.revision} of {op.name!r}: version {version} serves on port {port}")
        return adopted

    def _undo(self, client: Any, op: PendingOperation, model_name: str, version: str | None,
              created: Sequence[tuple[str, str | None]], runs: Sequence[str], current: Deployment | None,
              files: serving.ServerFiles) -> None:
        from deploykit_plugins.mlflow.registry import delete_version, mlflow_errors, point, pointed_version, unpoint

        s = self.settings
        cur = current.ids if current is not None else {}
        keep_pids = {int(p) for p in (cur.get("pid"), cur.get("replaces_pid")) if p}
        cur_version = str(cur["version"]) if cur.get("version") else None
        # servers: the one noted, and any serving the operation's version that current does not use
        doomed = [int(op.ids["pid"])] if op.ids.get("pid") else []
        for v in {version, *(c[0] for c in created)} - {None, cur_version}:
            doomed += serving.backends_of(f"models:/{model_name}/{v}")
        serving.stop([p for p in dict.fromkeys(doomed) if p not in keep_pids], grace=5)
        # relays: every relay of this deployment but current's own
        keep_front = int(cur["front_pid"]) if cur.get("front_pid") and serving.is_front(cur["front_pid"]) else None
        fronts = [int(op.ids["front_pid"])] if op.ids.get("front_pid") else []
        serving.stop([p for p in dict.fromkeys(fronts + serving.fronts_of(files)) if p != keep_front], grace=5)
        if current is not None and cur.get("server_port") and serving.is_backend(cur.get("pid")):
            if serving.read_backend(files.backend_file) != int(cur["server_port"]):
                serving.write_backend(files.backend_file, int(cur["server_port"]), cur_version)
        elif keep_front is None:
            for path in (files.backend_file, files.front_state):
                with contextlib.suppress(OSError):
                    path.unlink()
        # the alias: back to current's version; never moved when it already points there
        pointed = pointed_version(client, s, model_name)
        theirs = {version, *(c[0] for c in created)} - {None}
        if pointed is not None and pointed != cur_version and pointed in theirs:
            if cur_version and cur.get("registered_model", model_name) == model_name:
                point(client, s, model_name, cur_version)
            else:
                unpoint(client, s, model_name, pointed)
        if op.action == "rollback":
            return  # a rollback registers nothing: the version belongs to an earlier revision
        used_versions, used_runs = self._used(current, "version"), self._used(current, "run_id")
        for v, run_id in created:
            if v not in used_versions:
                delete_version(client, s, model_name, v, run_id if run_id not in used_runs else None)
        with mlflow_errors(f"deleting the runs the interrupted {op.action} of {op.name!r} logged", s):
            from mlflow.exceptions import MlflowException

            noted_run = op.ids.get("run_id")
            for run_id in dict.fromkeys([*runs, *([str(noted_run)] if noted_run else [])]):
                if run_id not in used_runs:
                    with contextlib.suppress(MlflowException):
                        client.delete_run(run_id)

    # -- Scorer ---------------------------------------------------------------------------
    def score(self, deployment: Deployment, frame: Any) -> Predictions:
        """POST the rows as ``dataframe_split`` to ``/invocations`` and decode the answer."""
        url = f"{deployment.url}/invocations"
        status, body = self._endpoint("POST", url, encode(frame, "dataframe_split"),
                                      timeout=self.settings.server_timeout + 5, retries=3)
        if status != 200:
            message = body.get("message", body) if isinstance(body, dict) else body
            raise ScoringError(f"{url} answered {status}: {message}", status=status, body=body)
        return Predictions.decode(body)
