"""Plugins: built-ins load through the same hook, unknown and unavailable targets explain themselves."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import deploykit
from deploykit import hookspecs, plugins
from deploykit.errors import TargetUnavailableError, UnknownTargetError
from deploykit.target import TargetRegistry

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def test_builtin_targets_are_registered() -> None:
    names = plugins.get_registry().names()
    assert {"local", "memory"} <= set(names)


def test_unknown_target_lists_installed_ones() -> None:
    with pytest.raises(UnknownTargetError, match=r"unknown target 'nope'; installed targets: .*local.*memory"):
        plugins.get_registry().info("nope")


def test_missing_sdk_names_the_extra() -> None:
    registry = TargetRegistry()
    registry.add("fancy", "fancy_sdk.target:Fancy", requires=("fancy_sdk_not_installed",), extra="fancy")
    info = registry.info("fancy")
    assert info.missing == ["fancy_sdk_not_installed"]
    with pytest.raises(TargetUnavailableError, match=r"pip install 'deploykit\[fancy\]'"):
        info.load()


def test_third_party_plugin_registers_a_target(monkeypatch: pytest.MonkeyPatch) -> None:
    from deploykit.hookspecs import hookimpl
    from deploykit_plugins.memory import MemoryTarget

    class Plugin:
        @hookimpl
        def deploykit_register_targets(self, registry):
            registry.add("thirdparty", MemoryTarget, description="a plugin's target")

    plugins.reset()
    pm = plugins.get_plugin_manager()
    pm.register(Plugin())
    try:
        assert "thirdparty" in plugins.get_registry()
    finally:
        plugins.reset()


def test_plugin_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYKIT_PLUGINS", "memory")
    plugins.reset()
    try:
        assert plugins.get_registry().names() == ["memory"]
    finally:
        monkeypatch.delenv("DEPLOYKIT_PLUGINS")
        plugins.reset()


def _annotation(value: object) -> str | None:
    """An annotation as comparable text: None when absent, module prefixes dropped (pd.DataFrame -> DataFrame)."""
    if value is inspect.Parameter.empty:
        return None
    text = value if isinstance(value, str) else getattr(value, "__name__", repr(value))
    return re.sub(r"\b[A-Za-z_][\w.]*\.(?=[A-Za-z_])", "", text.replace("typing.", ""))


def _signature_problems(target: str, cls: type, protocol: type) -> list[str]:
    problems = []
    for method, spec in vars(protocol).items():
        if method.startswith("_") or not inspect.isfunction(spec):
            continue
        impl = getattr(cls, method, None)
        if not callable(impl):
            problems.append(f"target {target} lacks {protocol.__name__}.{method}()")
            continue
        want, got = inspect.signature(spec), inspect.signature(impl)
        shape = [(p.name, p.kind) for p in want.parameters.values()]
        if [(p.name, p.kind) for p in got.parameters.values()] != shape:
            problems.append(f"{target}.{method}{got} does not match {protocol.__name__}.{method}{want}")
            continue
        for expected, actual in zip(want.parameters.values(), got.parameters.values()):
            have = _annotation(actual.annotation)
            # a parameter may accept more than the protocol asks (Any), never something else
            if have not in (None, "Any", _annotation(expected.annotation)):
                problems.append(f"{target}.{method}() annotates {actual.name!r} as {have}, the protocol as "
                                f"{_annotation(expected.annotation)}")
        have = _annotation(got.return_annotation)
        if have is not None and have != _annotation(want.return_annotation):
            problems.append(f"{target}.{method}() returns {have}, the protocol {_annotation(want.return_annotation)}")
    return problems


def test_builtin_targets_implement_both_interfaces(sample_target) -> None:
    """Every registered target (the built-ins and the sample third-party one) has each Deployer and Scorer
    method (and BatchScorer's when it scores batches) with the protocol's parameters and types."""
    from deploykit.target import BatchScorer, Deployer, Scorer

    problems, checked = [], []
    for info in plugins.get_registry():
        cls = info.load()
        for protocol in (Deployer, Scorer, *([BatchScorer] if hasattr(cls, "score_batch") else [])):
            problems += _signature_problems(info.name, cls, protocol)
        checked.append(info.name)
    assert problems == []
    assert {"local", "memory", "watsonml", "mlflow", "sample"} <= set(checked)


def test_the_signature_check_sees_a_wrong_parameter() -> None:
    from deploykit.target import Deployer

    class Sloppy:
        def deploy(self, artifact, deployment_name):
            ...

        def update(self, current: str, artifact) -> None:
            ...

    problems = _signature_problems("sloppy", Sloppy, Deployer)
    assert any("sloppy.deploy(self, artifact, deployment_name) does not match" in p for p in problems)
    assert "sloppy.update() annotates 'current' as str, the protocol as Deployment" in problems
    assert "sloppy.update() returns None, the protocol Deployment" in problems
    assert "target sloppy lacks Deployer.rollback()" in problems


def test_every_hook_and_argument_is_documented() -> None:
    text = DOCS.read_text()
    for name, func in inspect.getmembers(hookspecs, inspect.isfunction):
        if not name.startswith("deploykit_"):
            continue
        args = ", ".join(inspect.signature(func).parameters)
        assert f"### {name}({args})" in text, f"docs/plugins.md lacks '### {name}({args})'"
        assert func.__doc__, f"{name} has no docstring"
    documented = set(re.findall(r"^### (deploykit_\w+)", text, re.M))
    assert documented == {n for n, _ in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("deploykit_")}


def test_public_api_is_sorted_and_complete() -> None:
    assert deploykit.__all__ == sorted(deploykit.__all__)
    for name in deploykit.__all__:
        obj = getattr(deploykit, name)
        assert obj.__doc__, f"deploykit.{name} has no docstring"


def test_import_is_cheap() -> None:
    import subprocess
    import sys

    code = ("import sys, deploykit; heavy = [m for m in ('pandas', 'numpy', 'fastapi', 'uvicorn', 'pydantic', "
            "'mlflow', 'ibm_watsonx_ai', 'boto3', 'sklearn', 'yaml') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plugins_add_cli_commands() -> None:
    import click
    from click.testing import CliRunner

    from deploykit.cli import _PluginCommands
    from deploykit.hookspecs import hookimpl

    class Plugin:
        @hookimpl
        def deploykit_register_commands(self, cli: click.Group) -> None:
            @cli.command()
            def hello() -> None:
                """Say hello."""
                click.echo("hello from a plugin")

    plugins.reset()
    plugins.get_plugin_manager().register(Plugin())
    try:
        group = _PluginCommands(name="deploykit")
        result = CliRunner().invoke(group, ["hello"])
        assert result.exit_code == 0 and result.output == "hello from a plugin\n"
        assert "hello" in CliRunner().invoke(group, ["--help"]).output
    finally:
        plugins.reset()


def _plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> str:
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_a_misspelt_hook_implementation_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploykit.errors import PluginError

    module = _plugin_module(tmp_path, monkeypatch, "dk_misspelt", (
        "from deploykit.hookspecs import hookimpl\n"
        "@hookimpl\n"
        "def deploykit_register_target(registry):\n"
        "    registry.add('x', object)\n"
    ))
    monkeypatch.setitem(plugins.BUILTIN_PLUGINS, "misspelt", module)
    plugins.reset()
    try:
        with pytest.raises(PluginError, match=r"plugin 'dk_misspelt' has an invalid hook implementation: .*"
                                              r"deploykit_register_target.*deploykit_register_targets"):
            plugins.get_plugin_manager()
    finally:
        plugins.reset()


def test_a_missing_builtin_is_skipped_but_a_missing_dependency_is_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploykit.errors import PluginError

    monkeypatch.setitem(plugins.BUILTIN_PLUGINS, "gone", "dk_not_installed_anywhere.plugin")
    plugins.reset()
    try:
        assert "local" in plugins.get_registry()  # a trimmed install: the absent plugin is simply not there
        broken = _plugin_module(tmp_path, monkeypatch, "dk_broken", "import dk_its_sdk_is_missing\n")
        monkeypatch.setitem(plugins.BUILTIN_PLUGINS, "broken", broken)
        plugins.reset()
        with pytest.raises(PluginError, match=r"built-in plugin 'broken' \(dk_broken\) cannot be imported: it needs "
                                              r"the module 'dk_its_sdk_is_missing'"):
            plugins.get_plugin_manager()
    finally:
        plugins.reset()


def test_a_plugin_loads_its_own_artifact_sources(bank_model: Path) -> None:
    from deploykit.artifact import Artifact, load_artifact
    from deploykit.hookspecs import hookimpl

    class Plugin:
        @hookimpl
        def deploykit_load_artifact(self, source, schema, credentials):
            if not source.startswith("vault:/"):
                return None
            loaded = load_artifact(bank_model)
            loaded.source = source
            return loaded

    plugins.reset()
    plugins.get_plugin_manager().register(Plugin())
    try:
        answer = load_artifact("vault:/models/bank")
        assert isinstance(answer, Artifact) and answer.source == "vault:/models/bank"
        assert load_artifact(bank_model).source.endswith("bank-model.schema.json")  # the default still answers
    finally:
        plugins.reset()


def test_sources_nobody_loads_say_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploykit.artifact import load_artifact
    from deploykit.errors import ArtifactError

    with pytest.raises(ArtifactError, match=r"no installed plugin loads 'vault:/models/bank'; pass a joblib/pickle"):
        load_artifact("vault:/models/bank")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    monkeypatch.setenv("DEPLOYKIT_PLUGINS", "local,memory")  # the mlflow plugin left out
    plugins.reset()
    try:
        with pytest.raises(ArtifactError, match=r"is an MLflow model directory, but no installed plugin loads those; "
                                                r"install the mlflow extra"):
            load_artifact(folder)
        with pytest.raises(ArtifactError, match=r"no installed plugin loads 'models:/bank@production' "
                                                r"\(pip install 'deploykit\[mlflow\]'\)"):
            load_artifact("models:/bank@production")
    finally:
        monkeypatch.delenv("DEPLOYKIT_PLUGINS")
        plugins.reset()


def test_registering_the_mlflow_plugin_imports_no_mlflow() -> None:
    import subprocess
    import sys

    code = ("import sys; from deploykit.plugins import get_plugin_manager; from deploykit.artifact import load_artifact; "
            "get_plugin_manager(); print('mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
