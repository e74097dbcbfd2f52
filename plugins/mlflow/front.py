"""The stable front door of an MLflow deployment: a TCP relay from one fixed port to the current scoring server.

``python -m deploykit_plugins.mlflow.front --host H --port P --backend-file F --state-file S
[--certfile C --keyfile K] [--token-file T]``

MLflow's scoring server (``mlflow models serve``) binds its own port and cannot share it, so
an update has to start the next revision on another port. This process keeps the URL users
know: it listens on the deployment's port and relays every new connection to the port named
in ``--backend-file`` (JSON ``{"host": ..., "port": ...}``), re-read whenever the file changes.
The deployer switches revisions by atomically replacing that file once the new server is
healthy; connections already open finish on the old server, which is then stopped gracefully.
A connection that meets a backend which just went away re-reads the file and tries again,
so no request is refused during the switch. Stdlib only: it starts in tens of milliseconds.

MLflow's scoring server has neither TLS nor authentication, so the relay adds both when asked:
``--certfile``/``--keyfile`` make it serve HTTPS, and ``--token-file`` names a 0600 file holding
the bearer token every request must carry (``Authorization: Bearer <token>``, compared in
constant time; 401 otherwise). The relay reads that file once and removes it, so the token is
never on its command line, in its environment or left on disk. With a token the relay reads
each request's head (HTTP/1.1, keep-alive and chunked bodies included) before passing it on;
without one it relays bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import os
import signal
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["Backend", "main", "read_token", "relay", "relay_checked"]

_CHUNK = 1 << 16
#: The longest request or response head accepted (request line/status line plus headers).
MAX_HEAD = 64 * 1024
_UNAUTHORIZED = (b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s")
_UNAUTHORIZED_BODY = (b'{"error_code": "UNAUTHENTICATED", "message": "this endpoint requires '
                      b'Authorization: Bearer <token> (mlflow.relay_token of the deployment)"}')
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


def _headers(head: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def _authorized(headers: dict[bytes, bytes], token: bytes) -> bool:
    scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
    # compare_digest on equal-length inputs only leaks nothing; on unequal ones it leaks just the length
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token)


async def _copy_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[bytes, bytes],
                     until_close: bool) -> bool:
    """Copy one message body framed by ``headers``; False when the connection must close afterwards."""
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            writer.write(size_line)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    line = await reader.readuntil(b"\r\n")
                    writer.write(line)
                    if line == b"\r\n":
                        break
                await writer.drain()
                return True
            writer.write(await reader.readexactly(size + 2))
            await writer.drain()
    length = headers.get(b"content-length")
    if length is not None:
        left = int(length)
        while left > 0:
            data = await reader.read(min(left, _CHUNK))
            if not data:
                return False
            writer.write(data)
            await writer.drain()
            left -= len(data)
        return True
    if until_close:  # a response without framing ends when the server closes
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        return False
    return True


async def relay_checked(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, backend: Backend,
                        token: bytes) -> None:
    """Relay one client connection request by request, each checked for the bearer token first."""
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while True:
            try:
                head = await client_reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
                return
            headers = _headers(head)
            if not _authorized(headers, token):
                client_writer.write(_UNAUTHORIZED % (len(_UNAUTHORIZED_BODY), _UNAUTHORIZED_BODY))
                with contextlib.suppress(ConnectionError, OSError):
                    await client_writer.drain()
                return
            if upstream is None:
                upstream = await _connect(backend)
                if upstream is None:
                    return
            up_reader, up_writer = upstream
            up_writer.write(head)
            await _copy_body(client_reader, up_writer, headers, until_close=False)
            while True:  # 1xx answers (100 Continue) come before the real one
                response = await up_reader.readuntil(b"\r\n\r\n")
                client_writer.write(response)
                status = response[9:12]
                if not status.startswith(b"1"):
                    break
            answer = _headers(response)
            bodyless = head.startswith(b"HEAD ") or status in (b"204", b"304")
            keep = True if bodyless else await _copy_body(up_reader, client_writer, answer, until_close=True)
            await client_writer.drain()
            if not keep or b"close" in answer.get(b"connection", b"").lower() \
                    or b"close" in headers.get(b"connection", b"").lower():
                return
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError, ValueError):
        return
    finally:
        for w in ([upstream[1]] if upstream else []) + [client_writer]:
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()


def read_token(path: str) -> bytes:
    """The token in ``path`` (a 0600 file the deployer wrote), which is removed once read."""
    file = Path(path)
    try:
        token = file.read_bytes().strip()
    finally:
        with contextlib.suppress(OSError):
            file.unlink()
    if not token:
        raise ValueError(f"the token file {path} is empty")
    return token


async def _serve(sock: socket.socket, backend: Backend, state_file: str | None, grace: float,
                 tls: ssl.SSLContext | None = None, token: bytes | None = None) -> None:
    active: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            active.add(task)
        try:
            if token is not None:
                await relay_checked(reader, writer, backend, token)
            else:
                await relay(reader, writer, backend)
        finally:
            if task is not None:
                active.discard(task)

    server = await asyncio.start_server(handle, sock=sock, backlog=2048, ssl=tls, limit=MAX_HEAD)
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
    parser.add_argument("--certfile", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")
    parser.add_argument("--token-file", help="a 0600 file holding the bearer token; read once, then removed")
    args = parser.parse_args(argv)
    tls: ssl.SSLContext | None = None
    token: bytes | None = None
    try:
        if args.certfile:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(args.certfile, args.keyfile)
        if args.token_file:
            token = read_token(args.token_file)
    except (OSError, ssl.SSLError, ValueError) as exc:
        print(f"deploykit mlflow front: cannot start ({exc}); check mlflow.relay_certfile, relay_keyfile and "
              "relay_token", file=sys.stderr)
        return 4
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
    asyncio.run(_serve(sock, Backend(Path(args.backend_file)), args.state_file, args.grace, tls, token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
