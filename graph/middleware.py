"""`IronloopToolMiddleware`: ironloop's per-call runtime inside ``langchain.agents.create_agent``.

    agent = create_agent(model, tools, middleware=[IronloopToolMiddleware(policies={"search": ToolPolicy(...)})])

Each tool call ``create_agent`` makes runs through a `tools.runner.ToolCallRunner` (timeouts, retries with
``Retry-After``, fallback, rate limit, circuit breaker, hedging, exactly-once side effects, credentials and
scrubbing, untrusted output, approval), under ``invoke`` and ``ainvoke`` alike, and its ``ToolMessage`` carries
the call's record (``response_metadata["ironloop"]``). The middleware adds the ``untrusted_sources`` channel to
the agent's state, so "approval on untrusted output" works without a custom state schema.

It also brings the loop guard (a call identical to ``loop_limit`` earlier ones in the task is refused,
`graph.loop_guard.LoopGuard`) and, before the agent's first step, orphan repair (`graph.repair.OrphanRepair`).
What it cannot do from inside the hooks, `graph.agent.build_agent` does: calls the catalog rejects before dispatch
(bad JSON, off-schema arguments: here ``ToolNode`` answers them), the turn budget with an honest last answer, the
task's deadline counted from the first model call, and the model's own policy and fallbacks (LangChain's
``ModelRetryMiddleware``/``ModelFallbackMiddleware`` cover those here). ``docs/middleware.md`` compares the two
and gives the order to list LangChain's middleware in.

Needs ``langchain``: ``pip install 'ironloop[langchain]'``.
"""

from __future__ import annotations

try:
    import langchain.agents as _langchain_agents  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("IronloopToolMiddleware needs langchain: pip install 'ironloop[langchain]'") from exc

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Annotated, Any, NotRequired

from ironloop.graph.agent import DEFAULT_TASK_BUDGET
from ironloop.graph.loop_guard import DEFAULT_LOOP_LIMIT, LoopGuard
from ironloop.graph.repair import OrphanRepair
from ironloop.graph.state import orphaned_calls
from ironloop.tools.approval import RequestFormat
from ironloop.tools.budget import Budgets, TaskBudget
from ironloop.tools.credentials import Credentials
from ironloop.tools.idempotency import IdempotencyStore
from ironloop.tools.observations import DEFAULT_MAX_RESULT_CHARS
from ironloop.tools.policy import DEFAULT_POLICY, ToolPolicy
from ironloop.tools.records import CallListener
from ironloop.tools.runner import ToolCallRunner
from ironloop.tools.sentinels import DEFAULT, Default
from ironloop.tools.threads import DEFAULT_MAX_THREADS
from ironloop.tools.untrusted import merge_sources
from langchain.agents.middleware import AgentMiddleware, AgentState, ToolCallRequest
from langchain.agents.middleware.types import OmitFromSchema
from langchain_core.messages import ToolMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph.types import Command


class UntrustedState(AgentState):
    """``create_agent``'s state plus ironloop's ``untrusted_sources`` (not part of the agent's input)."""

    untrusted_sources: NotRequired[Annotated[list[str], OmitFromSchema(input=True, output=False), merge_sources]]
    """Tools with ``untrusted_output`` whose output the thread has read (`graph.state.AgentState`)."""


class IronloopToolMiddleware(AgentMiddleware):
    """Runs ``create_agent``'s tool calls under ironloop's per-tool policies (sync and async hooks).

    Arguments as for `graph.agent.build_agent` (``loop_limit=None``: no loop guard); ``runner`` instead shares an
    existing `ToolCallRunner` (its circuits, rate limits and ledger). The tools are learned at the first call.
    ``approval_format="langchain"`` shapes approval requests for LangChain's HITL clients too (Agent Chat UI);
    both formats are answered.
    """

    state_schema = UntrustedState

    def __init__(
        self,
        policies: Mapping[str, ToolPolicy] | None = None,
        default_policy: ToolPolicy = DEFAULT_POLICY,
        *,
        listeners: Iterable[CallListener] = (),
        max_result_chars: int | None = DEFAULT_MAX_RESULT_CHARS,
        idempotency_store: IdempotencyStore | Default = DEFAULT,
        task_budget: TaskBudget | None = DEFAULT_TASK_BUDGET,
        credentials: Credentials | Default | None = DEFAULT,
        max_concurrency: int = DEFAULT_MAX_THREADS,
        approval_format: RequestFormat = "ironloop",
        loop_limit: int | None = DEFAULT_LOOP_LIMIT,
        runner: ToolCallRunner | None = None,
    ):
        super().__init__()
        self.runner = runner or ToolCallRunner(
            policies,
            default_policy,
            listeners=listeners,
            max_result_chars=max_result_chars,
            idempotency_store=idempotency_store,
            budgets=Budgets(task_budget) if task_budget is not None else None,
            credentials=credentials,
            max_concurrency=max_concurrency,
            approval_format=approval_format,
            state_schema=UntrustedState,
        )
        self.hooks: ToolCallRunner | LoopGuard = (
            self.runner if loop_limit is None else LoopGuard(self.runner, loop_limit)
        )
        self.repair = OrphanRepair(self.runner)

    def before_agent(self, state: AgentState, runtime: Runtime) -> dict[str, Any] | None:
        """New input on a thread left mid-turn: answer its orphaned calls first (`graph.repair`)."""
        if not orphaned_calls(state["messages"]):
            return None
        return self.repair(state, get_config())

    async def abefore_agent(self, state: AgentState, runtime: Runtime) -> dict[str, Any] | None:
        """As `before_agent`, without an executor hop when there is nothing to repair (the usual case)."""
        if not orphaned_calls(state["messages"]):
            return None
        return await asyncio.to_thread(self.repair, state, get_config())  # the ledger may be a database

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command]
    ) -> ToolMessage | Command:
        return self.hooks.wrap_tool_call(request, handler)

    async def awrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command]]
    ) -> ToolMessage | Command:
        return await self.hooks.awrap_tool_call(request, handler)
