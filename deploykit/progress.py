"""Progress output for long waits: a one-line printer on an interactive terminal, silence elsewhere."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

__all__ = ["terminal_progress"]


def terminal_progress() -> Callable[[str], None] | None:
    """A progress printer for an interactive terminal (stderr), or None when not a TTY."""
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def show(message: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5:  # at most two redraws a second, so a fast poll loop does not flood
            sys.stderr.write(f"\r\033[K{message}")
            sys.stderr.flush()
            last[0] = now

    return show
