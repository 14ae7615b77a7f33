"""What keeps the runtime cheap and graceful: the cap on calls per turn, Sends that carry only their call."""

from __future__ import annotations

from typing import Any

from ironloop.graph.agent import build_agent
from ironloop.tools.policy import ToolPolicy
from langchain_core.messages import ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from tests.helpers import call, observations, replay_model, turn

FAST = ToolPolicy(timeout_s=5.0, max_attempts=1)


def echo(text: str) -> str:
    """Echo a text."""
    return text


def test_calls_past_the_cap_are_answered_not_run() -> None:
    ran: list[str] = []

    def note(text: str) -> str:
        """Note a text."""
        ran.append(text)
        return text

    calls = [call("note", text=str(i)) for i in range(7)]
    agent = build_agent(replay_model(turn(*calls)), [note], default_policy=FAST, max_calls_per_turn=3)
    messages = agent.invoke({"messages": [("user", "go")]})["messages"]
    seen = observations(messages)
    assert sorted(ran) == ["0", "1", "2"]
    assert [seen[c["id"]].content for c in calls[:3]] == ["0", "1", "2"]
    for late in calls[3:]:
        assert seen[late["id"]].status == "error"
        assert "not run: too many calls in one turn (7 asked; at most 3" in str(seen[late["id"]].content).lower()
    assert messages[-1].content == "done"


def test_the_cap_can_be_lifted_and_must_be_positive() -> None:
    calls = [call("echo", text=str(i)) for i in range(200)]
    agent = build_agent(replay_model(turn(*calls)), [echo], default_policy=FAST, max_calls_per_turn=None)
    messages = agent.invoke({"messages": [("user", "go")]})["messages"]
    assert sum(isinstance(m, ToolMessage) and m.status != "error" for m in messages) == 200
    try:
        build_agent(replay_model(), [echo], max_calls_per_turn=0)
    except ValueError as exc:
        assert "max_calls_per_turn must be at least 1" in str(exc)
    else:
        raise AssertionError("max_calls_per_turn=0 was accepted")


class CountingSaver(InMemorySaver):
    """Counts the bytes of the tasks (``Send``s) written as pending writes."""

    def __init__(self) -> None:
        super().__init__()
        self.task_bytes = 0

    def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        for channel, value in writes:
            if channel == "__pregel_tasks":
                self.task_bytes += len(self.serde.dumps_typed(value)[1])
        super().put_writes(config, writes, task_id, task_path)


def task_bytes_per_call(calls: int) -> float:
    saver = CountingSaver()
    padding = "x" * 2000  # a long conversation: each Send that carried the state would carry this too
    agent = build_agent(
        replay_model(turn(*[call("echo", text=str(i)) for i in range(calls)])),
        [echo],
        default_policy=FAST,
        checkpointer=saver,
        max_calls_per_turn=None,
    )
    agent.invoke({"messages": [("user", padding)]}, {"configurable": {"thread_id": f"t{calls}"}})
    return saver.task_bytes / calls


def test_what_is_checkpointed_per_call_does_not_grow_with_the_turn() -> None:
    small, large = task_bytes_per_call(10), task_bytes_per_call(200)
    assert 0 < small < 1000  # the call alone, not the 2,000-character conversation
    assert large < small * 1.2
