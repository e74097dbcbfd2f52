"""The core's shape, checked from its source: it imports no plugin, and its modules form no import cycle.

Rule for edges: every ``import``/``from ... import`` statement of a ``deploykit/`` module that
names another ``deploykit`` module is an edge, whether at module level or inside a function
(a lazy import is still a dependency: it only moves the cycle from import time to call time).
Imports under ``if TYPE_CHECKING:`` are not edges: they never run. ``from deploykit import x``
is an edge to ``deploykit.x`` when that is a module, else to the package ``deploykit``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "deploykit"

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, package: str, names: bool = True) -> list[str]:
    """Every module named by an import that runs (TYPE_CHECKING blocks skipped), absolute names;
    with ``names``, also ``module.name`` for each name of a ``from`` import (it may be a submodule)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(module)
            if names:
                found.extend(f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _core(names: bool = True) -> dict[str, list[str]]:
    modules = {}
    for path in sorted(CORE.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        modules[name] = _imports(ast.parse(path.read_text(encoding="utf-8"), str(path)), package, names)
    return modules


def _graph() -> dict[str, set[str]]:
    modules = _core()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, imported in modules.items():
        for target in imported:
            # "from deploykit.x import y": y may be a submodule (deploykit.x.y) or a name in deploykit.x
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target != "deploykit":
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's first occurrence found by depth-first search (enough to name them)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_core_imports_no_plugin() -> None:
    seen = {f"{name}: {target}" for name, imported in _core(names=False).items() for target in imported
            if target.split(".")[0] == "deploykit_plugins"}
    assert not seen, "deploykit/ must not import deploykit_plugins; move this into a plugin hook: " + "; ".join(sorted(seen))


def test_no_import_cycle_among_core_modules() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles in deploykit/: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_registry_is_a_leaf() -> None:
    assert _graph()["deploykit.registry"] <= {"deploykit.errors"}


def test_the_checks_see_lazy_imports_and_skip_type_checking_ones() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import deploykit.never\n"
        "def f():\n    from deploykit_plugins.local import app\n"
        "from . import sibling\n"
    )
    found = _imports(tree, "deploykit")
    assert "deploykit_plugins.local" in found and "deploykit.sibling" in found
    assert "deploykit.never" not in found
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
