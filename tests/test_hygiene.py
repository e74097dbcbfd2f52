"""Code hygiene as tests, so CI enforces it: ruff (lint and import order) and mypy --strict.

Both run on the source tree, not on an installed copy. mypy needs the two import packages under
their import names, and ``plugins/`` installs as ``deploykit_plugins``, so it checks a directory
of two symbolic links (``deploykit``, ``deploykit_plugins``) pointing back into the tree.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def test_ruff_finds_nothing() -> None:
    done = _run("ruff", "check", "--no-cache", "deploykit", "plugins", "tests", "benchmarks", "examples", cwd=ROOT)
    assert done.returncode == 0, f"ruff found problems (fix them, or `ruff check --fix`):\n{done.stdout}{done.stderr}"


def test_mypy_strict_passes(tmp_path: Path) -> None:
    (tmp_path / "deploykit").symlink_to(ROOT / "deploykit")
    (tmp_path / "deploykit_plugins").symlink_to(ROOT / "plugins")
    done = _run("mypy", "--config-file", str(ROOT / "setup.cfg"), "--cache-dir", str(tmp_path / ".mypy_cache"),
                "-p", "deploykit", "-p", "deploykit_plugins", cwd=tmp_path)
    assert done.returncode == 0, f"mypy --strict found problems:\n{done.stdout}{done.stderr}"
