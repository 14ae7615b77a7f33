"""Imports point downwards only: no cycle between any two modules, and each package imports only the packages
below it. The layers, bottom first:

    ironloop.version                       the release number
    ironloop.lazy                          a package's names imported on first use (fast ``--help``)
    ironloop.commands                      exit codes and the one-line error every command shares
    ironloop.terminal                      is this a terminal, and a progress bar for long work
    tools                                  the runtime of one call
    settings                               ironloop.toml under the environment (ironloop.settings)
    checkpoints                            the SQL store
    observability                          OpenTelemetry spans and metrics of runs, calls and attempts
    graph                                  the agent graph
    distributed                            workers sharing one database (the runtime, many processes)
    demo                                   the offline demo: scripted model, scenarios, fault-injecting services
    benchmarks                             ironloop bench ... (measures the demo scenario, so it sits above it)
    cli                                    the ironloop command
    ironloop                               the public API and ``python -m ironloop``

So the runtime never imports the demo or the command line, and the benchmarks never import the command line.
Every ``import`` counts, wherever it is (module level, inside a function, under ``TYPE_CHECKING``): a cycle
hidden in a function is still two modules that cannot be read, tested or changed apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = [
    "version",
    "lazy",
    "commands",
    "terminal",
    "tools",
    "settings",
    "checkpoints",
    "observability",
    "graph",
    "distributed",
    "demo",
    "benchmarks",
    "cli",
    "ironloop",
]
"""Packages (and the small modules version, lazy, commands, terminal, settings), bottom first: each imports only
those before it."""
FOLDERS = {
    "graph": "ironloop.graph",
    "tools": "ironloop.tools",
    "tools/mcp": "ironloop.tools.mcp",
    "checkpoints": "ironloop.checkpoints",
    "distributed": "ironloop.distributed",
    "observability": "ironloop.observability",
    "demo": "ironloop.demo",
    "demo/services": "ironloop.demo.services",
    "benchmarks": "ironloop.benchmarks",
    "cli": "ironloop.cli",
    "ironloop": "ironloop",
}


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


def layer(module: str) -> str:
    """The package a module belongs to: ``ironloop.tools.mcp.session`` → ``tools``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "ironloop"


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {name: imports(path, name) & set(known) for name, path in known.items()}
    for name in edges:  # a package's __init__ re-exports its modules; importing a module does not import it back
        edges[name].discard(name)
    return edges


def test_no_module_is_in_an_import_cycle() -> None:
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


@pytest.mark.parametrize("package", LAYERS)
def test_each_package_imports_only_those_below_it(package: str) -> None:
    below = set(LAYERS[: LAYERS.index(package)])
    upward = sorted(
        f"{name} imports {target}"
        for name, path in modules().items()
        if layer(name) == package
        for target in imports(path, name)
        if layer(target) not in below | {package}
    )
    assert not upward, "; ".join(upward)


@pytest.mark.parametrize("lower", ["tools", "checkpoints", "graph", "distributed", "benchmarks"])
def test_the_command_line_is_imported_by_nothing_below_it(lower: str) -> None:
    assert "cli" not in LAYERS[: LAYERS.index(lower)]
    assert not [name for name, path in modules().items() if layer(name) == lower and _imports_layer(path, name, "cli")]


@pytest.mark.parametrize("runtime", ["tools", "checkpoints", "graph", "distributed"])
def test_the_runtime_never_imports_the_demo(runtime: str) -> None:
    assert not [
        name for name, path in modules().items() if layer(name) == runtime and _imports_layer(path, name, "demo")
    ]


def _imports_layer(path: Path, name: str, package: str) -> bool:
    return any(layer(target) == package for target in imports(path, name))
