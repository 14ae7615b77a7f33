"""Tool code raising ``KeyboardInterrupt``, ``SystemExit`` or ``GeneratorExit`` (issue 12, item 16): that call's
error observation, not the end of the run; a real Ctrl-C of the process still stops it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ironloop.graph import build_agent
from ironloop.tools import ToolPolicy
from langchain_core.tools import tool

from tests.helpers import call, observations, record, replay_model, turn

RAISED = {"KeyboardInterrupt": KeyboardInterrupt, "SystemExit": SystemExit, "GeneratorExit": GeneratorExit}


@pytest.mark.parametrize("name", sorted(RAISED))
@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_a_tools_base_exception_is_its_calls_error(name: str, kind: str, mode: str) -> None:
    error = RAISED[name]

    def quit_sync(code: int) -> str:
        """Stop."""
        raise error(code) if error is SystemExit else error()

    async def quit_async(code: int) -> str:
        """Stop."""
        raise error(code) if error is SystemExit else error()

    @tool
    def echo(text: str) -> str:
        """Echo."""
        return text

    quit = tool("quit")(quit_sync if kind == "sync" else quit_async)
    q, e = call("quit", code=3), call("echo", text="still here")
    agent = build_agent(
        replay_model(turn(q, e)), [quit, echo], policies={"quit": ToolPolicy(max_attempts=3, backoff_initial_s=0.0)}
    )
    state_in = {"messages": [("user", "go")]}
    state = agent.invoke(state_in) if mode == "invoke" else asyncio.run(agent.ainvoke(state_in))
    seen = observations(state["messages"])
    assert seen[e["id"]].content == "still here" and state["messages"][-1].content == "done"
    failed = seen[q["id"]]
    assert failed.status == "error" and name in failed.content, failed.content
    assert record(failed)["outcome"] == "error" and len(record(failed)["attempts"]) == 1  # not retried


SCRIPT = """
import asyncio, sys, time
from ironloop.graph import build_agent
from langchain_core.tools import tool
from tests.helpers import call, replay_model, turn

@tool
def wait(seconds: float) -> str:
    '''Wait.'''
    print("started", flush=True)
    time.sleep(seconds)
    return "waited"

agent = build_agent(replay_model(turn(call("wait", seconds=60))), [wait])
state_in = {"messages": [("user", "go")]}
state = agent.invoke(state_in) if sys.argv[1] == "invoke" else asyncio.run(agent.ainvoke(state_in))
print("finished:", state["messages"][-1].content, flush=True)
"""


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_a_real_ctrl_c_still_stops_the_run(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    process = subprocess.Popen(
        [sys.executable, str(script), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "started"
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert "finished" not in out, out
        assert process.returncode != 0 and "KeyboardInterrupt" in err, (process.returncode, err[-2000:])
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
