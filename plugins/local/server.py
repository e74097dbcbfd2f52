"""Run the local server process: load the model once, bind, serve until SIGTERM.

``python -m deploykit_plugins.local.server --settings FILE``: FILE is the one JSON document
(``settings.ServerDocument``, mode 0600, removed once read) holding the model, its name and
revision and every ``local:`` setting; the token is never on argv or in the environment.
The public socket is bound with SO_REUSEPORT so an update can start the next revision on the
same port before the old process stops; a private health socket on 127.0.0.1 lets the deployer
check the new process itself. With ``workers`` > 1 the process loads the model, builds the app
and warms it up, then forks the other workers (``workers``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from deploykit_plugins.local.sockets import bind, run_uvicorn
from deploykit_plugins.local.workers import fork_workers, stop_workers, wait_ready

__all__ = ["bind", "main", "serve"]


def serve(artifact: Any, config: Any, sockets: list[socket.socket], *, certfile: str | None = None,
          keyfile: str | None = None, on_started: Any = None, workers: int = 1) -> None:
    """Serve ``artifact`` on already-bound ``sockets`` (public first, then the health socket)
    with uvicorn until a signal stops it; ``workers`` > 1 forks extra serving processes."""
    import gc

    from deploykit_plugins.local.app import create_app

    app = create_app(artifact, config)
    gc.collect()
    gc.freeze()  # the model and app are long-lived: keep them out of every later GC pass
    extra = max(0, workers - 1) if len(sockets) >= 2 and hasattr(os, "fork") else 0
    pids: list[int] = []
    ready_r = -1
    if extra:
        pids, ready_r = fork_workers(app, sockets[0], sockets[1], extra, certfile, keyfile)

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
        run_uvicorn(app, sockets, certfile, keyfile, started)
    finally:
        if pids:
            stop_workers(pids)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the detached server process."""
    from deploykit_plugins.local.app import ServerConfig
    from deploykit_plugins.local.settings import read_document
    from pydantic import ValidationError

    from deploykit.artifact import load_artifact
    from deploykit.errors import DeployKitError

    parser = argparse.ArgumentParser(prog="deploykit-local-server")
    parser.add_argument("--settings", required=True, help="the server's settings document (JSON)")
    args = parser.parse_args(argv)
    try:
        doc = read_document(Path(args.settings))
    except (OSError, ValidationError) as exc:
        print(f"deploykit server: cannot read the settings document {args.settings} ({exc}); "
              "fix the local: settings in credentials.yaml", file=sys.stderr)
        return 2
    settings = doc.settings
    try:
        artifact = load_artifact(doc.model, doc.schema_file)
    except DeployKitError as exc:
        print(f"deploykit server: {exc}", file=sys.stderr)
        return 1
    try:
        public = bind(settings.host, settings.port, doc.reuse_port or settings.workers > 1)
    except OSError as exc:
        print(f"deploykit server: cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
              "choose another port (local.port) or stop what uses it", file=sys.stderr)
        return 3
    health = bind("127.0.0.1", 0)
    config = ServerConfig.from_settings(settings, doc.name, doc.revision)

    def started() -> None:
        if doc.state_file:
            state = {"pid": os.getpid(), "port": public.getsockname()[1], "health_port": health.getsockname()[1],
                     "workers": settings.workers}
            tmp = Path(doc.state_file + ".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, doc.state_file)
        print(f"deploykit server: {doc.name} revision {doc.revision} serving on "
              f"{settings.host}:{public.getsockname()[1]} (pid {os.getpid()}, {settings.workers} worker(s))",
              file=sys.stderr, flush=True)

    serve(artifact, config, [public, health], certfile=settings.certfile,
          keyfile=settings.keyfile or settings.certfile, on_started=started, workers=settings.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
