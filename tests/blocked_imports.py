"""Run the ``ironloop`` command in a subprocess where some top-level modules cannot be imported.

This stands for a machine where an optional dependency (a database driver, matplotlib) is not installed, without
uninstalling anything: a finder placed first on ``sys.meta_path`` refuses those names.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

_PROGRAM = """
import sys

blocked = set(sys.argv[1].split(",")) - {""}


class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Blocked())
from ironloop.cli import main

sys.exit(main(sys.argv[2:]))
"""


def run_without(blocked: Iterable[str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``ironloop ARGS`` in a subprocess whose imports of the ``blocked`` modules fail as if they were missing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IRONLOOP_"))}
    return subprocess.run(
        [sys.executable, "-c", _PROGRAM, ",".join(blocked), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        check=False,
    )
