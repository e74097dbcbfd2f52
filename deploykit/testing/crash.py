"""The crash harness: kill a real ``deploykit`` process at a step boundary, then check what it left.

    result = run_killed(project.dir, "deploy", model, "--target", "sample", step="create:target-created")
    check_after_crash(project, "m", "sample", leftovers=lambda: platform_entries("m"), model=model)

``run_killed`` runs the CLI with ``DEPLOYKIT_CRASH_AT`` / ``DEPLOYKIT_CRASH_AFTER_MS`` (see
``deploykit.faults``); ``check_after_crash`` asserts the promise of docs/reliability.md: the
metadata file is valid, the next ``deploy`` ends with exactly one serving revision and no pending
operation, and ``delete`` then leaves nothing on the platform. ``dead_owner`` records an
operation in process as a killed process would have left it.
"""

from __future__ import annotations

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

__all__ = ["CrashResult", "check_after_crash", "dead_owner", "run_killed"]


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
    common = ["--target", target, "--credentials", project.credentials, "--metadata", project.metadata, "--json"]
    if in_process:
        summary = deploykit.deploy(model, target=target, name=name, credentials=project.credentials,
                                   metadata=project.metadata, timeout=timeout).summary()
    else:
        deployed = run_cli(project.dir, "deploy", model, "--name", name, "--timeout", timeout, *common,
                           timeout=timeout, env=env)
        assert deployed.code == 0, f"the deploy after the crash failed: {deployed.out} {deployed.err}"
        summary = deployed.json()
    assert summary["status"] == "ready", summary
    assert store.pending(name, target) == [], f"still pending after the deploy: {store.pending(name, target)}"
    assert count() == 1, f"{name!r} on {target} serves {count()} revisions after the deploy; expected exactly 1"
    if in_process:
        deploykit.delete(name, target=target, credentials=project.credentials, metadata=project.metadata)
    else:
        deleted = run_cli(project.dir, "delete", name, *common, timeout=timeout, env=env)
        assert deleted.code == 0, f"the delete after the crash failed: {deleted.out} {deleted.err}"
    assert store.read().find(name, target) is None and store.pending(name, target) == []
    left = leftovers()
    assert left == [], f"delete left {left!r} on {target} for {name!r}"
    return summary
