"""The command's start: ``--version``, and ``--help`` of every command without the heavy packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ironloop
import pytest

COMMAND = Path(sys.executable).with_name("ironloop")
"""The console script installed beside this interpreter."""


@pytest.mark.parametrize("launcher", [[str(COMMAND)], [sys.executable, "-m", "ironloop"]], ids=["script", "module"])
def test_version(launcher: list[str]) -> None:
    result = subprocess.run([*launcher, "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ironloop {ironloop.__version__}\n"
    assert ironloop.__version__.count(".") == 2


HEAVY = ("langgraph", "langchain", "langchain_core", "langchain_openai", "sqlalchemy", "alembic", "matplotlib")
"""Packages that take seconds to import: ``--help`` must not need them."""

_EVERY_HELP = """
import argparse
import sys

from ironloop.benchmarks import BENCHMARKS
from ironloop.cli import main
from ironloop.cli.app import build_parser


def commands(parser, path=()):
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


heavy = set(sys.argv[1].split(","))
every = [*commands(build_parser()), *(("bench", name) for name in BENCHMARKS)]
for command in every:
    try:
        main([*command, "--help"])
    except SystemExit as stop:
        assert stop.code == 0, (command, stop.code)
    else:
        raise AssertionError(f"{command}: --help did not exit")
    loaded = sorted(name for name in sys.modules if name.partition(".")[0] in heavy)
    assert not loaded, f"ironloop {' '.join(command)} --help imported {loaded[:5]}"
print(len(every), "commands")
"""


def test_help_of_every_command_imports_no_heavy_package() -> None:
    """``ironloop --help``, ``ironloop COMMAND --help`` and ``ironloop bench NAME --help`` (one process, so the
    first command that imports a heavy package is the one named)."""
    result = subprocess.run(
        [sys.executable, "-c", _EVERY_HELP, ",".join(HEAVY)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    count = int(result.stdout.split()[-2])
    assert count >= 20, result.stdout  # the walk found the commands (top level, subcommands, benchmarks)
    assert "usage: ironloop bench chaos" in result.stdout
