"""Sockets and the HTTP protocol tweak: the uvicorn internals the subclass relies on still exist."""

from __future__ import annotations

import asyncio
import inspect
import socket

from uvicorn.protocols.http import (
    httptools_impl,  # httptools comes with uvicorn[standard], a requirement
)

from deploykit_plugins.local.sockets import (
    CYCLE_INTERNALS,
    PROTOCOL_INTERNALS,
    bind,
    protocol_class,
)


def _moved(names: tuple[str, ...], where: type, instance: object) -> list[str]:
    source = inspect.getsource(where)
    return [n for n in names if not hasattr(instance, n) and f"self.{n}" not in source]


def test_the_uvicorn_internals_the_protocol_subclass_uses_still_exist() -> None:
    import uvicorn
    from uvicorn.server import ServerState

    config = uvicorn.Config(lambda scope, receive, send: None, lifespan="off")
    config.load()
    loop = asyncio.new_event_loop()
    try:
        proto = httptools_impl.HttpToolsProtocol(config, ServerState(), {}, loop)
    finally:
        loop.close()
    moved = _moved(PROTOCOL_INTERNALS, httptools_impl.HttpToolsProtocol, proto)
    moved += [f"RequestResponseCycle.{n}" for n in CYCLE_INTERNALS
              if f"self.{n}" not in inspect.getsource(httptools_impl.RequestResponseCycle)]
    assert not moved, (
        f"uvicorn {uvicorn.__version__} moved {moved}, which NoDelayProtocol in "
        "plugins/local/sockets.py relies on (keep-alive drain on shutdown); adapt the subclass to the new "
        "uvicorn, then raise the uvicorn upper bound in setup.cfg"
    )
    assert protocol_class().__mro__[1] is httptools_impl.HttpToolsProtocol


def test_bind_listens_with_nodelay_and_reuse_port() -> None:
    sock = bind("127.0.0.1", 0, reuse_port=True)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        twin = bind("127.0.0.1", sock.getsockname()[1], reuse_port=True)  # an update binds beside it
        twin.close()
    finally:
        sock.close()
