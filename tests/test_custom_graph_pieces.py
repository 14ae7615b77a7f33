"""What build_agent does between the calls, offered to other graphs: the loop guard and orphan repair, in a
user's own ``StateGraph`` + ``ToolNode`` and inside ``create_agent`` through the middleware."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from ironloop import AgentState, IronloopToolMiddleware, ToolCallRunner, ToolPolicy
from ironloop.graph.loop_guard import LoopGuard
from ironloop.graph.repair import OrphanRepair
from ironloop.tools.records import metadata_of
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode

from tests.helpers import call, replay_model, turn


class Lookups:
    def __init__(self) -> None:
        self.runs = 0

        @tool
        def lookup(key: str) -> str:
            """Look a key up."""
            self.runs += 1
            return f"value of {key}"

        self.tools = [lookup]


def repeated(times: int) -> list[AIMessage]:
    return [turn(call("lookup", key="k")) for _ in range(times)]


def test_the_loop_guard_in_a_users_tool_node() -> None:
    lookups = Lookups()
    runner = ToolCallRunner.for_tools(lookups.tools)
    guard = LoopGuard(runner, limit=2)
    builder = StateGraph(AgentState)
    builder.add_node(
        "tools", ToolNode(lookups.tools, wrap_tool_call=guard.wrap_tool_call, awrap_tool_call=guard.awrap_tool_call)
    )
    builder.add_edge(START, "tools")
    graph = builder.compile()
    messages: list[Any] = [HumanMessage("go")]
    for message in repeated(3):
        messages = graph.invoke({"messages": [*messages, message]})["messages"]
    answers = [m for m in messages if isinstance(m, ToolMessage)]
    assert lookups.runs == 2 and "already called 2 times" in str(answers[-1].content)
    assert "value of k" in str(answers[-1].content)  # the refusal quotes the last result


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_the_middleware_refuses_a_loop(mode: str) -> None:
    lookups = Lookups()
    agent = create_agent(replay_model(*repeated(5)), lookups.tools, middleware=[IronloopToolMiddleware()])
    inputs = {"messages": [("user", "go")]}
    state = agent.invoke(inputs) if mode == "invoke" else await agent.ainvoke(inputs)
    refused = [m for m in state["messages"] if isinstance(m, ToolMessage) and "already called" in str(m.content)]
    assert lookups.runs == 3 and len(refused) == 2
    assert all(metadata_of(m)["outcome"] == "rejected" for m in refused)


PAUSE = ToolPolicy(approval="always")


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_orphan_repair_in_create_agent_and_in_a_users_graph(mode: str) -> None:
    lookups = Lookups()
    agent = create_agent(
        replay_model(turn(call("lookup", key="a"))),
        lookups.tools,
        middleware=[IronloopToolMiddleware({"lookup": PAUSE})],
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "orphan"}}

    async def go(text: str) -> dict[str, Any]:
        inputs = {"messages": [("user", text)]}
        return agent.invoke(inputs, config) if mode == "invoke" else await agent.ainvoke(inputs, config)

    assert (await go("look a up"))["__interrupt__"]
    # New input instead of a decision: the paused call is an orphan, answered before the model speaks again.
    state = await go("never mind")
    (answer,) = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert "interrupted" in str(answer.content) and lookups.runs == 0
    messages = state["messages"]
    assert messages.index(answer) == 2  # right after its model message, before the new user turn

    runner = ToolCallRunner.for_tools(lookups.tools)
    repair = OrphanRepair(runner)
    builder = StateGraph(AgentState)
    builder.add_node("repair", repair)
    builder.add_node("model", lambda state: {"messages": [AIMessage("ok")]})
    builder.add_conditional_edges(START, repair.route, {"repair": "repair", "model": "model"})
    builder.add_edge("repair", "model")
    builder.add_edge("model", END)
    orphaned = [HumanMessage("x"), turn(call("lookup", key="b")), HumanMessage("y")]
    fixed = builder.compile().invoke({"messages": orphaned})["messages"]
    assert [type(m).__name__ for m in fixed] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "HumanMessage",
        "AIMessage",
    ]


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_a_slow_sync_tool_times_out_and_is_retried_under_both_calls(mode: str) -> None:
    """ToolNode's own sync path runs a sync tool in the caller's thread, with no timeout: the runner's hook runs it
    on its own thread, so the timeout abandons the slow attempt and the retry answers."""
    started: list[float] = []
    release = threading.Event()

    @tool
    def slow(key: str) -> str:
        """Slow the first time."""
        started.append(1.0)
        if len(started) == 1:
            release.wait(30)  # the abandoned attempt's thread, let go at the end of the test
            return "late"
        return f"fast {key}"

    runner = ToolCallRunner.for_tools([slow], {"slow": ToolPolicy(timeout_s=1.0, max_attempts=2)})
    builder = StateGraph(AgentState)
    builder.add_node(
        "tools", ToolNode([slow], wrap_tool_call=runner.wrap_tool_call, awrap_tool_call=runner.awrap_tool_call)
    )
    builder.add_edge(START, "tools")
    graph = builder.compile()
    inputs = {"messages": [HumanMessage("go"), turn(call("slow", key="k"))]}
    try:
        state = graph.invoke(inputs) if mode == "invoke" else await graph.ainvoke(inputs)
    finally:
        release.set()
    (answer,) = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert answer.content == "fast k"
    attempts = metadata_of(answer)["attempts"]
    assert [a["outcome"] for a in attempts] == ["timeout", "ok"]
    assert attempts[0]["abandoned_thread"] is True
