"""The runtime's modules import each other downwards only: no cycle between any two, and the per-call runtime
(``tools/``) never imports the agent graph, the checkpoints, the command line or the demo.

Every ``import`` counts, wherever it is (module level, inside a function, under ``TYPE_CHECKING``): a cycle
hidden in a function is still two modules that cannot be read, tested or changed apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"graph": "ironloop.graph", "tools": "ironloop.tools"}


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found[name] = path
    return found


def imports(path: Path, name: str) -> set[str]:
    """The ironloop modules ``path`` imports (``from ironloop.tools import errors`` counts as the module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{name}: ironloop's modules import absolutely (ironloop.tools...)"
            base = node.module or ""
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {module for module in found if module.startswith("ironloop.")}


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {name: imports(path, name) & set(known) for name, path in known.items()}
    for name in edges:  # a package's __init__ re-exports its modules; importing a module does not import it back
        edges[name].discard(name)
    return edges


def test_no_module_of_the_runtime_is_in_an_import_cycle() -> None:
    edges = graph()
    for package in FOLDERS.values():  # the packages' __init__ re-export their modules: not part of a cycle
        for name in edges:
            edges[name].discard(package)
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("upper", ["ironloop.graph", "ironloop.checkpoints", "ironloop.cli", "ironloop.demo"])
def test_the_tool_runtime_never_imports_what_sits_above_it(upper: str) -> None:
    for name, path in modules().items():
        if name.startswith("ironloop.tools"):
            assert not {m for m in imports(path, name) if m == upper or m.startswith(upper + ".")}, name
