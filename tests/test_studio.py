"""LangGraph Studio's server (``langgraph dev``) runs the demo graph offline and persists to our database."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from ironloop.checkpoints import SQLAlchemySaver
from langgraph_sdk import get_client

ROOT = Path(__file__).resolve().parents[1]
ANSWER = "The combined city-proper population of Paris and Lyon is 2,673,000 (2,160,000 + 513,000)."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dev_server(tmp_path: Path):
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'studio.db'}"
    env = {
        **os.environ,
        "IRONLOOP_DB_URL": db_url,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "IRONLOOP_SEARCH_PROFILE": "none",
    }
    env.pop("IRONLOOP_SEARCH_URL", None)
    log = open(tmp_path / "dev.log", "w")  # noqa: SIM115 - closed below
    langgraph = Path(sys.executable).with_name("langgraph")
    process = subprocess.Popen(
        [str(langgraph), "dev", "--no-browser", "--no-reload", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"langgraph dev did not start:\n{(tmp_path / 'dev.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, db_url, tmp_path / "dev.log"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_langgraph_dev_runs_the_demo_and_persists_to_our_database(dev_server) -> None:
    url, db_url, log_path = dev_server

    async def scenario() -> tuple[str, dict, list]:
        client = get_client(url=url)
        thread = await client.threads.create()
        final = await client.runs.wait(
            thread["thread_id"],
            "ironloop",
            input={"messages": [{"role": "user", "content": "What is the combined population of Paris and Lyon?"}]},
        )
        history = await client.threads.get_history(thread["thread_id"], limit=50)
        return thread["thread_id"], final, history

    thread_id, final, history = asyncio.run(scenario())
    assert final["messages"][-1]["content"] == ANSWER
    assert len(history) >= 7  # input, start, model, tools, model, tools, model
    assert "Using custom checkpointer: SQLAlchemySaver" in log_path.read_text()
    with SQLAlchemySaver.from_url(db_url) as saver:
        stored = list(saver.list({"configurable": {"thread_id": thread_id}}))
    assert len(stored) == len(history)
    assert stored[0].checkpoint["channel_values"]["messages"][-1].content == ANSWER
