"""The graph around the runtime: invalid calls never dispatched, the turn budget, system prompt, structure."""

from __future__ import annotations

import asyncio

import pytest
from ironloop.demo.scripted_model import ScriptedChatModel
from ironloop.graph import build_agent
from langchain_core.messages import AIMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from tests.helpers import call, observations, record, replay_model, turn

dispatched: list[dict] = []


@tool
def lookup(city: str, year: int) -> str:
    """Look a city up for a given year."""
    dispatched.append({"city": city, "year": year})
    return f"{city} in {year}"


@pytest.fixture(autouse=True)
def _clear() -> None:
    dispatched.clear()


def answers(*messages: AIMessage, **kwargs) -> list:
    return build_agent(replay_model(*messages), [lookup], **kwargs).invoke({"messages": [("user", "go")]})["messages"]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({"city": "Paris"}, "missing required argument 'year'"),
        ({"city": "Paris", "year": "twenty"}, "'year': Input should be a valid integer"),
        ({"city": "Paris", "year": "2020"}, "'year': Input should be a valid integer"),
        ({"city": "Paris", "year": 2020, "country": "FR"}, "unexpected argument 'country'"),
        ({"city": 7, "year": 2020}, "'city': Input should be a valid string"),
    ],
)
def test_off_schema_arguments_are_never_dispatched(args: dict, problem: str) -> None:
    c = call("lookup", **args)
    observation = observations(answers(turn(c)))[c["id"]]
    assert dispatched == []
    assert observation.status == "error"
    assert problem in observation.content
    assert '"required":["city","year"]' in observation.content  # the expected schema is shown
    assert record(observation)["outcome"] == "rejected"


def test_unknown_tool_is_named_with_the_alternatives() -> None:
    c = call("lokup", city="Paris", year=2020)
    observation = observations(answers(turn(c)))[c["id"]]
    assert "no tool named 'lokup'" in observation.content and "Available tools: lookup" in observation.content
    assert dispatched == []


def test_arguments_that_are_not_json_are_answered_not_dispatched() -> None:
    broken = AIMessage(
        content="",
        invalid_tool_calls=[
            {"name": "lookup", "args": '{"city": "Par', "id": "call_bad", "error": "Unterminated string"}
        ],
    )
    messages = answers(broken)
    observation = observations(messages)["call_bad"]
    assert "not valid JSON" in observation.content and "Unterminated string" in observation.content
    assert '"city"' in observation.content  # schema shown
    assert dispatched == []
    assert messages[-1].content == "done"


def test_valid_and_invalid_calls_in_one_turn() -> None:
    good, bad = call("lookup", city="Lyon", year=2021), call("lookup", city="Lyon")
    seen = observations(answers(turn(good, bad)))
    assert seen[good["id"]].content == "Lyon in 2021"
    assert seen[bad["id"]].status == "error"
    assert dispatched == [{"city": "Lyon", "year": 2021}]


@pytest.mark.parametrize("use_async", [False, True], ids=["invoke", "ainvoke"])
def test_turn_budget_ends_with_a_graceful_answer(use_async: bool) -> None:
    looping = ScriptedChatModel(script=lambda messages: turn(call("lookup", city="Paris", year=2020)))
    agent = build_agent(looping, [lookup], max_turns=3)
    state_in = {"messages": [("user", "loop forever")]}
    messages = asyncio.run(agent.ainvoke(state_in)) if use_async else agent.invoke(state_in)
    messages = messages["messages"]
    model_turns = [m for m in messages if isinstance(m, AIMessage)]
    assert len(model_turns) == 4  # 3 model calls, then the budget answer
    assert "turn budget of 3 model calls ran out" in messages[-1].content
    assert len(dispatched) == 2  # the third turn's call was answered, not run
    calls = [c["id"] for m in model_turns for c in m.tool_calls]
    assert set(calls) == set(observations(messages))  # every call has its observation
    assert "Not run" in observations(messages)[calls[-1]].content


def test_recursion_limit_is_met_gracefully_too() -> None:
    looping = ScriptedChatModel(script=lambda messages: turn(call("lookup", city="Paris", year=2020)))
    agent = build_agent(looping, [lookup], max_turns=100)
    state = agent.invoke({"messages": [("user", "loop")]}, {"recursion_limit": 9})
    assert "turn budget" in state["messages"][-1].content
    assert all(isinstance(m, ToolMessage) for m in state["messages"][-2:-1])


def test_budget_is_per_user_message_on_a_thread() -> None:
    model = ScriptedChatModel(
        script=lambda ms: (
            AIMessage(content="ok") if isinstance(ms[-1], ToolMessage) else turn(call("lookup", city="Rome", year=2000))
        )
    )
    agent = build_agent(model, [lookup], max_turns=2, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    for _ in range(3):
        state = agent.invoke({"messages": [("user", "again")]}, config)
        assert state["messages"][-1].content == "ok"
    assert len(dispatched) == 3


def test_system_prompt_is_sent_but_not_stored() -> None:
    seen: list = []

    def script(messages):
        seen.append(messages)
        return AIMessage(content="hi")

    agent = build_agent(ScriptedChatModel(script=script), [lookup], system_prompt="Be brief.")
    state = agent.invoke({"messages": [("user", "hello")]})
    assert isinstance(seen[0][0], SystemMessage) and seen[0][0].content == "Be brief."
    assert not any(isinstance(m, SystemMessage) for m in state["messages"])


def test_graph_shape() -> None:
    agent = build_agent(replay_model(), [lookup])
    nodes = set(agent.get_graph().nodes)
    assert {"model", "tools", "reject", "finish"} <= nodes


def test_bad_arguments_to_build_agent() -> None:
    with pytest.raises(ValueError, match="max_turns"):
        build_agent(replay_model(), [lookup], max_turns=0)
    with pytest.raises(ValueError, match="unique"):
        build_agent(replay_model(), [lookup, lookup])
    with pytest.raises(TypeError, match="cannot bind tools"):
        build_agent(object(), [lookup])  # type: ignore[arg-type]


class Crash(BaseException):
    """Stands for the process dying mid-call: not an Exception, so no runtime absorbs it."""


def test_resume_reruns_only_the_calls_that_had_not_finished() -> None:
    runs = {"fast": 0, "crashy": 0}

    @tool
    def fast(x: int) -> str:
        """Answers at once."""
        runs["fast"] += 1
        return "fast done"

    @tool
    async def crashy(x: int) -> str:
        """Crashes the first time."""
        runs["crashy"] += 1
        if runs["crashy"] == 1:
            import asyncio

            await asyncio.sleep(0.05)  # let the sibling finish and be saved first
            raise Crash()
        return "crashy done"

    c1, c2 = call("fast", x=1), call("crashy", x=2)
    agent = build_agent(replay_model(turn(c1, c2)), [fast, crashy], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "resume-me"}}
    with pytest.raises(Crash):
        agent.invoke({"messages": [("user", "go")]}, config)
    assert runs == {"fast": 1, "crashy": 1}
    state = agent.invoke(None, config)  # resume from the checkpoint
    assert runs == {"fast": 1, "crashy": 2}  # the finished sibling was not run again
    seen = observations(state["messages"])
    assert seen[c1["id"]].content == "fast done" and seen[c2["id"]].content == "crashy done"
    assert state["messages"][-1].content == "done"
