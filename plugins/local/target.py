"""The local target: deploy = start a detached server process on this machine and record it.

Zero downtime, in order (``wait_ready`` does steps 2 to 5, so the lifecycle's contract holds:
after ``update`` + ``wait_ready`` the new revision serves the public port and the lifecycle's
own smoke test and record follow):

1. ``deploy``/``update``/``rollback`` spawn a server that listens on a private loopback port
   only (``ServerDocument.public = "wait"``); no live client can reach it.
2. ``wait_ready`` waits for its health socket, then smoke-scores the schema's example row on the
   private port. A failure stops the new server and raises SmokeTestError: the old server was
   never touched, so live clients saw nothing (the lifecycle's automatic rollback then only
   forgets the failed revision).
3. SIGUSR1 makes the new server *join*: it takes the public listening socket from the old one
   (``handover``: one kernel accept queue shared, so no queued connection is reset).
4. The old server stops (SIGTERM: in-flight requests finish, idle keep-alive connections close
   gently), or, with ``keep_warm_s`` > 0, *leaves* the port and stays warm that long.
5. After an update, older revisions' kept models beyond ``keep_revisions`` are pruned (never
   the revision just replaced: the lifecycle's automatic rollback may still need it).

``rollback`` makes a warm previous server join again when one runs (no cold start); after a
failed update it simply stops the never-joined new server. Otherwise it starts the kept model.

Files under ``.deploykit/``: ``artifacts/<sha256>/model.*`` (the kept model, exactly the file
its digest covers, re-checked before each use; ``schema.json`` beside it; a scoring-script
bundle is the folder ``artifacts/<sha256>/model/``, its digest covering every file, its ``.env``
kept at mode 0600), ``artifacts/<sha256>.users``
(the deployment names using it), ``run/<name>-r<revision>-<sha8>.json`` (the server's state),
``.launch.json`` (what the deployer started) and ``.settings`` (the server's settings document,
removed once read), ``logs/<name>.log`` (rotated). Run-file names are derived from (name,
revision, sha256), and the server's command line holds that path, so ``reconcile`` finds a
server whose pid was never recorded.

A bundle (``deploykit.bundle``) is served by the python of the environment built from its
``requirements.txt`` (``environments``; the deploying interpreter when it has none), with
``PYTHONDONTWRITEBYTECODE`` set so importing the script leaves the digest-checked folder as it
was. The server reads the env file itself: its values are never on the command line or in the
environment the process is started with. ``ids["bundle"]`` is the bundle's mode (``sync`` or
``async``); ``score`` then posts the row as the script's own JSON and reads its answer as is.

Crash points (``deploykit.faults.crash_point``), with ``<action>`` one of create, update, rollback:
``<action>:spawned`` (the server process exists, its pid noted), ``<action>:private-smoke-tested``,
``<action>:joined`` (old and new share the public port), ``<action>:switched`` (the old server stopped).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from deploykit.artifact import Artifact, sha256_of
from deploykit.bundle import MANIFEST
from deploykit.deployment import Deployment
from deploykit.errors import DeploymentError, ScoringError, SmokeTestError
from deploykit.faults import crash_point
from deploykit.files import atomic_copy, atomic_write
from deploykit.http import base_url, close_pools, request_json
from deploykit.payload import Predictions, encode
from deploykit.process import alive, child_environment, cmdline, free_port, is_ours, log_lines, log_tail, spawn, stop
from deploykit.target import TargetContext, wait_until
from deploykit_plugins.local.settings import LocalSettings, ServerDocument, write_document
from deploykit_plugins.local.sockets import bind

__all__ = ["CRASH_POINTS", "LocalSettings", "LocalTarget"]

_SERVER_MODULE = "deploykit_plugins.local.server"
#: The local target's own crash points, per action (see the module docstring).
CRASH_POINTS = ("spawned", "private-smoke-tested", "joined", "switched")
_RUN_FILE = re.compile(r"^(?P<name>.+)-r(?P<revision>\d+)-(?P<sha8>[0-9a-f]{8})$")


def _is_our_server(pid: int) -> bool:
    """True if ``pid`` runs a deploykit local server (guards against a recycled pid)."""
    return is_ours(pid, _SERVER_MODULE.encode())


def _stop(pid: int, grace: float = 15.0) -> None:
    """Stop our server ``pid`` gracefully (uvicorn finishes in-flight requests), SIGKILL after ``grace`` s."""
    close_pools()  # an idle TLS keep-alive connection of ours would hold up the graceful shutdown
    stop(pid, grace, markers=(_SERVER_MODULE.encode(),))


def _owner_token() -> str:
    from deploykit.operations import Owner

    me = Owner.current()
    return f"{me.pid}:{me.started if me.started is not None else ''}"


def _owner_dead(token: str | None) -> bool:
    """True when the deploying process named by ``token`` (``pid:start``) is gone."""
    import socket

    from deploykit.operations import Owner

    if not token:
        return True
    pid, _, started = token.partition(":")
    with contextlib.suppress(ValueError):
        return Owner(int(pid), socket.gethostname(), None, int(started) if started else None).state() == "dead"
    return True


class _Server:
    """A running server process of this state folder, found from its command line."""

    def __init__(self, pid: int, stem: str, owner: str | None) -> None:
        self.pid, self.stem, self.owner = pid, stem, owner
        match = _RUN_FILE.match(stem)
        self.name = match["name"] if match else ""
        self.revision = int(match["revision"]) if match else 0
        self.sha8 = match["sha8"] if match else ""


class LocalTarget:
    """Deployer and Scorer for a server process on this machine."""

    #: The server process loads (and digest-checks) the model; the deploying process need not unpickle it.
    loads_model_itself = True

    def __init__(self, context: TargetContext) -> None:
        self.context = context
        self.settings: LocalSettings = context.settings
        self.dir = context.state_dir
        self.run = self.dir / "run"
        self._action = "create"
        self._remove_stale_run_files()

    # -- helpers --------------------------------------------------------------------------
    @property
    def _token(self) -> str | None:
        return self.settings.token.get_secret_value() if self.settings.token else None

    @property
    def _scheme(self) -> str:
        return "https" if self.settings.certfile else "http"

    @property
    def _verify(self) -> bool | str:
        return self.settings.client_verify

    def _stem(self, name: str, revision: int, sha256: str) -> str:
        return f"{name}-r{revision}-{sha256[:8]}"

    def _servers(self, name: str | None = None) -> list[_Server]:
        """Our server processes started from this state folder (of deployment ``name``)."""
        found = []
        prefix = str(self.run) + os.sep
        proc = Path("/proc")
        if not proc.is_dir():
            return []
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            cmd = cmdline(int(entry.name))
            if not cmd or _SERVER_MODULE.encode() not in cmd:
                continue
            args = cmd.decode(errors="replace").split("\0")
            settings = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--settings"), "")
            owner = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--owner"), None)
            if not settings.startswith(prefix) or not settings.endswith(".settings"):
                continue
            server = _Server(int(entry.name), Path(settings).name[:-len(".settings")], owner)
            if alive(server.pid) and (name is None or server.name == name):
                found.append(server)
        return found

    def _state(self, stem: str) -> dict[str, Any] | None:
        with contextlib.suppress(OSError, ValueError):
            state: dict[str, Any] = json.loads((self.run / f"{stem}.json").read_text())
            return state
        return None

    def _remove_run_files(self, stem: str) -> None:
        for suffix in (".json", ".launch.json", ".settings"):
            with contextlib.suppress(OSError):
                (self.run / f"{stem}{suffix}").unlink()

    def _stop_server(self, pid: int | None, stem: str | None = None, grace: float = 15.0) -> None:
        if pid:
            _stop(int(pid), grace)
        if stem:
            self._remove_run_files(stem)

    def _remove_stale_run_files(self) -> None:
        """Run files whose server no longer runs are removed (a server killed by SIGKILL leaves its own)."""
        if not self.run.is_dir():
            return
        running = {s.stem for s in self._servers()}
        for path in self.run.iterdir():
            stem = path.name.split(".", 1)[0] if not path.name.startswith(".") else None
            if stem is None or stem in running:
                continue
            if path.name.endswith(".settings") and time.time() - _mtime(path) < 60:
                continue  # a server being spawned right now has not read it yet
            with contextlib.suppress(OSError):
                path.unlink()

    def _orphans(self, name: str, keep: set[int]) -> list[_Server]:
        """Servers of ``name`` not in ``keep`` whose deploying process died and that are not warm by design."""
        out = []
        for server in self._servers(name):
            if server.pid in keep:
                continue
            state = self._state(server.stem) or {}
            if state.get("leaving") and not state.get("joined"):
                continue  # left the port on purpose and exits by itself (keep_warm_s)
            if _owner_dead(server.owner):
                out.append(server)
        return out

    def _stop_orphans(self, name: str, keep: set[int]) -> None:
        for server in self._orphans(name, keep):
            self._stop_server(server.pid, server.stem, grace=5)

    def _kept_paths(self, sha256: str, suffix: str) -> tuple[Path, Path]:
        folder = self.dir / "artifacts" / sha256
        return folder / ("model" + suffix), folder / "schema.json"

    def _keep(self, artifact: Artifact, name: str) -> tuple[Path, Path]:
        """Copy the model (and its schema) to the artifact store so rollback can re-serve it.

        A kept copy whose digest is no longer the recorded one (replaced on disk) is copied again
        from ``artifact``, the original."""
        suffix = "".join(artifact.path.suffixes) if artifact.path.is_file() else ""
        model, schema = self._kept_paths(artifact.sha256, suffix)
        model.parent.mkdir(parents=True, exist_ok=True)
        if model.exists() and sha256_of(model) != artifact.sha256:
            self.context.progress(f"the kept copy {model} does not match sha256 {artifact.sha256}; copying it again")
            if model.is_dir():
                shutil.rmtree(model)
            else:
                model.unlink()
        if not model.exists():
            atomic_copy(artifact.path, model)
        atomic_write(schema, json.dumps(artifact.schema.to_dict(), indent=1).encode())
        users = self.dir / "artifacts" / f"{artifact.sha256}.users"
        known = set(users.read_text().split()) if users.exists() else set()
        if name not in known:
            atomic_write(users, "\n".join(sorted(known | {name})).encode() + b"\n")
        return model, schema

    def _bundle(self, model: Path) -> tuple[str | None, str, dict[str, str]]:
        """The mode of the bundle folder ``model`` (None for a model file), the interpreter to serve
        it with (its requirements' environment, built now when not cached) and the child's extra variables."""
        python = self.settings.python or sys.executable
        if not (model.is_dir() and (model / MANIFEST).is_file()):
            return None, python, {}
        import yaml

        manifest = yaml.safe_load((model / MANIFEST).read_text(encoding="utf-8")) or {}
        if manifest.get("requirements"):
            from deploykit_plugins.local.environments import cache_root, serving_python

            python = serving_python(model / manifest["requirements"], root=cache_root(self.settings.env_cache),
                                    timeout=self.context.timeout, progress=self.context.progress)
        return str(manifest.get("mode") or "sync"), python, {"PYTHONDONTWRITEBYTECODE": "1"}

    def _start(self, name: str, revision: int, model: Path, schema: Path, sha256: str, port: int,
               replacing: bool) -> Deployment:
        host = self.settings.host
        bundle, python, variables = self._bundle(model)  # before anything starts: pip may refuse the requirements
        if not replacing:
            try:
                bind(host, port).close()
            except OSError as exc:
                code = "in use by another process" if exc.errno == errno.EADDRINUSE else exc.strerror
                raise DeploymentError(
                    f"port {port} on {host} is {code}; set local.port in credentials.yaml to a free port, "
                    "or 0 to let deploykit pick one"
                ) from None
        logs = self.dir / "logs"
        self.run.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        stem = self._stem(name, revision, sha256)
        for leftover in self._servers(name):  # the same (name, revision, model) from an interrupted run
            if leftover.stem == stem:
                self._stop_server(leftover.pid, leftover.stem, grace=5)
        state_file = self.run / f"{stem}.json"
        state_file.unlink(missing_ok=True)
        log = logs / f"{name}.log"
        # One settings document, readable by this user only, holds everything (the token too):
        # nothing secret goes on the command line or into the environment.
        document = self.run / f"{stem}.settings"
        settings = self.settings.model_copy(update={"port": port})
        write_document(document, ServerDocument(model=str(model), schema_file=str(schema), name=name,
                                                revision=revision, reuse_port=True, state_file=str(state_file),
                                                public="wait", model_sha256=sha256, log_file=str(log),
                                                settings=settings))
        cmd = [python, "-m", _SERVER_MODULE, "--settings", str(document), "--owner", _owner_token()]
        proc = spawn(cmd, child_environment(variables), log)
        ids = {"pid": proc.pid, "port": port, "host": host, "model_file": str(model), "schema_file": str(schema),
               "state_file": str(state_file), "log": str(log), "run": stem}
        if bundle is not None:
            ids["bundle"] = bundle
        self.context.note(**ids)
        atomic_write(self.run / f"{stem}.launch.json", json.dumps({**ids, "owner": _owner_token()}).encode())
        crash_point(f"{self._action}:spawned")
        url = base_url(self._scheme, host, port)
        return Deployment(name=name, target="local", revision=revision, status="starting", url=url,
                          model_sha256=sha256, ids=ids)

    # -- Deployer -------------------------------------------------------------------------
    def deploy(self, artifact: Artifact, name: str) -> Deployment:
        """Start a server for ``artifact`` on the configured port (or a free one)."""
        self._action = "create"
        self._stop_orphans(name, keep=set())
        self._bundle(artifact.path)  # a bundle's environment first: requirements pip refuses leave nothing kept
        model, schema = self._keep(artifact, name)
        port = self.settings.port or free_port(self.settings.host)
        return self._start(name, 1, model, schema, artifact.sha256, port, replacing=False)

    def update(self, current: Deployment, artifact: Artifact) -> Deployment:
        """Start the new revision on a private port; ``wait_ready`` smoke-tests it and switches."""
        self._action = "update"
        self._stop_orphans(current.name, keep={int(current.ids.get("pid") or 0)})
        self._bundle(artifact.path)
        model, schema = self._keep(artifact, current.name)
        revision = max(current.revisions) + 1
        return self._replace(current, model, schema, artifact.sha256, revision)

    def _replace(self, current: Deployment, model: Path, schema: Path, sha256: str, revision: int) -> Deployment:
        port = int(current.ids.get("port") or self.settings.port or free_port(self.settings.host))
        old_pid = int(current.ids.get("pid") or 0)
        running = bool(old_pid) and _is_our_server(old_pid)
        new = self._start(current.name, revision, model, schema, sha256, port, replacing=running)
        if running:
            new.ids["replaces_pid"] = old_pid
            new.ids["replaces_run"] = current.ids.get("run")
        return new

    def rollback(self, current: Deployment, previous: Deployment) -> Deployment:
        """Serve ``previous`` again: keep it when it never stopped serving (a failed update), make its
        warm server join again when it still runs, else start its kept model file (digest checked)."""
        self._action = "rollback"
        old_pid = int(previous.ids.get("pid") or 0)
        previous_runs = bool(old_pid) and _is_our_server(old_pid)
        if current.ids.get("replaces_pid") == old_pid and previous_runs:
            self._stop_server(current.ids.get("pid"), current.ids.get("run"))
            kept = Deployment.from_dict(previous.name, previous.target, previous.to_dict())
            kept.status = "starting"
            return kept
        if previous_runs and previous.ids.get("run"):
            state = self._state(str(previous.ids["run"])) or {}
            if state.get("model_sha256") == previous.model_sha256 and state.get("pid") == old_pid:
                warm = Deployment.from_dict(previous.name, previous.target, previous.to_dict())
                warm.status, warm.url = "starting", current.url
                warm.ids["replaces_pid"], warm.ids["replaces_run"] = current.ids.get("pid"), current.ids.get("run")
                self.context.note(pid=old_pid, run=previous.ids["run"])
                return warm
        model = Path(previous.ids.get("model_file", ""))
        schema = Path(previous.ids.get("schema_file", ""))
        if not model.exists():
            raise DeploymentError(
                f"revision {previous.revision}'s model file {str(model)!r} is gone from the artifact store; "
                f"deploy that model file again instead of rolling back"
            )
        actual = sha256_of(model)
        if previous.model_sha256 and actual != previous.model_sha256:
            raise DeploymentError(
                f"revision {previous.revision}'s kept model file {str(model)!r} has sha256 {actual}, but revision "
                f"{previous.revision} was recorded with sha256 {previous.model_sha256}: it was changed on disk, so "
                f"it is not rolled back to; revision {current.revision} keeps serving. Deploy the original model "
                "file again (that repairs the kept copy)")
        return self._replace(current, model, schema, previous.model_sha256 or actual, previous.revision)

    def wait_ready(self, deployment: Deployment, timeout: float) -> Deployment:
        """Wait for the new server's health socket, smoke-test it on its private port, make it join
        the public port, then stop (or, with ``keep_warm_s``, park) the server it replaces."""
        pid = int(deployment.ids["pid"])
        state_file = Path(deployment.ids["state_file"])
        what = f"local server {deployment.name!r} (pid {pid})"

        def health() -> dict[str, Any] | None:
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
                url = base_url(self._scheme, "127.0.0.1", state["health_port"]) + "/health"
                status, body = request_json("GET", url, timeout=2, retries=0, verify=False)
            except ScoringError:
                return None
            return state if status == 200 and body.get("pid") == pid else None

        state: dict[str, Any] = {}
        try:
            state = wait_until(health, timeout=timeout, what=what, progress=self.context.progress, most=0.25)
            if not state.get("joined"):
                self._private_smoke(deployment, state)
                crash_point(f"{self._action}:private-smoke-tested")
                os.kill(pid, signal.SIGUSR1)

                def joined() -> dict[str, Any] | None:
                    now = health()
                    return now if now is not None and now.get("joined") else None

                state = wait_until(joined, timeout=timeout, what=f"{what} to join the public port",
                                   progress=self.context.progress, most=0.05)
                crash_point(f"{self._action}:joined")
        except DeploymentError:
            # a new server that never joined is stopped; a warm one that failed to re-join is left to
            # exit by itself (keep_warm_s), never killed while it may still be needed
            if not state.get("joined") and not (deployment.ids.get("replaces_pid") and
                                                deployment.ids.get("run") and self._is_warm(deployment)):
                self._stop_server(pid, deployment.ids.get("run"), grace=2)  # never leave a half-started server
            raise
        deployment.ids["health_port"] = state["health_port"]
        deployment.ids.pop("private_port", None)
        old, old_run = deployment.ids.pop("replaces_pid", None), deployment.ids.pop("replaces_run", None)
        if old and int(old) != pid:
            self._retire(int(old), old_run)
        crash_point(f"{self._action}:switched")
        deployment.status = "ready"
        if self._action == "update":
            self._prune(deployment)
        return deployment

    def _is_warm(self, deployment: Deployment) -> bool:
        """True for a rollback re-joining a server that had served before (its run file says it joined once)."""
        return int((self._state(str(deployment.ids.get("run"))) or {}).get("joins", 0)) > 0

    def _private_smoke(self, deployment: Deployment, state: dict[str, Any]) -> None:
        """Score the schema's example row on the new server's private port (no live client there)."""
        import pandas as pd

        if deployment.ids.get("bundle") == "async":
            return  # scored by jobs, not by /predict
        try:
            example = json.loads(Path(deployment.ids["schema_file"]).read_text()).get("example")
        except (OSError, ValueError, KeyError):
            example = None
        if not example:
            return
        url = base_url(self._scheme, "127.0.0.1", state["private_port"])
        private = Deployment(name=deployment.name, target="local", url=url,
                             ids={k: v for k, v in deployment.ids.items() if k == "bundle"})
        try:
            predictions = self._score(private, pd.DataFrame([example]), verify=False)
        except ScoringError as exc:
            raise SmokeTestError(f"the example row did not score on the new revision's private port "
                                 f"before it joined the public port ({exc}); the serving revision was not touched") \
                from None
        if len(predictions) != 1:
            raise SmokeTestError(f"the example row scored {len(predictions)} predictions instead of 1 on the new "
                                 "revision's private port; the serving revision was not touched")

    def _retire(self, pid: int, run: str | None) -> None:
        """The replaced server: park it warm off the public port (``keep_warm_s``) or stop it."""
        if not _is_our_server(pid):
            return
        if self.settings.keep_warm_s > 0:
            os.kill(pid, signal.SIGUSR2)
            return
        self._stop_server(pid, run)

    def _prune(self, deployment: Deployment) -> None:
        """Remove kept models of revisions older than the newest ``keep_revisions`` of the updated
        ``deployment``. The revision it replaces (the last history entry) is always kept: the
        lifecycle's smoke test comes after this, and its automatic rollback must be able to start it."""
        entries = {int(e["revision"]): e for e in deployment.history if "revision" in e}
        entries[deployment.revision] = {"model_sha256": deployment.model_sha256}
        newest = sorted(entries, reverse=True)[:self.settings.keep_revisions]
        keep = {entries[r].get("model_sha256") for r in newest}
        if deployment.history:
            keep.add(deployment.history[-1].get("model_sha256"))
        for revision, entry in entries.items():
            sha = entry.get("model_sha256")
            if revision in newest or not sha or sha in keep:
                continue
            users = self.dir / "artifacts" / f"{sha}.users"
            left = set(users.read_text().split()) - {deployment.name} if users.exists() else set()
            if left:
                atomic_write(users, "\n".join(sorted(left)).encode() + b"\n")
                continue
            shutil.rmtree(self.dir / "artifacts" / sha, ignore_errors=True)
            users.unlink(missing_ok=True)

    def delete(self, current: Deployment) -> None:
        """Stop every server process of the deployment (orphans of interrupted runs too) and remove its run files."""
        if current.ids.get("pid"):
            self._stop_server(int(current.ids["pid"]), current.ids.get("run"))
        if current.ids.get("replaces_pid"):
            self._stop_server(int(current.ids["replaces_pid"]), current.ids.get("replaces_run"))
        for server in self._servers(current.name):
            self._stop_server(server.pid, server.stem)
        with contextlib.suppress(OSError):
            Path(current.ids.get("state_file", "")).unlink()
        if self.run.is_dir():
            for path in self.run.iterdir():
                match = _RUN_FILE.match(path.name.split(".", 1)[0])
                if match and match["name"] == current.name:
                    path.unlink(missing_ok=True)

    def get(self, current: Deployment) -> Deployment:
        """Status from the process and its /health: ready, unhealthy or stopped; ``ids["unhealthy"]``
        says why when it is not ready (dead pid and its log's last line, digest mismatch...)."""
        pid = current.ids.get("pid")
        self._stop_orphans(current.name, keep={int(pid or 0)})
        refreshed = Deployment.from_dict(current.name, current.target, current.to_dict())
        if not pid or not _is_our_server(int(pid)):
            refreshed.status = "stopped"
            last = log_lines(current.ids.get("log"))
            refreshed.ids["unhealthy"] = f"the server process {pid} is not running" + \
                (f"; its log ends with: {last[-1]}" if last else "")
            return refreshed
        try:
            status, body = request_json("GET", f"{current.url}/health", timeout=5, retries=1, verify=self._verify)
        except ScoringError as exc:
            status, body = 0, {"error": str(exc)}
        served = body.get("model_sha256") if isinstance(body, dict) else None
        ok = status == 200 and served == current.model_sha256
        refreshed.status = "ready" if ok else "unhealthy"
        if not ok:
            refreshed.ids["unhealthy"] = (
                f"{current.url} serves sha256 {served}, but {current.model_sha256} is recorded" if status == 200
                else f"{current.url}/health answered {status or 'nothing'}: {body}")
        model = current.ids.get("model_file")
        kept = sha256_of(model) if ok and model and Path(model).exists() and current.model_sha256 else None
        if kept is not None and kept != current.model_sha256:
            # it still serves the model it verified at start, but nothing could start it again: say so now
            # (and make deploying the original file, same sha256, a repairing update instead of a no-op)
            refreshed.status = "unhealthy"
            refreshed.ids["unhealthy"] = (
                f"the kept model file {model} has sha256 {kept}, but revision {current.revision} was recorded with "
                f"sha256 {current.model_sha256}: it was changed on disk, so a restart or rollback to it would be "
                "refused. Deploy the original model file again (that repairs the kept copy)")
        return refreshed

    def list(self) -> list[Deployment]:
        """Servers of this metadata folder that are running now (from their run files)."""
        out = []
        for server in self._servers():
            state = self._state(server.stem)
            if state and state.get("joined"):
                out.append(Deployment(name=server.name, target="local", status="ready", revision=server.revision,
                                      url=base_url(self._scheme, self.settings.host, state["port"]), ids=state))
        return out

    def reconcile(self, operation: Any, current: Deployment | None) -> Deployment | None:
        """Settle an interrupted create/update/rollback/delete of ``operation.name``.

        The servers it started are found by the noted pid and by the deterministic run-file name
        (name, revision, sha8) on their command lines. One that joined the public port, is
        healthy and serves the planned sha256 is adopted (the server it replaced is stopped);
        every other server of the deployment that ``current`` does not use is stopped and its
        run files removed."""
        name = operation.name
        used = {int(current.ids["pid"])} if current is not None and current.ids.get("pid") else set()
        planned = str((operation.planned or {}).get("model_sha256") or "")
        noted = int(operation.ids.get("pid") or 0)
        mine = [s for s in self._servers(name) if s.pid not in used and (
            s.pid == noted or (s.revision == operation.revision and planned.startswith(s.sha8) and s.sha8))]
        started = {s.pid for s in mine}
        adopted: Deployment | None = None
        if operation.action in ("create", "update", "rollback"):
            for server in mine:
                state = self._state(server.stem) or {}
                if state.get("joined") and state.get("model_sha256") == planned and self._healthy(state, server.pid):
                    adopted = self._adopt(name, server, state, operation.revision)
                    break
        for server in self._servers(name):
            if server.pid in used and adopted is None:
                continue
            if adopted is not None and server.pid == adopted.ids["pid"]:
                continue
            if server.pid in used or server.pid in started or _owner_dead(server.owner):
                self._stop_server(server.pid, server.stem, grace=5)
        return adopted

    def _healthy(self, state: dict[str, Any], pid: int) -> bool:
        try:
            url = base_url(self._scheme, "127.0.0.1", state["health_port"]) + "/health"
            status, body = request_json("GET", url, timeout=2, retries=0, verify=False)
        except (ScoringError, KeyError):
            return False
        return status == 200 and isinstance(body, dict) and body.get("pid") == pid

    def _adopt(self, name: str, server: _Server, state: dict[str, Any], revision: int) -> Deployment:
        launch: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            launch = json.loads((self.run / f"{server.stem}.launch.json").read_text())
        ids = {k: v for k, v in launch.items() if k not in ("owner", "replaces_pid", "replaces_run")}
        ids.update(pid=server.pid, port=state["port"], host=state.get("host", self.settings.host),
                   health_port=state["health_port"], run=server.stem,
                   state_file=str(self.run / f"{server.stem}.json"))
        return Deployment(name=name, target="local", revision=revision, status="ready",
                          url=base_url(self._scheme, self.settings.host, state["port"]),
                          model_sha256=state.get("model_sha256"), ids=ids)

    # -- Scorer ---------------------------------------------------------------------------
    def score(self, deployment: Deployment, frame: Any) -> Predictions:
        """POST the rows as records to ``/predict`` and decode the answer."""
        return self._score(deployment, frame, self._verify)

    def score_payload(self, deployment: Deployment, data: Any) -> Predictions | None:
        """A scoring script's deployment takes its own JSON: ``data`` (a dict, a list, or a DataFrame
        sent as records) is posted as it is and the answer read as ``script_predictions``. None for a
        model's deployment (the lifecycle then decodes ``data`` into a table and calls ``score``)."""
        if not deployment.ids.get("bundle"):
            return None
        if type(data).__name__ == "DataFrame":
            return self._score(deployment, data, self._verify)
        if not isinstance(data, (dict, list)):
            from deploykit.errors import PayloadError

            raise PayloadError(f"{deployment.name!r} serves a scoring script, which takes JSON; got "
                               f"{type(data).__name__}: send a JSON object (or a .json file)")
        return self._post_script(deployment, data, len(data) if isinstance(data, list) else 1, self._verify)

    def _score(self, deployment: Deployment, frame: Any, verify: bool | str) -> Predictions:
        records = encode(frame, "records")
        if deployment.ids.get("bundle") is not None:
            # a script takes its own JSON: one row is sent as one object, as Neomaril's clients send it
            return self._post_script(deployment, records[0] if len(records) == 1 else records, len(records), verify)
        return Predictions.decode(self._post(deployment, records, verify))

    def _post_script(self, deployment: Deployment, data: Any, rows: int, verify: bool | str) -> Predictions:
        if deployment.ids.get("bundle") == "async":
            raise ScoringError(f"{deployment.name!r} serves an async scoring script, which scores files as jobs, "
                               f"not rows; submit the file: deploykit score {deployment.name} FILE --async", status=409)
        return script_predictions(self._post(deployment, data, verify), rows)

    def _post(self, deployment: Deployment, data: Any, verify: bool | str) -> Any:
        status, body = request_json("POST", f"{deployment.url}/predict", data, token=self._token, verify=verify)
        if status != 200:
            message = body.get("error") if isinstance(body, dict) else body
            raise ScoringError(f"{deployment.url}/predict answered {status}: {message}", status=status, body=body)
        return body

    # -- Jobs (deploykit.job.JobTarget) -----------------------------------------------------
    def jobs_endpoint(self, deployment: Deployment) -> Any:
        """Where ``deployment``'s async jobs are (``/jobs`` on its server): URL, token, TLS trust."""
        from deploykit.job import JobEndpoint

        return JobEndpoint(deployment.url or "", self._token, self._verify)


def script_predictions(answer: Any, rows: int) -> Predictions:
    """A scoring script's answer as Predictions (``Predictions.from_script``)."""
    return Predictions.from_script(answer, rows)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
