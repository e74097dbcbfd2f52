"""The crash harness: kill a real ``deploykit`` process at a step boundary, then check what it left.

    result = run_killed(project.dir, "deploy", model, "--target", "sample", step="create:target-created")
    check_after_crash(project, "m", "sample", leftovers=lambda: platform_entries("m"), model=model)

``run_killed`` runs the CLI with ``DEPLOYKIT_CRASH_AT`` / ``DEPLOYKIT_CRASH_AFTER_MS`` (see
``deploykit.faults``); ``check_after_crash`` asserts the promise of docs/reliability.md: the
metadata file is valid, the next ``deploy`` ends with exactly one serving revision and no pending
operation, and ``delete`` then leaves nothing on the platform. ``dead_owner`` records an
operation in process as a killed process would have left it. ``check_redeploy`` and
``check_deleted`` are its two halves, for a chain of crashes on one deployment. For targets
whose platform is processes on this machine, ``processes`` finds them from ``/proc`` (not from
anything deploykit recorded) and ``accepts`` says whether a port still takes connections.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploykit.faults import CRASH_AFTER_ENV, CRASH_AT_ENV
from deploykit.operations import Owner, _boot_id
from deploykit.testing.project import CliResult, run_cli

__all__ = ["CrashResult", "accepts", "check_after_crash", "check_deleted", "check_redeploy", "dead_owner", "processes",
           "run_killed"]


@dataclass
class CrashResult(CliResult):
    """A CliResult that says whether the process was SIGKILLed."""

    killed: bool = False


def dead_owner() -> Owner:
    """An Owner whose process certainly no longer runs: a child of this process, started and reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return Owner(child.pid, socket.gethostname(), _boot_id(), started=-1)  # no process ever started at -1


def run_killed(cwd: Path, *args: Any, step: str | None = None, after_ms: int | None = None,
               env: dict[str, str] | None = None, timeout: float = 300.0) -> CrashResult:
    """Run ``deploykit ARGS`` in ``cwd`` set to die by SIGKILL at ``step`` or after ``after_ms``.

    With ``step`` the process must be killed there (a step never reached fails the test: it would
    prove nothing); with only ``after_ms`` it may be killed or finish with exit 0.
    """
    crash = dict(env or {})
    if step is not None:
        crash[CRASH_AT_ENV] = step
    if after_ms is not None:
        crash[CRASH_AFTER_ENV] = str(after_ms)
    result = run_cli(cwd, *args, timeout=timeout, env=crash)
    killed = result.code == -signal.SIGKILL
    seen = f"exit {result.code}\nstdout: {result.out}\nstderr: {result.err}"
    if step is not None:
        assert killed, f"deploykit {' '.join(map(str, args))} was not killed at {step} ({seen})"
    else:
        assert killed or result.code == 0, f"deploykit {' '.join(map(str, args))} neither died nor succeeded ({seen})"
    return CrashResult(result.code, result.out, result.err, killed)


def check_after_crash(project: Any, name: str, target: str, leftovers: Callable[[], list[Any]], *, model: Path,
                      serving: Callable[[], int] | None = None, env: dict[str, str] | None = None,
                      timeout: float = 300.0, in_process: bool = False) -> dict[str, Any]:
    """After a crash: metadata.yaml reads; ``deploy model`` (a fresh process) ends with exactly one
    serving revision and nothing pending; ``delete`` then leaves ``leftovers() == []``.

    ``serving`` counts the revisions of ``name`` that serve (default: the target's ``list()``
    entries for it). ``in_process`` runs that deploy and delete through deploykit's API in this
    process instead of the CLI (the same lifecycle, without an interpreter start each: for targets
    whose SDK takes seconds to import); ``env`` then does not apply. Returns the deploy's
    ``--json`` summary.
    """
    summary = check_redeploy(project, name, target, model=model, serving=serving, env=env, timeout=timeout,
                             in_process=in_process)
    check_deleted(project, name, target, leftovers, env=env, timeout=timeout, in_process=in_process)
    return summary


def _common(project: Any, target: str) -> list[Any]:
    return ["--target", target, "--credentials", project.credentials, "--metadata", project.metadata, "--json"]


def check_redeploy(project: Any, name: str, target: str, *, model: Path, serving: Callable[[], int] | None = None,
                   env: dict[str, str] | None = None, timeout: float = 300.0,
                   in_process: bool = False) -> dict[str, Any]:
    """The first half of ``check_after_crash``: metadata.yaml reads, and ``deploy model`` (a fresh
    process, or this one with ``in_process``) ends with exactly one serving revision and nothing
    pending. Nothing is deleted, so a test can go on from the deployment it leaves (a chain of
    crashes on one deployment)."""
    import deploykit
    from deploykit.lifecycle import open_target
    from deploykit.metadata import MetadataStore

    store = MetadataStore(project.metadata)
    store.read()  # raises MetadataError if the killed process left it unreadable

    def count() -> int:
        if serving is not None:
            return serving()
        listed = open_target(target, project.credentials, store.state_dir).list()
        return len([d for d in listed if d.name == name])

    summary: dict[str, Any]
    if in_process:
        summary = deploykit.deploy(model, target=target, name=name, credentials=project.credentials,
                                   metadata=project.metadata, timeout=timeout).summary()
    else:
        deployed = run_cli(project.dir, "deploy", model, "--name", name, "--timeout", timeout,
                           *_common(project, target), timeout=timeout, env=env)
        assert deployed.code == 0, f"the deploy after the crash failed: {deployed.out} {deployed.err}"
        summary = deployed.json()
    assert summary["status"] == "ready", summary
    assert store.pending(name, target) == [], f"still pending after the deploy: {store.pending(name, target)}"
    served = count()
    assert served == 1, f"{name!r} on {target} serves {served} revisions after the deploy; expected exactly 1"
    return summary


def check_deleted(project: Any, name: str, target: str, leftovers: Callable[[], list[Any]], *,
                  env: dict[str, str] | None = None, timeout: float = 300.0, in_process: bool = False) -> None:
    """The second half of ``check_after_crash``: ``delete`` (a fresh process, or this one with
    ``in_process``) succeeds, removes the record and every pending operation of ``name``, and
    leaves ``leftovers() == []``."""
    import deploykit
    from deploykit.metadata import MetadataStore

    store = MetadataStore(project.metadata)
    if in_process:
        deploykit.delete(name, target=target, credentials=project.credentials, metadata=project.metadata)
    else:
        deleted = run_cli(project.dir, "delete", name, *_common(project, target), timeout=timeout, env=env)
        assert deleted.code == 0, f"the delete after the crash failed: {deleted.out} {deleted.err}"
    assert store.read().find(name, target) is None and store.pending(name, target) == []
    left = leftovers()
    assert left == [], f"delete left {left!r} on {target} for {name!r}"


def processes(*markers: str) -> dict[int, list[str]]:
    """Running processes (zombies excluded) whose command line holds every one of ``markers`` as a
    substring of some argument: ``{pid: argv}``, read from ``/proc`` ({} where it is missing)."""
    from deploykit.process import alive, cmdline

    found: dict[int, list[str]] = {}
    if not os.path.isdir("/proc"):
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        raw = cmdline(int(entry))
        if not raw:
            continue
        argv = raw.decode(errors="replace").rstrip("\0").split("\0")
        if all(any(marker in arg for arg in argv) for marker in markers) and alive(int(entry)):
            found[int(entry)] = argv
    return found


def accepts(host: str, port: int, timeout: float = 2.0) -> bool:
    """True if something accepts TCP connections on ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
