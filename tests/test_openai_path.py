"""The real model path: ChatOpenAI against an OpenAI-compatible server on 127.0.0.1, from Python and the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from ironloop.demo.scenario import DEMO_QUESTION
from ironloop.graph import build_agent
from ironloop.tools.builtin import BUILTIN_POLICIES, builtin_tools
from langchain_core.messages import AIMessageChunk, ToolMessage
from langchain_openai import ChatOpenAI

from tests.openai_server import OpenAIStub

ANSWER = "The combined city-proper population of Paris and Lyon is 2,673,000 (2,160,000 + 513,000)."


@pytest.fixture
def stub():
    with OpenAIStub() as server:
        yield server


def openai_agent(stub: OpenAIStub, search_url: str, *, streaming: bool = False):
    model = ChatOpenAI(
        model="stub-model", base_url=stub.base_url, api_key="test-key", streaming=streaming, max_retries=0, timeout=10
    )
    return build_agent(model, builtin_tools(search_url), policies=BUILTIN_POLICIES)


def test_parallel_tool_calls_end_to_end(stub: OpenAIStub, search_service) -> None:
    service, _ = search_service
    state = openai_agent(stub, service.url).invoke({"messages": [("user", DEMO_QUESTION)]})
    assert state["messages"][-1].content == ANSWER
    assert len(stub.requests) == 3
    first = stub.requests[0]
    assert {t["function"]["name"] for t in first["tools"]} == {"search", "calc", "charge_card"}
    second = stub.requests[1]["messages"]
    assert [m["role"] for m in second[-3:]] == ["assistant", "tool", "tool"]
    assert len(second[-3]["tool_calls"]) == 2  # both searches went out in one turn
    assert "2,160,000" in second[-2]["content"] + second[-1]["content"]


async def test_streaming_tokens_and_tool_call_deltas(stub: OpenAIStub, search_service) -> None:
    service, _ = search_service
    agent = openai_agent(stub, service.url, streaming=True)
    tokens: list[str] = []
    tool_chunks = 0
    async for message, _meta in agent.astream({"messages": [("user", DEMO_QUESTION)]}, stream_mode="messages"):
        if isinstance(message, AIMessageChunk):
            tokens.append(str(message.content))
            tool_chunks += len(message.tool_call_chunks)
    assert all(request["stream"] for request in stub.requests)
    assert "".join(tokens).endswith(ANSWER)
    assert len([t for t in tokens if t]) > 5  # the answer came word by word
    assert tool_chunks >= 6  # 3 calls, each streamed as a head and argument pieces


def test_streamed_tool_calls_are_assembled(stub: OpenAIStub, search_service) -> None:
    service, _ = search_service
    state = openai_agent(stub, service.url, streaming=True).invoke({"messages": [("user", DEMO_QUESTION)]})
    searches = [m for m in state["messages"] if isinstance(m, ToolMessage) and m.name == "search"]
    assert len(searches) == 2 and state["messages"][-1].content == ANSWER


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IRONLOOP_"))}
    return subprocess.run(
        [sys.executable, "-m", "ironloop", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **(env or {})},
    )


def test_cli_run_prints_trajectory_and_answer_last(stub: OpenAIStub, search_service) -> None:
    service, _ = search_service
    result = _cli(
        "run",
        DEMO_QUESTION,
        "--model",
        "stub-model",
        "--base-url",
        stub.base_url,
        "--api-key",
        "k",
        "--search-url",
        service.url,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == ANSWER
    assert any("search(query='Paris population')" in line for line in lines)


def test_cli_run_reads_the_environment(stub: OpenAIStub) -> None:
    env = {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": stub.base_url, "IRONLOOP_MODEL": "stub-model"}
    result = _cli("run", DEMO_QUESTION, env=env)  # search: the bundled service, started by the command
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == ANSWER
    assert stub.requests[0]["model"] == "stub-model"


def test_cli_run_without_a_key_is_one_line() -> None:
    result = _cli("run", "hi", "--model", "m")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no API key" in result.stderr


def test_cli_run_against_a_dead_endpoint_is_one_line() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]  # nothing listens once the probe closes
    result = _cli(
        "run",
        "hi",
        "--model",
        "m",
        "--api-key",
        "k",
        "--base-url",
        f"http://127.0.0.1:{dead}/v1",
        "--search-url",
        "http://127.0.0.1:9",
        "--model-attempts",
        "2",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert f"the model endpoint failed: m at http://127.0.0.1:{dead}/v1: Connection error" in result.stderr
    assert "(after 2 attempts)" in result.stderr


def test_cli_run_streams_tokens_and_tool_events(stub: OpenAIStub, search_service) -> None:
    service, _ = search_service
    result = _cli(
        "run",
        DEMO_QUESTION,
        "--model",
        "stub-model",
        "--base-url",
        stub.base_url,
        "--api-key",
        "k",
        "--search-url",
        service.url,
        "--stream",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert f"turn 3  model ▸ {ANSWER}" in lines  # the answer's tokens, as they came
    assert any("attempt 1: ok" in line for line in lines)  # tool events, live
    assert lines[-1] == ANSWER
    assert all(request["stream"] for request in stub.requests)
