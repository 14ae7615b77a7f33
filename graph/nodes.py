"""The agent's nodes and routing: the model turn, what happens to each call it asks for, and how a run ends.

`ReActLoop` holds what the nodes share (the model caller, the tool catalog, the runner, the budgets); each
method is one node or one routing function. `graph.agent.build_agent` wires them into the graph.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from ironloop.graph.inline import Inline
from ironloop.graph.loop_guard import refuse_repeats
from ironloop.graph.model_call import ModelCaller
from ironloop.graph.state import AgentState, current_run, turns_taken
from ironloop.tools.budget import Budgets, RunBudget, task_key
from ironloop.tools.records import was_rejected
from ironloop.tools.runner import ToolCallRunner
from ironloop.tools.storable import storable_turn
from ironloop.tools.untrusted import tainted_by
from ironloop.tools.validation import Rejection, ToolCatalog
from langchain_core.messages import AIMessage, AnyMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END
from langgraph.types import Send

DEFAULT_MAX_CALLS_PER_TURN = 128
"""Tool calls one model turn may dispatch; the rest are answered "not run" (`ReActLoop.route_model_output`)."""

STEPS_PER_TURN = 2
"""Supersteps one ReAct turn takes (model, then tools), for staying inside LangGraph's recursion limit."""


class ReActLoop:
    """The model node, the routing function and the two small nodes that answer calls without running them."""

    def __init__(
        self,
        *,
        caller: ModelCaller,
        catalog: ToolCatalog,
        runner: ToolCallRunner,
        max_turns: int,
        loop_limit: int,
        system_prompt: str | None,
        budgets: Budgets | None = None,
        max_calls_per_turn: int | None = DEFAULT_MAX_CALLS_PER_TURN,
    ):
        self.caller = caller
        self.catalog = catalog
        self.runner = runner
        self.max_turns = max_turns
        self.loop_limit = loop_limit
        self.system_prompt = system_prompt
        self.budgets = budgets
        self.max_calls_per_turn = max_calls_per_turn

    def call_model_node(self) -> Inline:
        return Inline(self.call_model, self.acall_model, name="model")

    def _prompt(self, state: AgentState) -> list[AnyMessage]:
        messages = list(state["messages"])
        if self.system_prompt:
            messages.insert(0, SystemMessage(self.system_prompt))
        return messages

    def _budget(self, state: AgentState, config: RunnableConfig) -> RunBudget | None:
        if self.budgets is None:
            return None
        thread_id = (config.get("configurable") or {}).get("thread_id")
        return self.budgets.for_task(task_key(thread_id, state["messages"]))

    def call_model(self, state: AgentState, config: RunnableConfig) -> dict[str, list[AnyMessage]]:
        """Ask the model for its next step (the task's budget starts at its first model call). A call whose
        arguments a checkpoint cannot hold is made invalid before the turn is stored (`tools.storable`)."""
        self._budget(state, config)
        return {"messages": [storable_turn(self.caller.invoke(self._prompt(state), config))]}

    async def acall_model(self, state: AgentState, config: RunnableConfig) -> dict[str, list[AnyMessage]]:
        self._budget(state, config)
        return {"messages": [storable_turn(await self.caller.ainvoke(self._prompt(state), config))]}

    def route_model_output(
        self, state: AgentState, config: RunnableConfig
    ) -> Literal["finish", "__end__"] | list[Send]:
        """Dispatch each of the model's calls on its own, or end the run.

        Each ``Send`` carries its tool call alone (``ToolNode`` reads the state when the task runs), so what is
        checkpointed per call does not grow with the conversation or with the number of calls in the turn.
        Calls past ``max_calls_per_turn`` are answered "not run" instead of dispatched.
        """
        last = state["messages"][-1]
        if not isinstance(last, AIMessage) or not (last.tool_calls or last.invalid_tool_calls):
            return cast(Literal["__end__"], END)
        if self._out_of_budget(state, config):
            return "finish"
        dispatch, rejected = self.catalog.split(last)
        dispatch, repeats = refuse_repeats(state["messages"], dispatch, self.loop_limit)
        rejected += repeats
        if self.max_calls_per_turn is not None and len(dispatch) > self.max_calls_per_turn:
            dispatch, excess = dispatch[: self.max_calls_per_turn], dispatch[self.max_calls_per_turn :]
            note = too_many_calls(len(dispatch) + len(excess), self.max_calls_per_turn)
            rejected += [Rejection(c["id"] or "", c["name"], note) for c in excess]
        sends = [Send("tools", [call]) for call in dispatch]
        sends += [Send("reject", rejection) for rejection in rejected]
        return sends

    def reject_call(self, state: Rejection, config: RunnableConfig) -> dict[str, list[Any]]:
        """Answer a call that will not be dispatched (``state`` is the rejection its ``Send`` carries), with the
        reason and the expected schema."""
        answer = self.runner.reject(state, config, get_stream_writer())
        return {"messages": [answer], "untrusted_sources": tainted_by([answer])}

    def _out_of_budget(self, state: AgentState, config: RunnableConfig) -> str | None:
        """Why no further turn may start (turns, steps, task deadline), or ``None``."""
        if turns_taken(state["messages"]) >= self.max_turns or state["remaining_steps"] <= STEPS_PER_TURN:
            return f"the turn budget of {self.max_turns} model calls"
        budget = self._budget(state, config)
        if budget is not None and budget.expired():
            return f"the task deadline of {budget.config.deadline_s:g} s"
        return None

    def finish_out_of_budget(self, state: AgentState, config: RunnableConfig) -> dict[str, list[Any]]:
        """A budget is spent: answer the pending calls as not run, and end with a plain answer."""
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        spent = self._out_of_budget(state, config) or f"the turn budget of {self.max_turns} model calls"
        note = f"Not run: {spent} is spent."
        pending = [(c["id"] or "", c["name"]) for c in last.tool_calls] + [
            (c.get("id") or "", c.get("name") or "") for c in last.invalid_tool_calls
        ]
        answers: list[AnyMessage] = [
            self.runner.reject(Rejection(call_id, name, note), config, get_stream_writer()) for call_id, name in pending
        ]
        seen = [m for m in current_run(state["messages"]) if isinstance(m, ToolMessage) and not was_rejected(m)][-3:]
        evidence = "".join(f"\n- {m.name}: {str(m.content)[:200]}" for m in seen)
        answer = (
            f"I stopped before reaching a final answer: {spent} ran out, with {len(pending)} tool call(s) still "
            "requested." + (f" The last observations were:{evidence}" if evidence else "")
        )
        return {
            "messages": [
                *answers,
                AIMessage(content=answer, response_metadata={"ironloop": {"budget": True}}),
            ],
            "untrusted_sources": tainted_by(answers),
        }


def too_many_calls(asked: int, cap: int) -> str:
    """The observation of a call past the turn's cap."""
    return (
        f"Not run: too many calls in one turn ({asked} asked; at most {cap} run per turn). Ask again for what is "
        "still needed, in smaller turns."
    )
