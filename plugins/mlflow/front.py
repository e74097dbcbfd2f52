"""The stable front door of an MLflow deployment: a TCP relay from one fixed port to the current scoring server.

``python -m deploykit_plugins.mlflow.front --host H --port P --backend-file F --state-file S``

MLflow's scoring server (``mlflow models serve``) binds its own port and cannot share it, so
an update has to start the next revision on another port. This process keeps the URL users
know: it listens on the deployment's port and relays every new connection to the port named
in ``--backend-file`` (JSON ``{"host": ..., "port": ...}``), re-read whenever the file changes.
The deployer switches revisions by atomically replacing that file once the new server is
healthy; connections already open finish on the old server, which is then stopped gracefully.
A connection that meets a backend which just went away re-reads the file and tries again,
so no request is refused during the switch. Stdlib only: it starts in tens of milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["Backend", "main", "relay"]

_CHUNK = 1 << 16
#: How long a new connection keeps trying to reach a backend before it is closed.
CONNECT_PATIENCE = 15.0


class Backend:
    """The current backend address, read from a JSON file and re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self.host = "127.0.0.1"
        self.port = 0

    def current(self) -> tuple[str, int]:
        """(host, port) of the backend the file names now."""
        try:
            st = self.path.stat()
        except OSError:
            return self.host, self.port
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                data = json.loads(self.path.read_text())
                self.host, self.port = str(data.get("host", "127.0.0.1")), int(data["port"])
                self._stamp = stamp
        return self.host, self.port


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _connect(backend: Backend) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    deadline = time.monotonic() + CONNECT_PATIENCE
    delay = 0.01
    while True:
        host, port = backend.current()
        if port:
            try:
                return await asyncio.open_connection(host, port)
            except OSError:
                pass
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, backend: Backend) -> None:
    """Relay one client connection to the current backend, both directions, until both sides close."""
    sock = client_writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    upstream = await _connect(backend)
    if upstream is None:
        client_writer.close()
        return
    up_reader, up_writer = upstream
    up_sock = up_writer.get_extra_info("socket")
    if up_sock is not None:
        with contextlib.suppress(OSError):
            up_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    upstream_task = asyncio.ensure_future(_pipe(client_reader, up_writer))
    try:
        # The exchange is over when the server side ends (an HTTP server closes idle keep-alive
        # connections when it stops): then the client's side is closed too, even if it sent nothing.
        await _pipe(up_reader, client_writer)
    finally:
        upstream_task.cancel()
        for w in (up_writer, client_writer):
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()


async def _serve(sock: socket.socket, backend: Backend, state_file: str | None, grace: float) -> None:
    active: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            active.add(task)
        try:
            await relay(reader, writer, backend)
        finally:
            if task is not None:
                active.discard(task)

    server = await asyncio.start_server(handle, sock=sock, backlog=2048)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if state_file:
        from deploykit.files import atomic_write

        atomic_write(Path(state_file), json.dumps({"pid": os.getpid(), "port": sock.getsockname()[1]}).encode())
    print(f"deploykit mlflow front: pid {os.getpid()} relaying {sock.getsockname()[0]}:{sock.getsockname()[1]} "
          f"to the backend named in {backend.path}", file=sys.stderr, flush=True)
    await stop.wait()
    server.close()
    if active:
        await asyncio.wait(list(active), timeout=grace)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the detached relay process; exit 3 when the port cannot be bound."""
    parser = argparse.ArgumentParser(prog="deploykit-mlflow-front")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-file", required=True)
    parser.add_argument("--state-file")
    parser.add_argument("--grace", type=float, default=10.0)
    args = parser.parse_args(argv)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"deploykit mlflow front: cannot listen on {args.host}:{args.port} ({exc.strerror}); "
              "set mlflow.port to a free port, or 0 to let deploykit pick one", file=sys.stderr)
        return 3
    sock.listen(2048)
    sock.setblocking(False)
    asyncio.run(_serve(sock, Backend(Path(args.backend_file)), args.state_file, args.grace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
