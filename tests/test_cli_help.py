"""Every argument of every command says what it is, its default and its choices (``--help`` is the manual)."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest
from ironloop.benchmarks import BENCHMARKS
from ironloop.cli.app import build_parser
from ironloop.cli.help import apply, arguments, expanded, shows_default


def bench_parser(name: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"ironloop.benchmarks.{name}")
    parser = argparse.ArgumentParser(prog=f"ironloop bench {name}")
    module.add_arguments(parser)
    return apply(parser)


def problems(parser: argparse.ArgumentParser) -> list[str]:
    found = []
    for prog, action in arguments(parser):
        name = f"{prog} {'/'.join(action.option_strings) or action.dest}"
        text = expanded(action)
        if not (action.help or "").strip():
            found.append(f"{name}: no help text")
        if shows_default(action) and "default" not in text:
            found.append(f"{name}: the default ({action.default!r}) is not said")
        if shows_default(action) and "%(default)s" in (action.help or "") and str(action.default) not in text:
            found.append(f"{name}: the default ({action.default!r}) is not shown")
        for choice in action.choices or ():
            if str(choice) not in text:
                found.append(f"{name}: choice {choice!r} is not listed")
    return found


def test_every_command_argument_has_help_with_its_default_and_choices() -> None:
    assert problems(build_parser()) == []


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_argument_has_help_with_its_default_and_choices(name: str) -> None:
    assert problems(bench_parser(name)) == []


def test_help_prints_the_defaults() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ironloop", "threads", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "(default: 50)" in " ".join(done.stdout.split())
