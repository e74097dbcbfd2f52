"""The target registry: names to classes, lazy imports, and errors that list what is there."""

from __future__ import annotations

import pytest

from deploykit.errors import TargetUnavailableError, UnknownTargetError
from deploykit.registry import TargetInfo, TargetRegistry


def test_add_and_look_up_lazily() -> None:
    registry = TargetRegistry()
    registry.add("b", "deploykit_plugins.memory:MemoryTarget", description="in memory")
    registry.add("a", "collections:OrderedDict")
    assert registry.names() == ["a", "b"] and "a" in registry and "c" not in registry
    assert [info.name for info in registry] == ["a", "b"]
    info = registry.info("b")
    assert isinstance(info, TargetInfo) and info.missing == [] and info.description == "in memory"
    from deploykit_plugins.memory import MemoryTarget

    assert info.load() is MemoryTarget and info.settings_model() is None


def test_unknown_name_lists_the_known_ones() -> None:
    registry = TargetRegistry()
    registry.add("local", "x:Y")
    with pytest.raises(UnknownTargetError, match=r"unknown target 'sagemaker'; installed targets: local"):
        registry.info("sagemaker")
    with pytest.raises(UnknownTargetError, match="installed targets: none"):
        TargetRegistry().info("local")


def test_missing_sdk_without_an_extra_names_the_modules() -> None:
    registry = TargetRegistry()
    registry.add("fancy", "fancy:Target", requires=("dk_fancy_sdk_absent",))
    with pytest.raises(TargetUnavailableError, match=r"needs dk_fancy_sdk_absent.*run: pip install dk_fancy_sdk_absent"):
        registry.info("fancy").load()


def test_the_target_module_still_offers_the_registry() -> None:
    import deploykit.target as target

    assert target.TargetRegistry is TargetRegistry and target.TargetInfo is TargetInfo
