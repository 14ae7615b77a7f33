"""ironloop inside the agents people already build: ``create_agent`` + `IronloopToolMiddleware`, a user's own
``StateGraph`` + ``ToolNode`` + `ToolCallRunner`, and `build_agent`, under the same faults.

Each wiring runs the reference scenario (search under the reference profile: 45 % 503s, 15 % slow answers;
charges under lost responses: committed then dropped) under ``invoke`` and ``ainvoke``, with async tools and
with sync ones: the right answer after the same number of model calls, the retries recorded on the
observations, and each card charged once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import httpx2
import pytest
from ironloop import IronloopToolMiddleware, ToolCallRunner, ToolPolicy, build_agent, merge_sources
from ironloop.demo.scenario import DEMO_QUESTION, demo_script, expected_answer, places_in
from ironloop.demo.scripted_model import ScriptedChatModel
from ironloop.demo.services.faults import PROFILES
from ironloop.demo.services.server import ToolServices, start_tool_services
from ironloop.demo.tasks import corpus_population
from ironloop.tools.builtin import BUILTIN_POLICIES, builtin_tools, calc, charge_text
from ironloop.tools.errors import PermanentToolError, TransientToolError, raise_for_status
from ironloop.tools.idempotency import current_idempotency_key
from ironloop.tools.records import metadata_of
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

PAYMENTS = "Charge cus_ada $12.50 and cus_bob $7.25."
CHARGES = [("cus_ada", 1250), ("cus_bob", 725)]


@pytest.fixture(scope="module")
def services() -> Iterator[ToolServices]:
    """Search under the reference faults, payments losing answers after committing."""
    services = start_tool_services(profile="reference", seed=15)
    services.payments.profile = PROFILES["lost-responses"].payments
    yield services
    services.stop()


def sync_tools(url: str) -> list[BaseTool]:
    """``search`` and ``charge_card`` as plain sync functions (httpx's sync client), and ``calc``."""
    client = httpx2.Client(timeout=30.0)

    def search(query: str) -> str:
        """Search the web for a short factual answer, e.g. "Paris population"."""
        response = client.get(f"{url}/search", params={"q": query})
        raise_for_status(response, what="search service")
        try:
            results = json.loads(response.content)["results"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientToolError("the search service sent a malformed answer") from exc
        if not results:
            raise PermanentToolError(f"no results for {query!r}")
        return "\n".join(f"{r['title']}: {r['snippet']}" for r in results)

    def charge_card(customer_id: str, amount_cents: int) -> str:
        """Charge a customer's card on file. amount_cents is in cents: 1250 charges $12.50."""
        response = client.post(
            f"{url}/charges",
            json={"customer_id": customer_id, "amount_cents": amount_cents},
            headers={"Idempotency-Key": current_idempotency_key()},
        )
        raise_for_status(response, what="payments service")
        return charge_text(json.loads(response.content))

    return [
        StructuredTool.from_function(search),
        StructuredTool.from_function(calc),
        StructuredTool.from_function(charge_card),
    ]


Policies = dict[str, ToolPolicy]

POLICIES = {**BUILTIN_POLICIES, "search": BUILTIN_POLICIES["search"].but(timeout_s=2.0, deadline_s=60.0)}
"""The built-in policies, with search's attempts long enough for a loaded machine: what is tested is that the
503s are retried and the slow answers survived, not how fast (the chaos benchmark measures that)."""

SYNC_POLICIES = {**POLICIES, "charge_card": POLICIES["charge_card"].but(credentials=())}
"""The sync ``charge_card`` takes no API key."""


class UserState(MessagesState):
    untrusted_sources: Annotated[list[str], merge_sources]


def user_graph(model: ScriptedChatModel, tools: list[BaseTool], policies: Policies) -> Any:
    """What a LangGraph user writes: a model node, a ToolNode, tools_condition; the runner as both hooks."""
    runner = ToolCallRunner.for_tools(tools, policies, state_schema=UserState)
    bound = model.bind_tools(tools)

    def call_model(state: UserState) -> dict[str, list[AnyMessage]]:
        return {"messages": [bound.invoke(state["messages"])]}

    async def acall_model(state: UserState) -> dict[str, list[AnyMessage]]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    from langchain_core.runnables import RunnableLambda

    builder = StateGraph(UserState)
    builder.add_node("model", RunnableLambda(call_model, afunc=acall_model))
    builder.add_node(
        "tools", ToolNode(tools, wrap_tool_call=runner.wrap_tool_call, awrap_tool_call=runner.awrap_tool_call)
    )
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile()


WIRINGS: dict[str, Callable[[ScriptedChatModel, list[BaseTool], Policies], Any]] = {
    "create_agent": lambda model, tools, policies: create_agent(
        model, tools, middleware=[IronloopToolMiddleware(policies=policies)]
    ),
    "tool_node": user_graph,
    "build_agent": lambda model, tools, policies: build_agent(model, tools, policies=policies),
}


def run(agent: Any, question: str, thread: str, mode: str) -> list[AnyMessage]:
    config = {"configurable": {"thread_id": thread}}
    inputs = {"messages": [HumanMessage(question)]}
    result = agent.invoke(inputs, config) if mode == "invoke" else asyncio.run(agent.ainvoke(inputs, config))
    return list(result["messages"])


def observations(messages: list[AnyMessage]) -> list[ToolMessage]:
    return [m for m in messages if isinstance(m, ToolMessage)]


@pytest.mark.parametrize("tools_kind", ["async", "sync"])
@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
@pytest.mark.parametrize("wiring", list(WIRINGS))
def test_the_reference_scenario_in_each_wiring(services: ToolServices, wiring: str, mode: str, tools_kind: str) -> None:
    if tools_kind == "async":
        tools, policies = builtin_tools(services.url), POLICIES
    else:
        tools, policies = sync_tools(services.url), SYNC_POLICIES
    agent = WIRINGS[wiring](ScriptedChatModel(script=demo_script), tools, policies)
    label = f"{wiring}-{mode}-{tools_kind}"
    attempts = 0
    searches = 0
    for index in range(3):
        messages = run(agent, DEMO_QUESTION, f"{label}-pop-{index}", mode)
        places = places_in(DEMO_QUESTION)
        answer = messages[-1]
        assert isinstance(answer, AIMessage) and not answer.tool_calls
        assert expected_answer(places, [corpus_population(p) for p in places]) in str(answer.content), label
        assert sum(isinstance(m, AIMessage) for m in messages) == 3, label  # search, calc, answer
        for message in observations(messages):
            meta = metadata_of(message)
            assert meta is not None and meta["outcome"] == "ok", (label, message)
            if message.name == "search":
                searches += 1
                attempts += len(meta["attempts"])
                assert "<untrusted-data" in str(message.content)
    assert attempts > searches, f"{label}: the 503s were not retried ({attempts} attempts for {searches} searches)"

    before = len(services.ledger.snapshot())
    messages = run(agent, PAYMENTS, f"{label}-pay", mode)
    assert sum(isinstance(m, AIMessage) for m in messages) == 2, label
    charged = [(c.customer_id, c.amount_cents) for c in services.ledger.snapshot()[before:]]
    assert sorted(charged) == sorted(CHARGES), f"{label}: charged {charged}"  # each card exactly once
    for message in observations(messages):
        assert metadata_of(message)["outcome"] == "ok", (label, message)
        assert metadata_of(message)["idempotency_key"].startswith("ik_")
