"""The agent's state, in one typed place.

`InputState` is what callers pass (``{"messages": [...]}``); `AgentState` adds what the graph manages
itself. Everything else an observer needs (turns taken, attempts, outcomes) is derived from the messages and
their metadata, so it survives checkpoints with nothing extra to keep in sync. The one exception is
``untrusted_sources``: whether the thread has read untrusted tool output must not be lost when messages are
trimmed or rewritten, so it is a channel of its own whose reducer only ever adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, TypeVar

from ironloop.tools.untrusted import merge_sources
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.graph.message import add_messages
from langgraph.managed import RemainingSteps
from typing_extensions import TypedDict


class InputState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation: user turns, model turns with their tool calls, and one observation per call."""


class AgentState(InputState):
    remaining_steps: RemainingSteps
    """Supersteps left before LangGraph's recursion limit; the agent stops gracefully well before it."""
    untrusted_sources: Annotated[list[str], merge_sources]
    """Tools with ``untrusted_output`` whose output the thread has read: from then on, side-effect calls need a
    human's approval (``ToolPolicy(approval="on_untrusted")``)."""


M = TypeVar("M", bound=BaseMessage)


def current_run(messages: Sequence[M]) -> list[M]:
    """The messages since the last user message: the run the turn budget applies to."""
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], HumanMessage):
            return list(messages[index + 1 :])
    return list(messages)


def turns_taken(messages: list[AnyMessage]) -> int:
    """Model calls made since the last user message."""
    return sum(isinstance(m, AIMessage) for m in current_run(messages))


def orphaned_calls(messages: list[AnyMessage]) -> list[str | None]:
    """Ids of tool calls that have no observation (a thread left mid-turn)."""
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return [c["id"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls if c["id"] not in answered]
