"""Sockets and the HTTP protocol: binding listeners, uvicorn's protocol with TCP_NODELAY and a gentle
keep-alive drain, and running uvicorn on already-bound sockets.

Every accepted connection gets TCP_NODELAY: uvicorn leaves Nagle's algorithm on for pre-bound
sockets, which adds ~40 ms to keep-alive requests (uvicorn issue 3149). On shutdown, idle
keep-alive connections are not cut under a client's next request: it is answered with
``Connection: close`` (see IDLE_GRACE_S).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

__all__ = ["IDLE_GRACE_S", "CYCLE_INTERNALS", "PROTOCOL_INTERNALS", "bind", "protocol_class", "run_uvicorn"]


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket; OSError (e.g. EADDRINUSE) propagates to the caller."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets on Linux
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


IDLE_GRACE_S = 1.0


#: What ``protocol_class`` relies on in uvicorn's httptools protocol, beyond its public API.
#: setup.cfg bounds uvicorn's version for this; tests/plugins/local/test_sockets.py checks each
#: name still exists, so an uvicorn upgrade that moves one fails loudly there, not in production.
PROTOCOL_INTERNALS = ("connection_made", "on_headers_complete", "shutdown", "cycle", "loop", "transport")
#: What it relies on in the protocol's request cycle.
CYCLE_INTERNALS = ("keep_alive", "response_complete")


def protocol_class() -> Any:
    """uvicorn's HTTP protocol (httptools if installed, else h11) with TCP_NODELAY per connection
    and, with httptools, a drain on shutdown that never closes a connection under a request."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # httptools not installed
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    # Leans on uvicorn internals (PROTOCOL_INTERNALS: the cycle, shutdown and on_headers_complete
    # of HttpToolsProtocol); setup.cfg pins uvicorn below the next minor release for this.
    class NoDelayProtocol(Base):
        _draining = False

        def connection_made(self, transport: Any) -> None:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)

        if hasattr(Base, "on_headers_complete"):  # httptools: drain keep-alive connections gently
            def on_headers_complete(self) -> None:
                super().on_headers_complete()
                if self._draining and self.cycle is not None:
                    self.cycle.keep_alive = False  # answer with Connection: close, then close

            def shutdown(self) -> None:
                # uvicorn closes an idle keep-alive connection at once, which races with a request
                # the client is sending on it: during an update the client sees "connection reset".
                # Answer such a request (with Connection: close) instead; close only what stays idle.
                if self.cycle is None or self.cycle.response_complete:
                    self._draining = True
                    self.loop.call_later(IDLE_GRACE_S, self._close_if_idle)
                else:
                    self.cycle.keep_alive = False

            def _close_if_idle(self) -> None:
                if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                    self.transport.close()

    return NoDelayProtocol


def run_uvicorn(app: Any, sockets: list[socket.socket], certfile: str | None, keyfile: str | None,
                 on_started: Any = None) -> None:
    import asyncio

    import uvicorn

    uv_config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=10,
                               ssl_certfile=certfile, ssl_keyfile=keyfile, lifespan="off",
                               http=protocol_class(), server_header=False)
    server = uvicorn.Server(uv_config)

    async def run() -> None:
        task = asyncio.ensure_future(server.serve(sockets=sockets))
        while not server.started and not task.done():
            await asyncio.sleep(0.005)
        if server.started and on_started is not None:
            await asyncio.get_running_loop().run_in_executor(None, on_started)
        await task

    if uv_config.loop in ("auto", "uvloop"):
        with contextlib.suppress(ImportError):
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(run())
