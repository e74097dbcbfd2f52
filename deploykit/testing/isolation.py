"""Per-test isolation: in-process state (the memory target's platform) registers how to start afresh.

A plugin holding process-wide state calls ``on_reset(fresh)`` when it is imported; the pytest
plugin calls ``reset()`` before and after every test. This module imports nothing, so plugins
may use it without loading pytest, and the core never has to import a plugin to isolate it.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["on_reset", "reset"]

_resets: list[Callable[[], object]] = []


def on_reset(fresh: Callable[[], object]) -> Callable[[], object]:
    """Call ``fresh`` whenever a test starts or ends (usable as a decorator)."""
    if fresh not in _resets:
        _resets.append(fresh)
    return fresh


def reset() -> None:
    """Start every registered piece of state afresh."""
    for fresh in list(_resets):
        fresh()
