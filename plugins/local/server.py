"""Run the local server process: check and load the model once, bind, serve until SIGTERM.

``python -m deploykit_plugins.local.server --settings FILE``: FILE is the one JSON document
(``settings.ServerDocument``, mode 0600, removed once read) holding the model, its recorded
sha256, its name and revision and every ``local:`` setting; the token is never on argv or in
the environment. The model file's sha256 is compared (``hmac.compare_digest``) with the
recorded one before it is unpickled: a mismatch is refused, naming both digests. A scoring
script's bundle folder is checked the same way (the digest covers every file in it), then its
script is imported here, before any socket is bound (``ScriptModel.load``: the env file's
variables are read from its 0600 file by this process, never passed in), so a script that
fails to import fails the start with its message.

Sockets: a private listener on 127.0.0.1 (the deployer's smoke test scores it before any live
client can reach the revision) and a health socket. With ``public = "bind"`` (``deploykit
serve``, older callers) the public port is bound at start with SO_REUSEPORT; with ``"wait"``
(deploys) the process joins the public port on SIGUSR1 and leaves it on SIGUSR2, handing the
one listening socket over between revisions (``handover``). The run file (``state_file``)
says which ports it serves and whether it has joined. With ``workers`` > 1 the process loads
the model, builds the app and warms it up, then forks the other workers (``workers``).
Output goes to ``log_file``, rotated at ``log_max_bytes`` with ``log_backups`` old files.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploykit.files import atomic_write
from deploykit.process import stop
from deploykit_plugins.local.sockets import bind, run_uvicorn
from deploykit_plugins.local.workers import fork_workers, wait_ready

__all__ = ["bind", "check_digest", "main", "serve"]

log = logging.getLogger("deploykit.server")


def serve(artifact: Any, config: Any, sockets: list[socket.socket], *, certfile: str | None = None,
          keyfile: str | None = None, on_started: Any = None, workers: int = 1,
          public: tuple[str, int] | None = None, on_change: Callable[[Any], None] | None = None,
          linger: float = 0.0) -> None:
    """Serve ``artifact`` on already-bound ``sockets`` (public first, then the health socket)
    with uvicorn until a signal stops it; ``workers`` > 1 forks extra serving processes.

    With ``public`` (host, port), ``sockets[0]`` is a private listener and the process joins
    ``public`` on SIGUSR1 and leaves it on SIGUSR2 (staying up ``linger`` s); ``on_change`` is
    called with the ``handover.PublicPort`` whenever that changes. Without it, ``sockets[0]`` is
    the public listener itself (adopted, so it is handed over to the next revision)."""
    import asyncio
    import gc

    from deploykit_plugins.local.app import create_app
    from deploykit_plugins.local.handover import PublicPort

    extra = max(0, workers - 1) if len(sockets) >= 2 and hasattr(os, "fork") else 0
    metrics_dir = None
    if extra and getattr(config, "metrics", False) and getattr(config, "metrics_dir", None) is None:
        import tempfile

        metrics_dir = config.metrics_dir = tempfile.mkdtemp(prefix="deploykit-metrics-")  # fresh: no stale counts
    app = create_app(artifact, config)
    gc.collect()
    gc.freeze()  # the model and app are long-lived: keep them out of every later GC pass
    pids: list[int] = []
    ready_r = -1
    channels: list[socket.socket] = []
    if extra:
        pids, ready_r, channels = fork_workers(app, sockets[0], sockets[1], extra, certfile, keyfile,
                                               wait=public is not None)
    port: list[PublicPort] = []

    def serving(server: Any, loop: Any) -> None:
        def changed() -> None:
            if on_change is not None:
                on_change(port[0])

        if public is None:
            host, number = sockets[0].getsockname()[:2]
            port.append(PublicPort(server, loop, host, number, channels, changed, _say))
            port[0].adopt(sockets[0], server.servers[0])
            return
        port.append(PublicPort(server, loop, public[0], public[1], channels, changed, _say))
        loop.add_signal_handler(signal.SIGUSR1, lambda: asyncio.ensure_future(port[0].join()))
        loop.add_signal_handler(signal.SIGUSR2, lambda: port[0].leave(linger))

    def started() -> None:
        if extra:
            wait_ready(ready_r, extra, pids)
        if on_started is not None:
            on_started()

    # uvicorn re-raises the stopping signal after its graceful shutdown; catch it here so the
    # workers are stopped (and reaped) before this process exits.
    stopping: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: stopping.append(s)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        run_uvicorn(app, sockets, certfile, keyfile, started, serving)
    finally:
        if port:
            port[0].close()
        if pids:
            stop(pids)
        if metrics_dir is not None:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say(message: str) -> None:
    log.warning("deploykit server: %s", message)


def check_digest(model: Path, expected: str) -> None:
    """Refuse (ArtifactError) a model file whose sha256 is not ``expected``, in constant time."""
    from deploykit.artifact import sha256_of
    from deploykit.errors import ArtifactError

    actual = sha256_of(model)
    if not hmac.compare_digest(actual.encode(), expected.encode()):
        what = "bundle folder" if model.is_dir() else "model file"
        raise ArtifactError(
            f"the {what} {str(model)!r} has sha256 {actual}, but the recorded sha256 is {expected}: it was "
            f"changed after it was deployed; refusing to load it. Deploy the original {what} again")


def approved_types(model: Path) -> list[str]:
    """The types a digest-checked skops file holds that skops does not trust by default (none for
    other files): the deploying process loaded the file only after the user listed each of them
    (``--trust``), and the recorded sha256 just checked pins that very file, so the server trusts
    the same list without being told it again."""
    from deploykit.artifact import is_skops_file, skops_untrusted_types

    return skops_untrusted_types(model) if is_skops_file(model) else []


class _LogStream:
    """sys.stdout/sys.stderr of the server: each line goes to the rotating log handler."""

    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler
        self.buffer = ""

    def write(self, text: str) -> int:
        self.buffer += text
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            self.handler.emit(logging.makeLogRecord({"msg": line, "levelno": logging.INFO, "levelname": "INFO"}))
        return len(text)

    def flush(self) -> None:
        self.handler.flush()

    def isatty(self) -> bool:
        return False


def _rotate_logs(path: str, max_bytes: int, backups: int) -> None:
    """Send everything this process logs or prints to ``path``, rotated at ``max_bytes``.

    The deployer started the process with stdout/stderr appended to ``path`` (so a crash before
    this point is still in the log); from here on the handler writes it, and the inherited
    descriptors point at /dev/null, so nothing keeps writing to a rotated-away file."""
    from logging.handlers import RotatingFileHandler

    handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    sys.stdout = sys.stderr = _LogStream(handler)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the detached server process."""
    from pydantic import ValidationError

    from deploykit.artifact import load_artifact
    from deploykit.errors import DeployKitError
    from deploykit_plugins.local.app import ServerConfig
    from deploykit_plugins.local.settings import read_document

    parser = argparse.ArgumentParser(prog="deploykit-local-server")
    parser.add_argument("--settings", required=True, help="the server's settings document (JSON)")
    parser.add_argument("--owner", default=None, help="the deploying process (pid:start), for reconcile")
    args = parser.parse_args(argv)
    try:
        doc = read_document(Path(args.settings))
    except (OSError, ValidationError) as exc:
        print(f"deploykit server: cannot read the settings document {args.settings} ({exc}); "
              "fix the local: settings in credentials.yaml", file=sys.stderr)
        return 2
    settings = doc.settings
    if doc.log_file:
        _rotate_logs(doc.log_file, settings.log_max_bytes, settings.log_backups)
    try:
        trusted: list[str] = []
        if doc.model_sha256:
            check_digest(Path(doc.model), doc.model_sha256)
            trusted = approved_types(Path(doc.model))
        artifact = load_artifact(doc.model, doc.schema_file, trusted_types=trusted)
        if artifact.flavor == "script":
            sys.dont_write_bytecode = True  # the digest-checked folder stays exactly as deployed
            artifact.model.load()
    except DeployKitError as exc:
        print(f"deploykit server: {exc}", file=sys.stderr, flush=True)
        return 1
    waiting = doc.public == "wait"
    try:
        first = bind("127.0.0.1", 0) if waiting else \
            bind(settings.host, settings.port, doc.reuse_port or settings.workers > 1)
    except OSError as exc:
        print(f"deploykit server: cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
              "choose another port (local.port) or stop what uses it", file=sys.stderr, flush=True)
        return 3
    health = bind("127.0.0.1", 0)
    config = ServerConfig.from_settings(settings, doc.name, doc.revision,
                                        str(Path(doc.log_file).parent.parent) if doc.log_file else None)
    public_state: dict[str, Any] = {} if waiting else {"joined": True, "port": first.getsockname()[1]}
    started_flag: list[bool] = []

    def write_state() -> None:
        if not doc.state_file or not started_flag:
            return
        state = {"pid": os.getpid(), "port": settings.port if waiting else first.getsockname()[1],
                 "host": settings.host, "private_port": first.getsockname()[1] if waiting else None,
                 "health_port": health.getsockname()[1], "workers": settings.workers, "name": doc.name,
                 "revision": doc.revision, "model_sha256": artifact.sha256, "joined": False, **public_state}
        atomic_write(Path(doc.state_file), json.dumps(state).encode(), mode=0o600)

    def changed(port: Any) -> None:
        public_state.update(port.state())
        public_state["port"] = port.port
        write_state()

    def started() -> None:
        started_flag.append(True)
        write_state()
        where = f"127.0.0.1:{first.getsockname()[1]} (private; joins {settings.host}:{settings.port} when told)" \
            if waiting else f"{settings.host}:{first.getsockname()[1]}"
        print(f"deploykit server: {doc.name} revision {doc.revision} serving on {where} "
              f"(pid {os.getpid()}, {settings.workers} worker(s))", file=sys.stderr, flush=True)

    serve(artifact, config, [first, health], certfile=settings.certfile,
          keyfile=settings.keyfile or settings.certfile, on_started=started, workers=settings.workers,
          public=(settings.host, settings.port) if waiting else None, on_change=changed,
          linger=settings.keep_warm_s)
    if doc.state_file:
        Path(doc.state_file).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
