"""Crash injection: a test switch that kills the deploying process at a named step boundary.

CI cancels jobs with SIGTERM, then SIGKILL, so deploykit must survive being killed at any line.
The crash tests prove it by setting, in the environment of a real ``deploykit`` process:

- ``DEPLOYKIT_CRASH_AT=create:spawned`` (a comma-separated list of step names): the process
  SIGKILLs itself when it reaches that boundary (``crash_point("create:spawned")``);
- ``DEPLOYKIT_CRASH_AFTER_MS=350``: a timer SIGKILLs the process that many milliseconds after
  :func:`arm_timer` ran (the timed sweep between boundaries).

Step names are ``<action>:<step>``; :data:`STEPS` lists the lifecycle's own, and targets add
theirs (``crash_point("create:version-registered")``). With neither variable set (always, in
normal use) a crash point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["CRASH_AFTER_ENV", "CRASH_AT_ENV", "STEPS", "arm_timer", "crash_point"]

CRASH_AT_ENV = "DEPLOYKIT_CRASH_AT"
CRASH_AFTER_ENV = "DEPLOYKIT_CRASH_AFTER_MS"

#: The lifecycle's step boundaries, in the order a deploy meets them.
STEPS: tuple[str, ...] = (
    "create:intent-recorded", "create:target-created", "create:ready", "create:smoke-tested",
    "update:intent-recorded", "update:target-updated", "update:ready", "update:smoke-tested",
    "rollback:intent-recorded", "rollback:target-rolled-back", "rollback:ready",
    "delete:intent-recorded", "delete:target-deleted",
)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def crash_point(step: str) -> None:
    """Kill this process with SIGKILL if ``step`` is listed in ``DEPLOYKIT_CRASH_AT``."""
    wanted = os.environ.get(CRASH_AT_ENV)
    if wanted and step in (s.strip() for s in wanted.split(",")):
        _die()


def arm_timer() -> None:
    """Start the ``DEPLOYKIT_CRASH_AFTER_MS`` timer, if set (called once when a command starts)."""
    after = os.environ.get(CRASH_AFTER_ENV)
    if after:
        timer = threading.Timer(int(after) / 1000.0, _die)
        timer.daemon = True
        timer.start()
