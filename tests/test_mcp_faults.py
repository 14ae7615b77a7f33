"""MCP tools under faults, through `MCPServers` and the agent: our fault-injecting server over stdio and HTTP.

Every claim is read off the server's own ledger (`tests.mcp_fault_server`): what it started, ran, was told to
cancel, and changed.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from ironloop.cli.trajectory import TrajectoryPrinter
from ironloop.graph import build_agent
from ironloop.tools import ToolPolicy
from ironloop.tools.credentials import Credentials, Secret
from ironloop.tools.idempotency import MemoryIdempotencyStore
from ironloop.tools.mcp import IDEMPOTENCY_KEY_META, MCPServers, MCPServerUnavailable, policies_for, retry_on_error_text
from ironloop.tools.records import CallOutcome
from ironloop.tools.untrusted import unwrap_untrusted
from langchain_core.tools import InjectedToolArg, tool

from tests.helpers import call, observations, record, replay_model, turn
from tests.mcp_helpers import FaultServer, config, free_port, pid_alive, wait_until

FAST = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "jitter": 0.0}
TRANSPORTS = ["stdio", "http"]


@pytest.fixture(params=TRANSPORTS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaultServer]:
    fault_server = FaultServer(tmp_path / "server", request.param)
    try:
        yield fault_server
    finally:
        fault_server.stop()


async def run_agent(mcp: MCPServers, *calls: dict, policies: dict | None = None, **agent_kwargs) -> dict:
    agent = build_agent(
        replay_model(turn(*calls)), mcp.tools, policies={**mcp.policies, **(policies or {})}, **agent_kwargs
    )
    return await agent.ainvoke({"messages": [("user", "go")]}, {"configurable": {"thread_id": "t1"}})


async def killed_mid_call(server: FaultServer, tool: str, **agent_kwargs) -> tuple[dict, int]:
    """Run one call of ``tool`` (which pauses the first time), SIGKILL the server during the pause (over HTTP its
    supervisor then brings it back on the same port), and return the run's result and the sessions started."""
    entry = server.entry(trust=True, policies={tool: FAST})
    async with MCPServers.from_config(config(faults=entry)) as mcp:
        running = asyncio.ensure_future(run_agent(mcp, call(tool, item="x", pause_once_s=30), **agent_kwargs))
        await asyncio.to_thread(server.wait_for, "pausing", tool=tool)
        await asyncio.to_thread(server.kill)
        if server.transport == "http":
            await asyncio.to_thread(server.start_http)
        result = await asyncio.wait_for(running, 90)  # a guard against a hang, not a timing check
        return result, mcp.connections["faults"].starts


async def test_one_long_lived_session_serves_every_call(server: FaultServer) -> None:
    async with MCPServers.from_config(config(faults=server.entry(trust=True))) as mcp:
        result = await run_agent(mcp, *(call("read", item=f"i{n}") for n in range(5)))
        result = await run_agent(mcp, call("read", item="again"))
    seen = observations(result["messages"])
    assert [m.text for m in seen.values()] == ["value of again"]
    assert len(server.events("start")) == 1, "one server process for every call"
    assert len(server.events("begin")) == 6
    assert mcp.connections["faults"].starts == 1


async def test_transient_jsonrpc_errors_are_retried(server: FaultServer) -> None:
    async with MCPServers.from_config(config(faults=server.entry(trust=True, policies={"flaky": FAST}))) as mcp:
        a, b = call("flaky", item="a", failures=2), call("flaky", item="b", failures=9)
        result = await run_agent(mcp, a, b)
    seen = observations(result["messages"])
    got = [seen[a["id"]], seen[b["id"]]]
    assert got[0].text == "value of a after 3 tries"
    assert [a["outcome"] for a in record(got[0])["attempts"]] == ["transient_error", "transient_error", "ok"]
    assert got[1].status == "error" and "temporary" in got[1].text
    assert "pool exhausted" in got[1].text and "JSON-RPC -32603" in got[1].text
    assert len(server.events("jsonrpc_error")) == 2 + 3


async def test_a_call_that_times_out_is_cancelled_on_the_server(server: FaultServer) -> None:
    policy = {"hang": {"timeout_s": 0.3, "max_attempts": 1}}
    async with MCPServers.from_config(config(faults=server.entry(trust=True, policies=policy))) as mcp:
        result = await run_agent(mcp, call("hang"))
        # the notice goes out from a task of the session's: wait off the event loop, so that task can run
        begun = (await asyncio.to_thread(server.wait_for, "begin", tool="hang"))[0]
        cancelled = (await asyncio.to_thread(server.wait_for, "cancelled", tool="hang"))[0]
        session = mcp.connections["faults"].session
        assert session is not None
        for _ in range(200):  # the notice's own POST may still be answering when the server has logged it
            if session.cancellations_sent:
                break
            await asyncio.sleep(0.05)
        assert session.cancellations_sent == 1
    (seen,) = observations(result["messages"]).values()
    assert seen.status == "error" and record(seen)["attempts"][0]["outcome"] == "timeout"
    assert cancelled["request_id"] == begun["request_id"], "the server was told which request to stop"


async def test_a_cancel_notice_goes_out_even_when_the_session_closes_right_after(server: FaultServer) -> None:
    policy = {"hang": {"timeout_s": 0.3, "max_attempts": 1}}
    async with MCPServers.from_config(config(faults=server.entry(trust=True, policies=policy))) as mcp:
        result = await run_agent(mcp, call("hang"))
    (seen,) = observations(result["messages"]).values()
    assert record(seen)["attempts"][0]["outcome"] == "timeout"
    begun = server.wait_for("begin", tool="hang")[0]
    cancelled = server.wait_for("cancelled", tool="hang", timeout_s=10)[0]
    assert cancelled["request_id"] == begun["request_id"]


async def test_a_read_in_flight_when_the_server_is_killed_is_retried(server: FaultServer) -> None:
    result, starts = await killed_mid_call(server, "read")
    (seen,) = observations(result["messages"]).values()
    assert seen.text == "value of x"
    assert record(seen)["outcome"] == "ok" and len(record(seen)["attempts"]) >= 2
    assert len(server.events("begin")) >= 2 and starts >= 2
    if server.transport == "stdio":
        assert len(server.events("start")) == 2, "the stdio server was restarted once"


async def test_a_write_in_flight_when_the_server_is_killed_is_not_repeated(server: FaultServer) -> None:
    result, _ = await killed_mid_call(server, "write", idempotency_store=MemoryIdempotencyStore())
    (seen,) = observations(result["messages"]).values()
    assert record(seen)["outcome"] == CallOutcome.UNKNOWN
    assert seen.text.startswith("Outcome unknown: write may have happened")
    assert len(server.events("effect")) == 1, "the write was made once and never repeated"


async def test_an_idempotent_write_is_retried_with_its_key_and_the_server_dedupes(server: FaultServer) -> None:
    result, _ = await killed_mid_call(server, "keyed_write")  # idempotentHint: honours_idempotency_key
    (seen,) = observations(result["messages"]).values()
    assert seen.text == "keyed_write x: done" and record(seen)["outcome"] == "ok"
    assert len(record(seen)["attempts"]) >= 2
    effects = server.events("effect")
    assert len(effects) == 1, "one effect for one logical call"
    keys = {e["meta"].get(IDEMPOTENCY_KEY_META) for e in server.events("begin")}
    assert keys == {record(seen)["idempotency_key"]}, "every attempt carried the call's key in _meta"
    assert effects[0]["key"] == record(seen)["idempotency_key"]


async def test_only_side_effect_calls_carry_an_idempotency_key(server: FaultServer) -> None:
    async with MCPServers.from_config(config(faults=server.entry(trust=True))) as mcp:
        append = call("append", item="a")
        result = await run_agent(mcp, call("read", item="r"), append)
    by_tool = {e["tool"]: e["meta"] for e in server.events("begin")}
    assert IDEMPOTENCY_KEY_META not in by_tool["read"]
    key = record(observations(result["messages"])[append["id"]])["idempotency_key"]
    assert key and by_tool["append"][IDEMPOTENCY_KEY_META] == key


async def test_progress_notifications_reach_the_custom_stream_and_the_trajectory(server: FaultServer) -> None:
    printed = io.StringIO()
    printer = TrajectoryPrinter(printed)
    async with MCPServers.from_config(config(faults=server.entry(trust=True))) as mcp:
        agent = build_agent(replay_model(turn(call("slow", steps=3, delay_s=0.05))), mcp.tools, policies=mcp.policies)
        events = []
        async for mode, chunk in agent.astream({"messages": [("user", "go")]}, stream_mode=["custom", "updates"]):
            printer.feed(mode, chunk)
            if mode == "custom" and chunk.get("event") == "tool_progress":
                events.append(chunk)
    assert [(e["progress"], e["total"], e["message"]) for e in events] == [
        (1, 3, "step 1 of 3"),
        (2, 3, "step 2 of 3"),
        (3, 3, "step 3 of 3"),
    ]
    assert {e["tool"] for e in events} == {"slow"} and all(e["tool_call_id"] for e in events)
    lines = printed.getvalue().splitlines()
    assert any(line.strip().endswith("progress 2/3  step 2 of 3") for line in lines), lines
    assert any(line.strip() == "slow ⇒ did 3 steps" for line in lines), lines


async def test_an_is_error_result_is_the_tools_observation_not_retried_by_default(server: FaultServer) -> None:
    async with MCPServers.from_config(config(faults=server.entry(trust=True))) as mcp:
        result = await run_agent(mcp, call("upstream", item="q", failures=1))
    (seen,) = observations(result["messages"]).values()
    assert seen.status == "error"
    assert "HTTP 503 Service Unavailable" in seen.text
    assert len(record(seen)["attempts"]) == 1
    assert len(server.events("begin")) == 1


async def test_images_pass_through_as_content_blocks(server: FaultServer) -> None:
    from tests.mcp_fault_server import RED_PIXEL_PNG

    async with MCPServers.from_config(config(faults=server.entry(trust=True))) as mcp:
        result = await run_agent(mcp, call("picture"))
    (seen,) = observations(result["messages"]).values()
    assert seen.content == [
        {"type": "text", "text": "a red pixel"},
        {"type": "image", "base64": RED_PIXEL_PNG, "mime_type": "image/png"},
    ]


async def test_a_server_that_cannot_start_is_one_clear_error(tmp_path: Path) -> None:
    dead = {"command": "python3", "args": ["-c", "import sys; sys.exit(4)"]}
    with pytest.raises(MCPServerUnavailable, match=r"MCP server 'dead' \(python3 -c .*\) could not be started"):
        async with MCPServers.from_config(config(dead=dead)):
            pass
    closed = {"url": f"http://127.0.0.1:{free_port()}/mcp"}
    with pytest.raises(MCPServerUnavailable, match=r"MCP server 'closed'.*could not be started"):
        async with MCPServers.from_config(config(closed=closed)):
            pass


@pytest.mark.parametrize("transport", ["stdio"])
async def test_a_hung_server_is_restarted(tmp_path: Path, transport: str) -> None:
    server = FaultServer(tmp_path / "server", transport)
    policies = {"freeze": {"timeout_s": 0.3, "max_attempts": 1}, "read": FAST}
    entry = server.entry(trust=True, policies=policies)
    async with MCPServers.from_config(config(faults=entry), ping_timeout_s=0.5) as mcp:
        frozen = await run_agent(mcp, call("freeze", seconds=120))
        hung_pid = server.events("start")[-1]["pid"]
        connection = mcp.connections["faults"]
        await asyncio.to_thread(wait_until, lambda: connection.session is None, 10, "the ping to fail")
        result = await run_agent(mcp, call("read", item="after"))
        await asyncio.to_thread(wait_until, lambda: not pid_alive(hung_pid), 10, "the hung process to be killed")
    assert record(next(iter(observations(frozen["messages"]).values())))["attempts"][0]["outcome"] == "timeout"
    assert next(iter(observations(result["messages"]).values())).text == "value of after"
    assert connection.starts == 2 and len(server.events("start")) == 2


async def test_a_dropped_http_session_is_established_again(tmp_path: Path) -> None:
    server = FaultServer(tmp_path / "server", "http")
    try:
        async with MCPServers.from_config(config(faults=server.entry(trust=True, policies={"read": FAST}))) as mcp:
            first = await run_agent(mcp, call("read", item="one"))
            await asyncio.to_thread(server.kill)  # the server restarts between calls: it forgets the session,
            await asyncio.to_thread(server.start_http)  # and its id now answers 404
            second = await run_agent(mcp, call("read", item="two"))
            starts = mcp.connections["faults"].starts
    finally:
        server.stop()
    assert next(iter(observations(first["messages"]).values())).text == "value of one"
    (seen,) = observations(second["messages"]).values()
    assert seen.text == "value of two" and starts == 2
    assert [a["outcome"] for a in record(seen)["attempts"]] == ["transient_error", "ok"]
    assert "no longer knows this session" in record(seen)["attempts"][0]["error"]


def test_with_block_serves_invoke_from_any_thread(server: FaultServer) -> None:
    with MCPServers.from_config(config(faults=server.entry(trust=True))) as mcp:

        def agent():  # a fresh scripted model each time: a replay is spent once played
            return build_agent(replay_model(turn(call("read", item="s"))), mcp.tools, policies=mcp.policies)

        first = agent().invoke({"messages": [("user", "go")]})  # tool calls on private loops, in threads
        second = asyncio.run(agent().ainvoke({"messages": [("user", "go")]}))
    for result in (first, second):
        assert next(iter(observations(result["messages"]).values())).text == "value of s"
    assert len(server.events("start")) == 1


async def test_untrusted_servers_get_conservative_policies(server: FaultServer) -> None:
    async with MCPServers.from_config(config(faults=server.entry())) as mcp:
        policies = mcp.policies
    assert all(p.side_effect and p.untrusted_output and not p.honours_idempotency_key for p in policies.values())


def test_explicit_policies_win(server: FaultServer) -> None:
    explicit = {"read": ToolPolicy(max_attempts=7), "write": {"max_attempts": 2, "approval": "always"}}
    with MCPServers.from_config(config(faults=server.entry(trust=True, policies=explicit))) as mcp:
        policies = {s.name: s for s in mcp.served}
    assert policies["read"].policy == ToolPolicy(max_attempts=7)
    assert policies["write"].policy.side_effect and policies["write"].policy.max_attempts == 2
    assert policies["write"].policy.approval_mode == "always"
    assert policies["write"].choice.reasons[-1] == "explicit: max_attempts=2, approval='always'"


async def test_an_is_error_result_is_retried_when_retry_on_reads_it(server: FaultServer) -> None:
    retrying = {"upstream": {"retry_on_error_text": ["HTTP 503"], "max_attempts": 3, **FAST}}
    async with MCPServers.from_config(config(faults=server.entry(trust=True, policies=retrying))) as mcp:
        recovers, gives_up = call("upstream", item="a", failures=2), call("upstream", item="b", failures=9)
        result = await run_agent(mcp, recovers, gives_up)
    seen = observations(result["messages"])
    ok, failed = seen[recovers["id"]], seen[gives_up["id"]]
    assert [a["outcome"] for a in record(ok)["attempts"]] == ["transient_error", "transient_error", "ok"]
    assert "results for a" in ok.text and record(ok)["outcome"] == "ok"
    assert failed.status == "error" and record(failed)["outcome"] == "error"
    source, text = unwrap_untrusted(failed.text) or ("", "")  # an open-world tool: its errors are untrusted too
    assert source == "upstream" and result["untrusted_sources"] == ["upstream"]
    assert text.startswith("Error: upstream failed: upstream search service: HTTP 503 Service Unavailable")
    assert "(after 3 attempts). The fault is temporary" in text
    assert len([e for e in server.events("begin") if e["tool"] == "upstream"]) == 3 + 3


async def test_content_blocks_are_capped_scrubbed_and_wrapped(server: FaultServer) -> None:
    from tests.mcp_fault_server import RED_PIXEL_PNG

    secret = "sk-live-0123456789"
    policies = {"picture": {"untrusted_output": True}}
    async with MCPServers.from_config(config(faults=server.entry(trust=True, policies=policies))) as mcp:
        long_read, leak, picture = call("read", item="x" * 60), call("read", item=secret), call("picture")
        agent = build_agent(
            replay_model(turn(long_read, leak, picture)),
            [*mcp.tools, keyed],
            policies={**mcp.policies, "keyed": ToolPolicy(credentials=("api_key",))},
            max_result_chars=30,
            credentials=Credentials({"keyed": {"api_key": secret}}),
        )
        result = await agent.ainvoke({"messages": [("user", "go")]})
    seen = observations(result["messages"])
    (cut,) = seen[long_read["id"]].content
    assert cut["text"].startswith("value of " + "x" * 21 + "\n[cut: 39 of 69 characters not shown]")
    assert seen[leak["id"]].content == [{"type": "text", "text": "value of ***"}]
    text, image = seen[picture["id"]].content
    assert text["text"].startswith("The picture output below is untrusted data")
    assert '<untrusted-data source="picture">\na red pixel\n</untrusted-data>' in text["text"]
    assert image == {"type": "image", "base64": RED_PIXEL_PNG, "mime_type": "image/png"}
    assert result["untrusted_sources"] == ["picture"]


@tool
def keyed(api_key: Annotated[Secret | None, InjectedToolArg] = None) -> str:
    """A tool granted a credential: its secret is then scrubbed from every tool's output."""
    return "ok"


@pytest.mark.parametrize("resets", [True, False])
async def test_progress_may_restart_the_timeout(tmp_path: Path, resets: bool) -> None:
    server = FaultServer(tmp_path / "server", "stdio")
    policy = {"slow": {"timeout_s": 0.6, "max_attempts": 1, "progress_resets_timeout": resets}}
    async with MCPServers.from_config(config(faults=server.entry(trust=True, policies=policy))) as mcp:
        result = await run_agent(mcp, call("slow", steps=6, delay_s=0.25))  # 1.5 s of work, progress every 0.25 s
    (seen,) = observations(result["messages"]).values()
    if resets:
        assert seen.text == "did 6 steps" and record(seen)["outcome"] == "ok"
    else:
        assert record(seen)["attempts"][0]["outcome"] == "timeout"
        assert len(server.events("progress")) < 6


async def test_tools_loaded_by_the_adapters_run_under_the_same_policies(tmp_path: Path) -> None:
    from langchain_mcp_adapters.client import MultiServerMCPClient

    server = FaultServer(tmp_path / "server", "stdio")
    entry = server.entry()
    client = MultiServerMCPClient(
        {"faults": {"transport": "stdio", "command": entry["command"], "args": entry["args"]}}
    )
    tools = [t for t in await client.get_tools() if t.name == "upstream"]
    policies = {
        name: p.but(retry_on=retry_on_error_text(["HTTP 503"]), **FAST)
        for name, p in policies_for(tools, trusted=True).items()
    }
    recovers = call("upstream", item="a", failures=1)
    agent = build_agent(replay_model(turn(recovers)), tools, policies=policies)
    result = await agent.ainvoke({"messages": [("user", "go")]})
    seen = observations(result["messages"])[recovers["id"]]
    assert [a["outcome"] for a in record(seen)["attempts"]] == ["transient_error", "ok"]
    assert "results for a" in seen.text


async def test_approval_applies_to_mcp_side_effects_after_untrusted_output(tmp_path: Path) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    server = FaultServer(tmp_path / "server", "stdio")
    async with MCPServers.from_config(config(faults=server.entry(trust=True))) as mcp:
        read, write = call("upstream", item="q", failures=0), call("write", item="w")
        agent = build_agent(
            replay_model(turn(read), turn(write)), mcp.tools, policies=mcp.policies, checkpointer=InMemorySaver()
        )
        result = await agent.ainvoke({"messages": [("user", "go")]}, {"configurable": {"thread_id": "a"}})
    assert result["untrusted_sources"] == ["upstream"]  # open world: its output tainted the thread
    (waiting,) = result["__interrupt__"]
    assert waiting.value["tool"] == "write" and "untrusted" in waiting.value["reason"]
    assert server.events("effect") == [], "the write waits for a human; nothing ran"
