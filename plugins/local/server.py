"""Run the local server process: load the model once, bind, serve until SIGTERM.

``python -m deploykit_plugins.local.server --model PATH --port P [--state-file F]``. The public
socket is bound with SO_REUSEPORT so an update can start the next revision on the same port
before the old process stops; a private health socket on 127.0.0.1 lets the deployer check
the new process itself. The token comes from the environment (DEPLOYKIT_SERVER_TOKEN), never argv.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

__all__ = ["bind", "main", "serve"]

TOKEN_ENV = "DEPLOYKIT_SERVER_TOKEN"


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket; OSError (e.g. EADDRINUSE) propagates to the caller."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(artifact: Any, config: Any, sockets: list[socket.socket], *, certfile: str | None = None,
          keyfile: str | None = None, on_started: Any = None) -> None:
    """Serve ``artifact`` on already-bound ``sockets`` with uvicorn until a signal stops it."""
    import asyncio

    import uvicorn

    from deploykit_plugins.local.app import create_app

    app = create_app(artifact, config)
    uv_config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=10,
                               ssl_certfile=certfile, ssl_keyfile=keyfile, lifespan="off")
    server = uvicorn.Server(uv_config)

    async def run() -> None:
        task = asyncio.ensure_future(server.serve(sockets=sockets))
        while not server.started and not task.done():
            await asyncio.sleep(0.005)
        if server.started and on_started is not None:
            on_started()
        await task

    asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the detached server process."""
    from deploykit.artifact import load_artifact
    from deploykit.errors import DeployKitError
    from deploykit_plugins.local.app import ServerConfig

    parser = argparse.ArgumentParser(prog="deploykit-local-server")
    parser.add_argument("--model", required=True)
    parser.add_argument("--schema")
    parser.add_argument("--name", default="model")
    parser.add_argument("--revision", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--reuse-port", action="store_true")
    parser.add_argument("--state-file")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--max-body-bytes", type=int, default=32 * 1024 * 1024)
    args = parser.parse_args(argv)
    try:
        artifact = load_artifact(args.model, args.schema)
    except DeployKitError as exc:
        print(f"deploykit server: {exc}", file=sys.stderr)
        return 1
    try:
        public = bind(args.host, args.port, args.reuse_port)
    except OSError as exc:
        print(f"deploykit server: cannot listen on {args.host}:{args.port} ({exc.strerror}); "
              "choose another port (local.port) or stop what uses it", file=sys.stderr)
        return 3
    health = bind("127.0.0.1", 0)
    config = ServerConfig(args.name, args.revision, os.environ.pop(TOKEN_ENV, None) or None, args.max_body_bytes)

    def started() -> None:
        if args.state_file:
            state = {"pid": os.getpid(), "port": public.getsockname()[1], "health_port": health.getsockname()[1]}
            tmp = Path(args.state_file + ".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, args.state_file)
        print(f"deploykit server: {args.name} revision {args.revision} serving on "
              f"{args.host}:{public.getsockname()[1]} (pid {os.getpid()})", file=sys.stderr, flush=True)

    serve(artifact, config, [public, health], certfile=args.certfile, keyfile=args.keyfile, on_started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
