"""Worker processes: forking extra serving processes after the model is loaded, and stopping them.

Each worker binds its own SO_REUSEPORT listener on the same port (the kernel spreads
connections over them) and runs its own event loop and micro-batcher; the first process
serves too and keeps the health socket. A server that waits to join the public port
(``handover``) gives its workers no listener at start: each gets the public socket from the
main process over its own socket pair when the main process joins. Workers stop with the main process (SIGTERM is passed
on; on Linux they also get SIGTERM if it dies).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from typing import Any

from deploykit_plugins.local.sockets import bind, run_uvicorn

__all__ = ["fork_workers", "wait_ready"]


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGTERM when the main process dies (even by SIGKILL), so no worker is orphaned."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)


def _leave(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def fork_workers(app: Any, public: socket.socket, health: socket.socket, count: int,
                 certfile: str | None, keyfile: str | None,
                 wait: bool = False) -> tuple[list[int], int, list[socket.socket]]:
    """Fork ``count`` workers, each with its own SO_REUSEPORT listener (or, with ``wait``, none
    until told over its channel); returns their pids, a pipe that each writes one byte to once it
    serves, and the main process's ends of the workers' channels (empty without ``wait``)."""
    host, port = public.getsockname()[:2]
    parent = os.getpid()
    ready_r, ready_w = os.pipe()
    pids = []
    channels: list[socket.socket] = []
    for _ in range(count):
        mine, theirs = socket.socketpair() if wait else (None, None)
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                # uvicorn re-raises the stopping signal after its graceful shutdown: leave through
                # ``finally`` (flushing the logged inputs) rather than die by the default action
                for stopping in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(stopping, _leave)
                _die_with_parent(parent)
                os.close(ready_r)
                for inherited in (public, health, *channels):
                    inherited.close()  # else connections routed to the main socket outlive it
                if mine is not None:
                    mine.close()
                own = [] if wait else [bind(host, port, reuse_port=True)]

                def started() -> None:
                    os.write(ready_w, b"1")
                    os.close(ready_w)

                def serving(server: Any, loop: Any, theirs: Any = theirs) -> None:
                    if theirs is not None:
                        from deploykit_plugins.local.handover import WorkerPort

                        server.worker_port = WorkerPort(server, loop, theirs)

                run_uvicorn(app, own, certfile, keyfile, started, serving)
            except BaseException as exc:
                if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    print(f"deploykit server: worker {os.getpid()} failed: {exc!r}", file=sys.stderr, flush=True)
                    code = 1
            finally:
                inputs = getattr(app.state, "input_log", None)
                if inputs is not None:  # os._exit skips atexit: flush this worker's logged inputs first
                    inputs.close()
                sys.stderr.flush()
                os._exit(code)
        pids.append(pid)
        if mine is not None and theirs is not None:
            theirs.close()
            channels.append(mine)
    os.close(ready_w)
    return pids, ready_r, channels


def wait_ready(ready_r: int, count: int, pids: list[int], timeout: float = 60.0) -> None:
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
