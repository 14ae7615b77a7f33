"""The middleware among LangChain's own: ``HumanInTheLoopMiddleware`` beside it, ironloop's approvals answered in
LangChain's decision format, the ``untrusted_sources`` channel checked, and each attempt a callback run."""

from __future__ import annotations

import warnings
from typing import Any
from uuid import UUID

import pytest
from ironloop import IronloopToolMiddleware, ToolCallRunner, ToolPolicy, TransientToolError, UntrustedChannelWarning
from ironloop.tools.approval import parse_decision
from ironloop.tools.records import metadata_of
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command

from tests.helpers import call, replay_model, turn


class Payments:
    """``pay`` fails once with a transient error per amount, then pays; ``read`` returns untrusted text."""

    def __init__(self) -> None:
        self.paid: list[int] = []
        self.failed: set[int] = set()

        @tool
        def pay(amount: int) -> str:
            """Pay an amount."""
            if amount not in self.failed:
                self.failed.add(amount)
                raise TransientToolError("503 from the bank")
            self.paid.append(amount)
            return f"paid {amount}"

        @tool
        def read(q: str) -> str:
            """Read a page."""
            return f"page about {q}"

        self.tools = [pay, read]


PAY = ToolPolicy(
    side_effect=True,
    honours_idempotency_key=True,
    max_attempts=3,
    backoff_initial_s=0.001,
    backoff_max_s=0.01,
    approval="never",
)
READ = ToolPolicy(untrusted_output=True)


def thread(name: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": name}}


def tool_messages(result: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_human_in_the_loop_middleware_then_ironloop(mode: str) -> None:
    payments = Payments()
    agent = create_agent(
        replay_model(turn(call("pay", amount=500))),
        payments.tools,
        middleware=[
            HumanInTheLoopMiddleware(interrupt_on={"pay": True}),
            IronloopToolMiddleware(policies={"pay": PAY, "read": READ}),
        ],
        checkpointer=InMemorySaver(),
    )

    async def go(value: Any) -> dict[str, Any]:
        return agent.invoke(value, thread(mode)) if mode == "invoke" else await agent.ainvoke(value, thread(mode))

    paused = await go({"messages": [("user", "pay 500")]})
    (request,) = paused["__interrupt__"]
    assert request.value["action_requests"][0]["name"] == "pay" and payments.paid == []
    edit = {"type": "edit", "edited_action": {"name": "pay", "args": {"amount": 450}}}
    result = await go(Command(resume={"decisions": [edit]}))
    (message,) = tool_messages(result)
    assert payments.paid == [450]  # the edited call ran, once, after ironloop retried the bank's 503
    meta = metadata_of(message)
    assert meta is not None and [a["outcome"] for a in meta["attempts"]] == ["transient_error", "ok"]
    assert meta["idempotency_key"].startswith("ik_")


def test_untrusted_output_makes_a_side_effect_wait_in_create_agent() -> None:
    payments = Payments()
    agent = create_agent(
        replay_model(turn(call("read", q="offers")), turn(call("pay", amount=900))),
        payments.tools,
        middleware=[IronloopToolMiddleware(policies={"pay": PAY.but(approval="on_untrusted"), "read": READ})],
        checkpointer=InMemorySaver(),
    )
    paused = agent.invoke({"messages": [("user", "read the offers, then pay")]}, thread("u"))
    (request,) = paused["__interrupt__"]
    assert "untrusted tool output (read)" in request.value["reason"] and payments.paid == []
    assert agent.get_state(thread("u")).values["untrusted_sources"] == ["read"]
    result = agent.invoke(Command(resume={"type": "reject", "message": "not from a web page"}), thread("u"))
    assert payments.paid == [] and "not from a web page" in str(tool_messages(result)[-1].content)


def approval_agent(payments: Payments, request_format: str = "ironloop") -> Any:
    return create_agent(
        replay_model(turn(call("pay", amount=700))),
        payments.tools,
        middleware=[
            IronloopToolMiddleware(policies={"pay": PAY.but(approval="always")}, approval_format=request_format)
        ],
        checkpointer=InMemorySaver(),
    )


@pytest.mark.parametrize(
    ("answer", "paid", "content", "outcome"),
    [
        ({"decisions": [{"type": "approve"}]}, [700], "paid 700", "ok"),
        ({"type": "approve"}, [700], "paid 700", "ok"),
        ({"type": "edit", "edited_action": {"name": "pay", "args": {"amount": 650}}}, [650], "paid 650", "ok"),
        ({"type": "reject", "message": "too much"}, [], "too much", "denied"),
        ({"type": "respond", "message": "the user paid in cash"}, [], "the user paid in cash", "responded"),
        ({"action": "approve"}, [700], "paid 700", "ok"),
    ],
)
def test_an_ironloop_approval_answered_in_langchains_format(
    answer: dict[str, Any], paid: list[int], content: str, outcome: str
) -> None:
    payments = Payments()
    agent = approval_agent(payments, "langchain")
    paused = agent.invoke({"messages": [("user", "pay")]}, thread("t"))
    (request,) = paused["__interrupt__"]
    value = request.value
    assert value["kind"] == "tool_approval" and value["tool"] == "pay"  # ironloop's keys, and LangChain's
    assert value["action_requests"] == [{"name": "pay", "args": {"amount": 700}, "description": value["reason"]}]
    assert value["review_configs"][0]["action_name"] == "pay"
    assert set(value["review_configs"][0]["allowed_decisions"]) == {"approve", "edit", "reject", "respond"}

    result = agent.invoke(Command(resume=answer), thread("t"))
    (message,) = tool_messages(result)
    assert payments.paid == paid and content in str(message.content)
    meta = metadata_of(message)
    assert meta is not None and meta["outcome"] == outcome


def test_a_request_in_ironloops_format_has_no_langchain_keys_and_a_bad_batch_is_asked_again() -> None:
    payments = Payments()
    agent = approval_agent(payments)
    (request,) = agent.invoke({"messages": [("user", "pay")]}, thread("t"))["__interrupt__"]
    assert "action_requests" not in request.value
    two = {"decisions": [{"type": "approve"}, {"type": "approve"}]}
    (again,) = agent.invoke(Command(resume=two), thread("t"))["__interrupt__"]
    assert "exactly one decision" in again.value["problem"] and payments.paid == []
    switch = {"type": "edit", "edited_action": {"name": "read", "args": {"q": "x"}}}
    (again,) = agent.invoke(Command(resume=switch), thread("t"))["__interrupt__"]
    assert "cannot switch tools" in again.value["problem"] and payments.paid == []


def test_parse_decision_reads_each_langchain_decision() -> None:
    assert parse_decision({"type": "approve"}).action == "approve"
    assert parse_decision({"type": "reject"}).action == "reject"
    assert parse_decision({"type": "response", "message": "m"}).reason == "m"
    edited = parse_decision({"type": "edit", "edited_action": {"name": "pay", "args": {"amount": 1}}}, "pay")
    assert (edited.action, edited.args) == ("edit", {"amount": 1})
    with pytest.raises(ValueError, match='needs "message"'):
        parse_decision({"type": "respond"})
    with pytest.raises(ValueError, match="unknown action"):
        parse_decision({"type": "maybe"})


def test_a_user_state_without_the_channel_is_refused_at_build_time() -> None:
    with pytest.raises(ValueError, match=r"has no .untrusted_sources. channel.*ironloop\.AgentState"):
        ToolCallRunner.for_tools(Payments().tools, {"read": READ}, state_schema=MessagesState)


def test_a_tool_node_in_a_state_without_the_channel_warns_once() -> None:
    payments = Payments()
    runner = ToolCallRunner({"read": READ})
    builder = StateGraph(MessagesState)
    builder.add_node("tools", ToolNode(payments.tools, wrap_tool_call=runner.wrap_tool_call))
    builder.add_edge(START, "tools")
    graph = builder.compile()
    asked = AIMessage(content="", tool_calls=[call("read", q="a"), call("read", q="b")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph.invoke({"messages": [asked]})
        graph.invoke({"messages": [asked]})
    found = [w for w in caught if issubclass(w.category, UntrustedChannelWarning)]
    assert len(found) == 1 and "untrusted_sources" in str(found[0].message)


class Recorder(BaseCallbackHandler):
    """What LangSmith would be sent: each attempt run's tags, metadata, outputs or error, and the tool runs."""

    def __init__(self) -> None:
        self.attempts: dict[UUID, dict[str, Any]] = {}
        self.tool_parents: list[UUID | None] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if "ironloop:attempt" in (kwargs.get("tags") or []):
            self.attempts[run_id] = {"name": kwargs.get("name"), "metadata": kwargs.get("metadata")}

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id in self.attempts:
            self.attempts[run_id]["outputs"] = outputs

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id in self.attempts:
            self.attempts[run_id]["error"] = error
            self.attempts[run_id]["outputs"] = kwargs.get("outputs")

    def on_tool_start(self, serialized: Any, input_str: str, *, parent_run_id: UUID | None = None, **kw: Any) -> None:
        self.tool_parents.append(parent_run_id)


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_each_attempt_is_a_callback_run_with_its_metadata(mode: str) -> None:
    payments = Payments()
    agent = create_agent(
        replay_model(turn(call("pay", amount=300))),
        payments.tools,
        middleware=[IronloopToolMiddleware(policies={"pay": PAY})],
    )
    recorder = Recorder()
    config = {"callbacks": [recorder], "configurable": {"thread_id": "cb"}}
    inputs = {"messages": [("user", "pay")]}
    _ = agent.invoke(inputs, config) if mode == "invoke" else await agent.ainvoke(inputs, config)

    runs = sorted(recorder.attempts.values(), key=lambda r: r["metadata"]["ironloop.attempt"])
    assert [r["name"] for r in runs] == ["pay attempt 1", "pay attempt 2"]
    first, second = (r["metadata"] for r in runs)
    assert first["ironloop.tool"] == "pay" and first["ironloop.idempotency_key"].startswith("ik_")
    assert "ironloop.retry_delay_s" not in first and second["ironloop.retry_delay_s"] > 0
    assert isinstance(runs[0]["error"], TransientToolError)
    assert runs[0]["outputs"]["outcome"] == "transient_error"
    assert runs[0]["outputs"]["error_class"] == "ironloop.tools.errors.TransientToolError"
    assert runs[1]["outputs"]["outcome"] == "ok"
    assert set(recorder.tool_parents) == set(recorder.attempts)  # each tool run sits inside its attempt's run
