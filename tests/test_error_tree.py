"""One error tree: every exception class ironloop defines derives from `IronloopError` (a few named ones aside), and
the drawing in `ironloop.tools.errors`' docstring shows each of them under its real parent."""

from __future__ import annotations

import ast
import importlib
import re

from ironloop.tools import errors
from ironloop.tools.errors import IronloopError

from tests.test_import_graph import FOLDERS, ROOT

OUTSIDE_THE_TREE = {
    "ironloop.commands.CommandError": "how a command exits, not what went wrong",
    "ironloop.tools.mcp.tools.MCPToolError": "LangChain's ToolException: an MCP tool's own error answer",
    "ironloop.cli.decisions.NothingToDecide": "control flow inside the command line",
    "ironloop.cli.decisions.ContinuedElsewhere": "control flow inside the command line",
    "ironloop.cli.app._Stopped": "control flow inside the command line (SIGTERM)",
}


def defined_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in ironloop's modules, by qualified name."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            classes = [n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef)]
            if not classes:
                continue
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            module = importlib.import_module(name)
            for cls in (getattr(module, c) for c in classes):
                if isinstance(cls, type) and issubclass(cls, BaseException):
                    found[f"{name}.{cls.__qualname__}"] = cls
    return found


def drawn_parents(docstring: str) -> dict[str, str]:
    """Each class in the drawing and the class it hangs from, read from the indentation."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in docstring.splitlines():
        match = re.match(r"^( *(?:[│ ] {3})*)(?:[├└]── )?([A-Z]\w+)(?=\s|$)", line)
        if not match or ("──" not in line and match.group(2) != "IronloopError"):
            continue
        depth = len(match.group(1)) // 4 + ("──" in line)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[match.group(2)] = stack[-1][1]
        stack.append((depth, match.group(2)))
    return parents


def in_tree(cls: type) -> bool:
    return issubclass(cls, IronloopError)


def test_every_exception_ironloop_defines_is_under_the_root() -> None:
    outside = {name for name, cls in defined_exceptions().items() if not in_tree(cls)}
    assert outside == set(OUTSIDE_THE_TREE), "derive these from IronloopError, or say why not"


def test_the_drawing_shows_every_class_under_its_parent() -> None:
    drawn = drawn_parents(errors.__doc__ or "")
    actual = {}
    for cls in defined_exceptions().values():
        if in_tree(cls) and cls is not IronloopError:
            actual[cls.__name__] = next(b for b in cls.__bases__ if in_tree(b)).__name__
    assert drawn == actual


def test_the_drawing_reader_reads_nesting() -> None:
    """The reader itself, on a drawing whose answer is known (so the test above cannot pass by reading nothing)."""
    drawing = """
    IronloopError
    ├── Alpha                 a
    │   ├── Beta (ValueError)   b
    │   │   └── Gamma         c
    │   └── Delta             d
    └── Epsilon               e
    """
    expected = {
        "Alpha": "IronloopError",
        "Beta": "Alpha",
        "Gamma": "Beta",
        "Delta": "Alpha",
        "Epsilon": "IronloopError",
    }
    assert drawn_parents(drawing) == expected
