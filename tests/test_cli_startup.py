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
