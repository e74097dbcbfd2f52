"""deploykit's pytest plugin (entry point ``pytest11``): the ``project``, ``cli`` and ``memory`` fixtures.

Installed with deploykit, so every project that tests a pipeline or a target plugin has them;
``-p no:deploykit`` turns the plugin off. A fixture of the same name in your conftest.py wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# the contract's asserts are the checks plugin authors read when their target fails one
pytest.register_assert_rewrite("deploykit.testing.contract")

from deploykit.testing import isolation
from deploykit.testing.project import DEFAULT_CREDENTIALS, CliResult, Project, run_cli, stop_servers


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A fresh project folder, the working directory of the test, with credentials.yaml (the local target
    on a free port) and the path of its metadata.yaml; local servers left running are killed after."""
    monkeypatch.chdir(tmp_path)
    creds = tmp_path / "credentials.yaml"
    creds.write_text(DEFAULT_CREDENTIALS)
    yield Project(tmp_path, creds, tmp_path / "metadata.yaml")
    stop_servers(tmp_path)


@pytest.fixture
def cli(project: Project) -> Callable[..., CliResult]:
    """Run the real ``deploykit`` command in a subprocess in the project folder:
    ``cli("deploy", "m.joblib", "--json")`` -> CliResult(code, out, err)."""

    def run(*args: Any, stdin: str | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> CliResult:
        return run_cli(project.dir, *args, stdin=stdin, timeout=timeout, env=env)

    return run


@pytest.fixture
def memory() -> Any:
    """The in-process ``memory`` target's platform (a ``MemoryPlatform``), empty for this test: what it
    serves (``names()``, ``serving(name)``), ``remove(name)`` behind deploykit's back, and
    ``fail_next(step, error)`` to inject a failure."""
    from deploykit.plugins import get_registry

    # found through the registry like any target: the core imports no plugin
    target: Any = get_registry().info("memory").load()
    return target.use()


@pytest.fixture(autouse=True)
def _isolated_state() -> Iterator[None]:
    """Each test starts with an empty memory target, whether or not it asked for the ``memory`` fixture."""
    isolation.reset()
    yield
    isolation.reset()
