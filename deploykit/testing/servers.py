"""Test servers: serve an ASGI app on a real socket in a background thread, for tests (yours included)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["running"]


@contextlib.contextmanager
def running(app: Any, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0, http: Any = "auto") -> Iterator[str]:
    """Serve ``app`` (e.g. ``create_app(artifact, config)``) with uvicorn in a background thread
    on a real socket (port 0: a free one) and yield its base URL; for tests, yours included.
    ``http`` is uvicorn's HTTP protocol (a name or a class, e.g. the local server's own)."""
    import asyncio
    import threading

    import uvicorn

    sock = _bind(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           http=http, timeout_graceful_shutdown=5))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True,
                              name="deploykit-test-server")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    if not server.started:
        server.should_exit = True
        where = f"{host}:{sock.getsockname()[1]}"
        sock.close()
        raise RuntimeError(f"the test server on {where} did not start within {timeout} s; see the log above")
    try:
        yield f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets on Linux
    sock.bind((host, port))
    sock.listen(128)
    return sock
