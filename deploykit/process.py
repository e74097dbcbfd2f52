"""Processes on this machine: free ports, spawning with a minimal environment, liveness, stopping, log tails.

The one process layer of the targets that run servers locally (``local``, ``mlflow``): each
checks pids, stops process trees and reads logs the same way. ``scoped_environ`` contains SDKs
that read or write process-wide environment variables (MLflow, ibm-watsonx-ai).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

__all__ = ["CHILD_ENV_PREFIXES", "CHILD_ENV_VARS", "alive", "child_environment", "cmdline", "free_port",
           "group_alive", "group_members", "is_ours", "log_lines", "log_tail", "scoped_environ", "spawn", "stop"]

#: Variables a server or relay process inherits from the deploying shell: what Python, locale and
#: TLS trust need, never the cloud keys that shell also holds.
CHILD_ENV_VARS = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
                  "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SYSTEMROOT", "SSL_CERT_FILE", "SSL_CERT_DIR",
                  "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                  "http_proxy", "https_proxy", "no_proxy")
#: Prefixes of inherited variables (locale categories).
CHILD_ENV_PREFIXES = ("LC_",)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free on ``host`` now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def child_environment(extra: Mapping[str, str] | None = None, *, keep: Iterable[str] = (),
                      keep_prefixes: Iterable[str] = (), base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a server process: ``CHILD_ENV_VARS`` (and ``keep``) from ``base``
    (default ``os.environ``), then ``extra``, which holds what the child explicitly needs."""
    source = os.environ if base is None else base
    names = set(CHILD_ENV_VARS) | set(keep)
    prefixes = CHILD_ENV_PREFIXES + tuple(keep_prefixes)
    env = {k: v for k, v in source.items() if k in names or k.startswith(prefixes)}
    env.update(extra or {})
    return env


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` detached (own session, no stdin) with exactly ``env``, appending its output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, close_fds=True)


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie child of ours is reaped and counts as gone)."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    return True


def cmdline(pid: int) -> bytes | None:
    """The command line of ``pid`` (NUL-separated), or None where /proc is missing (macOS)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def is_ours(pid: int | None, *markers: bytes) -> bool:
    """True if ``pid`` runs and its command line holds one of ``markers`` (guards against a recycled pid).

    Where the command line cannot be read (no /proc), a running pid counts as ours."""
    if not pid or not alive(int(pid)):
        return False
    cmd = cmdline(int(pid))
    return cmd is None or any(marker in cmd for marker in markers)


def group_members(pgid: int) -> list[int]:
    """Running (not zombie) processes of group ``pgid``; [pgid] or [] where /proc is missing."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` runs (zombies waiting for a reaper do not count)."""
    alive(pgid)  # reap our own child if it exited
    return bool(group_members(pgid))


def stop(pids: int | Iterable[int] | None, grace: float = 15.0, *, markers: Iterable[bytes] | None = None,
         group: bool = False) -> None:
    """SIGTERM ``pids`` (a server finishes the requests in flight), SIGKILL what still runs after ``grace`` s.

    ``group`` signals each pid's whole process group (a session leader started by ``spawn``
    whose children do the serving). With ``markers`` only a pid (or, with ``group``, a group
    holding a process) whose command line has one of them is signalled: a recycled pid is left alone.
    Returns once every signalled process is gone (our children are reaped).
    """
    if pids is None:
        return
    wanted = [int(p) for p in ([pids] if isinstance(pids, int) else pids) if p]
    marks = tuple(markers) if markers is not None else None

    def ours(pid: int) -> bool:
        if group:
            alive(pid)
            members = group_members(pid)
            return bool(members) and (marks is None or any(is_ours(m, *marks) for m in members))
        return alive(pid) and (marks is None or is_ours(pid, *marks))

    running: Callable[[int], bool] = group_alive if group else alive
    send: Callable[[int, int], None] = os.killpg if group else os.kill
    targets = [pid for pid in wanted if ours(pid)]
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            send(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(running(pid) for pid in targets) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = [pid for pid in targets if running(pid)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            send(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0  # SIGKILL cannot be refused; wait for the kernel (and reap)
    while any(running(pid) for pid in left) and time.monotonic() < deadline:
        time.sleep(0.01)


def log_lines(path: str | Path | None) -> list[str]:
    """The lines of a log file, undecodable bytes replaced ([] if it cannot be read)."""
    if not path:
        return []
    try:
        return Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return []


def log_tail(path: str | Path | None, lines: int = 15, *,
             trim: Callable[[list[str]], list[str]] | None = None) -> str:
    """The last ``lines`` lines of a log file ('' if it cannot be read); ``trim`` drops noise first."""
    found = log_lines(path)
    if trim is not None:
        found = trim(found)
    return "\n".join(found[-lines:])


def _apply(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextlib.contextmanager
def scoped_environ(values: Mapping[str, str | None]) -> Iterator[dict[str, str | None]]:
    """Set (a str) or unset (None) the variables of ``values`` in ``os.environ`` for the block.

    On exit every one of them is put back as it was. The yielded dict is filled on exit with
    the values the block left them at (what an SDK wrote), so the caller can re-apply those
    next time. ``os.environ`` is process-wide: run such blocks from one thread at a time.
    """
    saved = {name: os.environ.get(name) for name in values}
    left: dict[str, str | None] = {}
    _apply(values)
    try:
        yield left
    finally:
        left.update({name: os.environ.get(name) for name in values})
        _apply(saved)

