"""The wheel, installed as a user installs it: not editable, into a fresh virtual environment, and used from a
project of the user's own whose ``tools.py``, ``graph.py``, ``checkpoints.py`` and ``benchmarks.py`` must not
shadow ironloop's packages.

The wheel is built from a copy of the repository's files (tracked, or new and not ignored), so the build neither
writes into the work tree nor sees anything a fresh clone would not have. Its dependencies are resolved from the
package index by uv (a fresh virtual environment with every dependency in a few seconds, from uv's cache once
it has them; pip takes a minute or more for the same).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import ironloop
import pytest
from ironloop.demo.scenario import DEMO_QUESTION, expected_answer, places_in
from ironloop.demo.tasks import corpus_population
from uv import find_uv_bin

ROOT = Path(__file__).resolve().parent.parent

USER_MODULES = ("tools", "graph", "checkpoints", "benchmarks")
"""Names a user's own project commonly has at its top, next to the script that imports ironloop."""

USER_AGENT = """
import asyncio
import sys

import checkpoints
import graph
import tools
import benchmarks
from langchain_core.messages import AIMessage

import ironloop
from ironloop import (
    Approve,
    CircuitBreaker,
    Edit,
    ModelPolicy,
    PermanentToolError,
    RateLimit,
    Reject,
    SQLAlchemySaver,
    TaskBudget,
    ToolPolicy,
    TransientToolError,
    build_agent,
    current_idempotency_key,
)
from ironloop.demo.scripted_model import Replay, ScriptedChatModel

for own in (tools, graph, checkpoints, benchmarks):  # the user's modules are still the user's
    assert own.MINE == own.__name__, own
assert ironloop.__file__.startswith(sys.prefix), ironloop.__file__  # the installed copy, not a source tree
assert "site-packages" in ironloop.tools.__file__, ironloop.tools.__file__

failures = []


def lookup(city: str) -> str:
    \"\"\"Look a city up.\"\"\"
    if not failures:
        failures.append(city)
        raise TransientToolError("the service is busy")
    return f"{city}: found (key {bool(current_idempotency_key())})"


model = ScriptedChatModel(
    script=Replay(
        [
            AIMessage("", tool_calls=[{"name": "lookup", "args": {"city": "Lyon"}, "id": "call_1"}]),
            AIMessage("Lyon was found."),
        ]
    )
)
policy = ToolPolicy(
    max_attempts=3,
    backoff_initial_s=0.01,
    side_effect=True,
    honours_idempotency_key=True,
    rate_limit=RateLimit(calls=50),
    circuit_breaker=CircuitBreaker(),
)
with SQLAlchemySaver.from_url("sqlite:///user-agent.db") as saver:
    agent = build_agent(
        model,
        [lookup],
        policies={"lookup": policy},
        checkpointer=saver,
        model_policy=ModelPolicy(),
        task_budget=TaskBudget(),
    )
    config = {"configurable": {"thread_id": "user-1"}}
    state = asyncio.run(agent.ainvoke({"messages": [("user", "Find Lyon")]}, config))
    observation = state["messages"][2].content
    assert "Lyon: found (key True)" in observation, observation
    assert state["messages"][-1].content == "Lyon was found."
    assert failures == ["Lyon"]  # one transient failure, retried
    stored = saver.get_tuple(config)
    assert stored is not None and len(stored.checkpoint["channel_values"]["messages"]) == 4
assert Approve and Reject and Edit and PermanentToolError
print("user agent ok", ironloop.__version__)
"""


@dataclass
class Installed:
    wheel: Path
    python: Path
    bin: Path
    project: Path


def _run(command: list[str | Path], *, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IRONLOOP_", "PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _source_copy(target: Path) -> Path:
    """The repository's files as a fresh clone would have them (plus new files not yet committed)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("packaging")
    source = _source_copy(work / "source")
    dist = work / "dist"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, source],
        cwd=work,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("ironloop-*.whl")
    venv = work / "venv"
    uv = find_uv_bin()
    made = _run([uv, "venv", "-q", "--python", sys.executable, venv], cwd=work)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    added = _run([uv, "pip", "install", "-q", "--python", python, wheel], cwd=work)
    assert added.returncode == 0, added.stderr[-3000:]
    project = work / "project"
    project.mkdir()
    for name in USER_MODULES:
        (project / f"{name}.py").write_text(f'"""The user\'s own {name}."""\n\nMINE = "{name}"\n')
    yield Installed(wheel, python, venv / "bin", project)


def test_the_wheels_only_top_level_package_is_ironloop(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        (info,) = {name.split("/")[0] for name in names if ".dist-info/" in name}
        top_level = wheel.read(f"{info}/top_level.txt").decode().split()
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
    assert top_level == ["ironloop"]
    assert {name.split("/")[0] for name in names} == {"ironloop", info}
    assert "ironloop/py.typed" in names and "ironloop/tools/__init__.py" in names
    assert f"{info}/licenses/LICENSE" in names
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Version"] == ironloop.__version__
    required = [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert not [r for r in required if r.startswith(("psycopg", "pymysql"))], required  # drivers are extras
    assert {"postgres", "mysql", "bench", "test"} <= set(metadata.get_all("Provides-Extra") or [])


def test_the_installed_copy_is_not_the_source_tree(installed: Installed) -> None:
    result = _run(
        [installed.python, "-c", "import ironloop.graph; print(ironloop.graph.__file__)"], cwd=installed.project
    )
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.is_relative_to(installed.python.parent.parent), path
    assert not path.is_relative_to(ROOT), path


def test_a_users_agent_runs_against_sqlite_beside_their_own_modules(installed: Installed) -> None:
    script = installed.project / "agent.py"
    script.write_text(textwrap.dedent(USER_AGENT))
    result = _run([installed.python, script], cwd=installed.project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == f"user agent ok {ironloop.__version__}"
    assert (installed.project / "user-agent.db").is_file()


def test_ironloop_demo_from_the_users_project(installed: Installed) -> None:
    result = _run([installed.bin / "ironloop", "demo", "--db", "sqlite:///demo.db"], cwd=installed.project)
    assert result.returncode == 0, result.stderr[-3000:]
    places = places_in(DEMO_QUESTION)
    answer = expected_answer(places, [corpus_population(place) for place in places])  # the demo's own success check
    assert result.stdout.strip().splitlines()[-1].startswith(f"answer: {answer} ("), result.stdout[-500:]
    version = _run([installed.bin / "ironloop", "--version"], cwd=installed.project)
    assert version.stdout == f"ironloop {ironloop.__version__}\n"
