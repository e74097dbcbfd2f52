"""Run the local server process: load the model once, bind, serve until SIGTERM.

``python -m deploykit_plugins.local.server --model PATH --port P [--state-file F] [--workers N]``.
The public socket is bound with SO_REUSEPORT so an update can start the next revision on the
same port before the old process stops; a private health socket on 127.0.0.1 lets the deployer
check the new process itself. The token comes from the environment (DEPLOYKIT_SERVER_TOKEN),
never argv.

With ``--workers N`` the process loads the model, builds the app and warms it up, then forks
N-1 workers. Each worker binds its own SO_REUSEPORT listener on the same port (the kernel
spreads connections over them) and runs its own event loop and micro-batcher; the first
process serves too and keeps the health socket. Workers stop with the main process (SIGTERM
is passed on; on Linux they also get SIGTERM if it dies). Every accepted connection gets
TCP_NODELAY: uvicorn leaves Nagle's algorithm on for pre-bound sockets, which adds ~40 ms to
keep-alive requests (uvicorn issue 3149). On shutdown, idle keep-alive connections are not cut
under a client's next request: it is answered with ``Connection: close`` (see IDLE_GRACE_S).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["TOKEN_ENV", "bind", "main", "running", "serve"]

TOKEN_ENV = "DEPLOYKIT_SERVER_TOKEN"


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


#: On shutdown, an idle keep-alive connection may still get one more request in this window.
IDLE_GRACE_S = 1.0


def _protocol_class() -> Any:
    """uvicorn's HTTP protocol (httptools if installed, else h11) with TCP_NODELAY per connection
    and, with httptools, a drain on shutdown that never closes a connection under a request."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # httptools not installed
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

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


def _run_uvicorn(app: Any, sockets: list[socket.socket], certfile: str | None, keyfile: str | None,
                 on_started: Any = None) -> None:
    import asyncio

    import uvicorn

    uv_config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=10,
                               ssl_certfile=certfile, ssl_keyfile=keyfile, lifespan="off",
                               http=_protocol_class(), server_header=False)
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


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGTERM when the main process dies (even by SIGKILL), so no worker is orphaned."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)


def _fork_workers(app: Any, public: socket.socket, health: socket.socket, count: int,
                  certfile: str | None, keyfile: str | None) -> tuple[list[int], int]:
    """Fork ``count`` workers, each with its own SO_REUSEPORT listener; returns their pids and a
    pipe that each writes one byte to once it serves."""
    host, port = public.getsockname()[:2]
    parent = os.getpid()
    ready_r, ready_w = os.pipe()
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                _die_with_parent(parent)
                os.close(ready_r)
                for inherited in (public, health):
                    inherited.close()  # else connections routed to the main socket outlive it
                own = bind(host, port, reuse_port=True)

                def started() -> None:
                    os.write(ready_w, b"1")
                    os.close(ready_w)

                _run_uvicorn(app, [own], certfile, keyfile, started)
            except BaseException as exc:  # noqa: BLE001  (a worker must never return into the parent's code)
                if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    print(f"deploykit server: worker {os.getpid()} failed: {exc!r}", file=sys.stderr, flush=True)
                    code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        pids.append(pid)
    os.close(ready_w)
    return pids, ready_r


def _wait_ready(ready_r: int, count: int, pids: list[int], timeout: float = 60.0) -> None:
    import select

    got = 0
    deadline = time.monotonic() + timeout
    while got < count and time.monotonic() < deadline:
        readable, _, _ = select.select([ready_r], [], [], 0.1)
        if readable:
            data = os.read(ready_r, 64)
            if not data:  # every worker closed its end: some died before serving
                break
            got += len(data)
    os.close(ready_r)
    if got < count:
        print(f"deploykit server: only {got} of {count} extra workers started (pids {pids}); "
              "serving with fewer", file=sys.stderr, flush=True)


def _stop_workers(pids: list[int], grace: float = 15.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
            alive.discard(pid)
        time.sleep(0.02)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


@contextlib.contextmanager
def running(app: Any, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` (e.g. ``create_app(artifact, config)``) with uvicorn in a background thread
    on a real socket (port 0: a free one) and yield its base URL; for tests, yours included."""
    import asyncio
    import threading

    import uvicorn

    sock = bind(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           http=_protocol_class(), timeout_graceful_shutdown=5))
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
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


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
        pids, ready_r = _fork_workers(app, sockets[0], sockets[1], extra, certfile, keyfile)

    def started() -> None:
        if extra:
            _wait_ready(ready_r, extra, pids)
        if on_started is not None:
            on_started()

    # uvicorn re-raises the stopping signal after its graceful shutdown; catch it here so the
    # workers are stopped (and reaped) before this process exits.
    stopping: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: stopping.append(s)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _run_uvicorn(app, sockets, certfile, keyfile, started)
    finally:
        if pids:
            _stop_workers(pids)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the detached server process."""
    from deploykit.artifact import load_artifact
    from deploykit.errors import DeployKitError
    from deploykit_plugins.local.app import ServerConfig

    defaults = ServerConfig()
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
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes)
    parser.add_argument("--workers", type=int, default=1, help="serving processes (default 1)")
    parser.add_argument("--batch-wait-ms", type=float, default=defaults.batch_wait_ms,
                        help="how long concurrent requests may wait to be scored together (0: no batching)")
    parser.add_argument("--max-batch-rows", type=int, default=defaults.max_batch_rows)
    extra = parser.add_mutually_exclusive_group()
    extra.add_argument("--allow-extra-columns", dest="allow_extra_columns", action="store_true", default=None,
                       help="drop columns the schema does not know instead of answering 422")
    extra.add_argument("--no-allow-extra-columns", dest="allow_extra_columns", action="store_false")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.max_batch_rows < 1 or args.batch_wait_ms < 0 or args.max_body_bytes < 1:
        print("deploykit server: --workers and --max-batch-rows must be >= 1, --batch-wait-ms >= 0 and "
              "--max-body-bytes > 0; fix the local: settings in credentials.yaml", file=sys.stderr)
        return 2
    try:
        artifact = load_artifact(args.model, args.schema)
    except DeployKitError as exc:
        print(f"deploykit server: {exc}", file=sys.stderr)
        return 1
    try:
        public = bind(args.host, args.port, args.reuse_port or args.workers > 1)
    except OSError as exc:
        print(f"deploykit server: cannot listen on {args.host}:{args.port} ({exc.strerror}); "
              "choose another port (local.port) or stop what uses it", file=sys.stderr)
        return 3
    health = bind("127.0.0.1", 0)
    config = ServerConfig(args.name, args.revision, os.environ.pop(TOKEN_ENV, None) or None, args.max_body_bytes,
                          allow_extra_columns=args.allow_extra_columns, batch_wait_ms=args.batch_wait_ms,
                          max_batch_rows=args.max_batch_rows)

    def started() -> None:
        if args.state_file:
            state = {"pid": os.getpid(), "port": public.getsockname()[1], "health_port": health.getsockname()[1],
                     "workers": args.workers}
            tmp = Path(args.state_file + ".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, args.state_file)
        print(f"deploykit server: {args.name} revision {args.revision} serving on "
              f"{args.host}:{public.getsockname()[1]} (pid {os.getpid()}, {args.workers} worker(s))",
              file=sys.stderr, flush=True)

    serve(artifact, config, [public, health], certfile=args.certfile, keyfile=args.keyfile, on_started=started,
          workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
