"""The public port of a local deployment, handed from one server revision to the next.

A server started for an update listens on a private loopback port only (``ServerDocument.public
= "wait"``): the deployer smoke-tests it there, where no live client can reach it. Then the
deployer sends it SIGUSR1 (*join*): it asks the server that holds the public port now for its
listening socket over a hand-over socket (an abstract Unix socket named after host and port,
served only to processes of the same user, checked with SO_PEERCRED) and serves that very
socket. Both processes then accept from ONE kernel queue, so when the old server stops (or
leaves: SIGUSR2) no connection waiting in a queue is reset, as it would be when a second
SO_REUSEPORT listener with its own queue closes. Only when no server holds the port yet (a
create) or none can hand it over (a server of an older deploykit) does the joiner bind the
port itself (with SO_REUSEPORT, beside such an older server).

A server that *leaves* stops accepting, closes its keep-alive connections gently (see
``sockets.protocol_class``), and keeps running, warm, for ``linger`` seconds so that a rollback
can make it join again instead of cold-starting it; then it exits by itself.

Extra worker processes (``workers``) get the public socket from their main process over a
socket pair made before the fork: ``J`` + the socket to join, ``L`` to leave.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

from deploykit_plugins.local.sockets import add_listener, bind, drain_connections, remove_listener

__all__ = ["PublicPort", "WorkerPort", "hand_over_address", "receive_listener"]

_SUPPORTED = sys.platform.startswith("linux") and hasattr(socket, "send_fds")


def hand_over_address(host: str, port: int) -> bytes:
    """The abstract socket address where the server holding ``host:port`` hands its listener over."""
    key = hashlib.sha256(f"{os.getuid()}:{host}:{port}".encode()).hexdigest()[:24]
    return b"\0deploykit-local-" + key.encode()


def receive_listener(host: str, port: int, timeout: float = 2.0) -> socket.socket | None:
    """The listening socket of the server that holds ``host:port`` now, or None when none hands one over."""
    if not _SUPPORTED:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(hand_over_address(host, port))
            _, fds, _, _ = socket.recv_fds(conn, 16, 1)
    except OSError:
        return None
    if not fds:
        return None
    return socket.socket(fileno=fds[0])


def _same_user(conn: socket.socket) -> bool:
    with contextlib.suppress(OSError, struct.error):
        _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return bool(uid == os.getuid())
    return False


class PublicPort:
    """The public port of one server process: join it, hand it over, leave it (all on the event loop)."""

    def __init__(self, server: Any, loop: Any, host: str, port: int, workers: list[socket.socket],
                 on_change: Callable[[], None], log: Callable[[str], None]) -> None:
        self.server, self.loop, self.host, self.port = server, loop, host, port
        self.workers = workers
        self.on_change = on_change
        self.log = log
        self.sock: socket.socket | None = None
        self.listener: Any = None
        self.hand_over: socket.socket | None = None
        self.exit_timer: Any = None
        self.joins = 0

    @property
    def joined(self) -> bool:
        """True while this process accepts on the public port."""
        return self.listener is not None

    def adopt(self, sock: socket.socket, listener: Any) -> None:
        """Record the public socket uvicorn was started with (``public = "bind"``)."""
        self.sock, self.listener = sock, listener
        self.port = sock.getsockname()[1]
        self.joins += 1
        self._serve_hand_over()

    async def join(self) -> None:
        """Accept on the public port: the socket handed over by its holder, or a new one."""
        if self.exit_timer is not None:
            self.exit_timer.cancel()
            self.exit_timer = None
        if self.joined:
            return
        sock = receive_listener(self.host, self.port)
        how = "handed over"
        if sock is None:
            how = "bound"
            try:
                sock = bind(self.host, self.port, reuse_port=True)
            except OSError as exc:
                self.log(f"cannot listen on {self.host}:{self.port} ({exc.strerror}); choose another port "
                         "(local.port) or stop what uses it")
                sys.stderr.flush()
                os._exit(3)
        self.sock = sock
        self.listener = await add_listener(self.server, sock)
        self.port = sock.getsockname()[1]
        for channel in self.workers:
            with contextlib.suppress(OSError):
                socket.send_fds(channel, [b"J"], [sock.fileno()])
        self.joins += 1
        self.log(f"joined the public port {self.host}:{self.port} ({how})")
        self._serve_hand_over()
        self.on_change()

    def leave(self, linger: float) -> None:
        """Stop accepting on the public port; exit after ``linger`` seconds unless joined again."""
        if self.joined:
            self._close_hand_over()
            remove_listener(self.server, self.listener)
            self.listener = None
            if self.sock is not None:
                self.sock.close()
                self.sock = None
            for channel in self.workers:
                with contextlib.suppress(OSError):
                    channel.send(b"L")
            drain_connections(self.server)
            self.log(f"left the public port {self.host}:{self.port}; staying warm for {linger:.0f} s")
        if self.exit_timer is None:
            self.exit_timer = self.loop.call_later(max(0.0, linger), self._exit)
        self.on_change()

    def close(self) -> None:
        """Release the hand-over socket (the process is stopping)."""
        self._close_hand_over()

    def _exit(self) -> None:
        self.server.should_exit = True

    # -- the hand-over socket ---------------------------------------------------------------
    def _serve_hand_over(self) -> None:
        """Listen on the hand-over address; while the previous holder still has it, retry."""
        if not _SUPPORTED or self.hand_over is not None or not self.joined:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(hand_over_address(self.host, self.port))
        except OSError:
            sock.close()
            self.loop.call_later(0.05, self._serve_hand_over)
            return
        sock.listen(8)
        sock.setblocking(False)
        self.hand_over = sock
        self.loop.add_reader(sock.fileno(), self._give)
        self.on_change()

    def _give(self) -> None:
        if self.hand_over is None:
            return
        with contextlib.suppress(OSError):
            conn, _ = self.hand_over.accept()
            with conn:
                conn.setblocking(True)
                if _same_user(conn) and self.sock is not None and self.sock.fileno() >= 0 \
                        and not self.server.should_exit:
                    socket.send_fds(conn, [b"S"], [self.sock.fileno()])

    def _close_hand_over(self) -> None:
        if self.hand_over is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.hand_over.fileno())
            self.hand_over.close()
            self.hand_over = None

    def state(self) -> dict[str, Any]:
        """What the run file reports about the public port."""
        return {"joined": self.joined, "joins": self.joins, "hand_over": self.hand_over is not None,
                "leaving": self.exit_timer is not None}


class WorkerPort:
    """A worker's side of the public port: joins and leaves as its main process says over ``channel``."""

    def __init__(self, server: Any, loop: Any, channel: socket.socket) -> None:
        self.server, self.loop, self.channel = server, loop, channel
        self.listener: Any = None
        channel.setblocking(False)
        loop.add_reader(channel.fileno(), self._read)

    def _read(self) -> None:
        try:
            message, fds, _, _ = socket.recv_fds(self.channel, 16, 1)
        except BlockingIOError:
            return
        except OSError:
            message, fds = b"", []
        if not message:  # the main process is gone
            self.loop.remove_reader(self.channel.fileno())
            self.server.should_exit = True
            return
        if message.startswith(b"J") and fds:
            sock = socket.socket(fileno=fds[0])
            if self.listener is None:
                self.loop.create_task(self._join(sock))
            else:
                sock.close()
        elif message.startswith(b"L") and self.listener is not None:
            remove_listener(self.server, self.listener)
            self.listener = None
            drain_connections(self.server)

    async def _join(self, sock: socket.socket) -> None:
        self.listener = await add_listener(self.server, sock)
