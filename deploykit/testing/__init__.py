"""deploykit.testing: what deploykit's own tests use, shipped for pipeline and plugin authors.

- a pytest plugin (loaded through the ``pytest11`` entry point): the ``project``, ``cli`` and
  ``memory`` fixtures (``deploykit.testing.plugin``);
- ``TargetContract``, the deploy flow every target passes, to subclass in a target's tests;
- ``deploykit.testing.models``: two small fits and a model that fails the smoke test.

Needs pytest. Names load on first use, so the plugin costs pytest's start-up next to nothing.
See docs/testing.md.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deploykit.testing.contract import NOT_SERVING, Contract, TargetContract
    from deploykit.testing.models import ContractModels, refusing_model, two_fits
    from deploykit.testing.project import CliResult, Project, run_cli, stop_servers

_LAZY = {
    "CliResult": "deploykit.testing.project",
    "Contract": "deploykit.testing.contract",
    "ContractModels": "deploykit.testing.models",
    "NOT_SERVING": "deploykit.testing.contract",
    "Project": "deploykit.testing.project",
    "TargetContract": "deploykit.testing.contract",
    "refusing_model": "deploykit.testing.models",
    "run_cli": "deploykit.testing.project",
    "stop_servers": "deploykit.testing.project",
    "two_fits": "deploykit.testing.models",
}

__all__ = [
    "NOT_SERVING",
    "CliResult",
    "Contract",
    "ContractModels",
    "Project",
    "TargetContract",
    "refusing_model",
    "run_cli",
    "stop_servers",
    "two_fits",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deploykit.testing' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
