"""Orphan repair: every tool call left without an observation gets one before the model speaks again.

Orphans appear when a run stopped mid-turn (a crash, a call paused for approval) and the thread then got new
input instead of a resume; providers refuse a conversation with an unanswered call. A side-effect call gets what
the idempotency ledger knows (its recorded result, or "outcome unknown"); any other call is answered as
interrupted, not run behind the user's back.

`OrphanRepair` is a node for any graph whose state has ``messages`` (`build_agent` has one; a hand-built graph
adds it before its model node, `IronloopToolMiddleware` runs it before ``create_agent``'s first step):

    repair = OrphanRepair(runner)
    builder.add_node("repair", repair)
    builder.add_conditional_edges(START, repair.route, {"repair": "repair", "model": "model"})
    builder.add_edge("repair", "model")
"""

from __future__ import annotations

from typing import Any, Literal

from ironloop.graph.state import InputState, orphaned_calls
from ironloop.tools.runner import ToolCallRunner
from ironloop.tools.untrusted import UNTRUSTED_CHANNEL, tainted_by
from langchain_core.messages import AIMessage, BaseMessage, RemoveMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.message import REMOVE_ALL_MESSAGES


class OrphanRepair:
    """The node that answers orphaned calls, in place, with what the runner knows of them."""

    def __init__(self, runner: ToolCallRunner):
        self.runner = runner

    @staticmethod
    def route(state: InputState) -> Literal["repair", "model"]:
        """Before the model speaks: ``"repair"`` if some call has no observation, else ``"model"``."""
        return "repair" if orphaned_calls(state["messages"]) else "model"

    def __call__(self, state: InputState, config: RunnableConfig) -> dict[str, list[Any]]:
        """Each orphan's observation, right after its model message (providers require it there); an answer from
        the ledger that carries untrusted output marks the thread (``untrusted_sources``)."""
        messages = state["messages"]
        answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
        rebuilt: list[BaseMessage] = []
        owed: list[BaseMessage] = []
        made: list[BaseMessage] = []
        for message in messages:
            if owed and not isinstance(message, ToolMessage):
                rebuilt += owed
                owed = []
            rebuilt.append(message)
            if isinstance(message, AIMessage):
                owed = [self.runner.orphan_answer(c, config) for c in message.tool_calls if c["id"] not in answered]
                made += owed
        taint = {UNTRUSTED_CHANNEL: sources} if (sources := tainted_by(made)) else {}
        if len(rebuilt) == len(messages):  # every orphan belongs after the last message: appending is enough
            return {"messages": owed, **taint}
        return {"messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES), *rebuilt, *owed], **taint}
