"""`build_agent` takes what ``create_agent`` takes, where it costs little: a model by name, ``state_schema``,
``context_schema``, ``store`` and ``response_format``; a state without the untrusted channel is refused."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from ironloop import AgentState, build_agent
from ironloop.demo.scenario import DEMO_QUESTION
from ironloop.tools.builtin import BUILTIN_POLICIES, builtin_tools
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import MessagesState
from langgraph.prebuilt import ToolRuntime
from langgraph.store.memory import InMemoryStore
from pydantic import BaseModel

from tests.helpers import call, replay_model, turn
from tests.openai_server import OpenAIStub


def test_a_model_given_by_name(monkeypatch: pytest.MonkeyPatch, search_service) -> None:
    service, _ = search_service
    with OpenAIStub() as stub:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
        agent = build_agent("openai:stub-model", builtin_tools(service.url), policies=BUILTIN_POLICIES)
        state = agent.invoke({"messages": [("user", DEMO_QUESTION)]})
        assert "2,673,000" in str(state["messages"][-1].content)
        assert {r["model"] for r in stub.requests} == {"stub-model"} and len(stub.requests) == 3


class Team(AgentState):
    team: str


@dataclass
class Caller:
    user: str


class Summary(BaseModel):
    user: str
    role: str


@tool
def whoami(runtime: ToolRuntime) -> str:
    """Who is asking, and their role."""
    user = runtime.context.user
    role = runtime.store.get(("roles",), user)
    return f"{user} is {role.value['role'] if role else 'unknown'} in {runtime.state['team']}"


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_state_context_store_and_a_structured_answer(mode: str) -> None:
    store = InMemoryStore()
    store.put(("roles",), "ada", {"role": "admin"})
    model = replay_model(
        turn(call("whoami")),
        AIMessage(content="ada is an admin"),
        turn(call("Summary", user="ada", role="admin")),  # the structured answer's call
    )
    agent = build_agent(model, [whoami], state_schema=Team, context_schema=Caller, store=store, response_format=Summary)
    inputs = {"messages": [("user", "who am I?")], "team": "ops"}
    if mode == "invoke":
        state = agent.invoke(inputs, context=Caller("ada"))
    else:
        state = await agent.ainvoke(inputs, context=Caller("ada"))
    (observation,) = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert observation.content == "ada is admin in ops"
    assert state["messages"][-1].content == "ada is an admin" and state["team"] == "ops"
    assert state["structured_response"] == Summary(user="ada", role="admin")


class NoChannel(MessagesState):
    remaining_steps: int


class Lossy(AgentState):
    untrusted_sources: list[str]  # type: ignore[misc]  # no reducer: the last write wins, taint can be lost


def test_a_state_schema_without_what_the_agent_needs_is_one_line() -> None:
    with pytest.raises(ValueError, match="has no 'untrusted_sources' channel"):
        build_agent(replay_model(), [whoami], state_schema=NoChannel)
    with pytest.raises(ValueError, match="needs a reducer that adds"):
        build_agent(replay_model(), [whoami], state_schema=Lossy)


def test_a_model_by_name_without_its_provider_is_one_line() -> None:
    with pytest.raises((ValueError, ImportError), match="nosuchprovider"):
        build_agent("nosuchprovider:model", [whoami])
