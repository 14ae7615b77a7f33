"""`IronloopToolMiddleware`: ironloop's per-call runtime inside ``langchain.agents.create_agent``.

    agent = create_agent(model, tools, middleware=[IronloopToolMiddleware(policies={"search": ToolPolicy(...)})])

Each tool call ``create_agent`` makes runs through a `tools.runner.ToolCallRunner` (timeouts, retries with
``Retry-After``, fallback, rate limit, circuit breaker, hedging, exactly-once side effects, credentials and
scrubbing, untrusted output, approval), under ``invoke`` and ``ainvoke`` alike, and its ``ToolMessage`` carries
the call's record (``response_metadata["ironloop"]``). The middleware adds the ``untrusted_sources`` channel to
the agent's state, so "approval on untrusted output" works without a custom state schema.

What it cannot do from inside a tool hook, `graph.agent.build_agent` does: calls the catalog rejects before
dispatch (bad JSON, off-schema arguments: ``create_agent`` runs them and ``ToolNode`` answers), the loop guard,
orphan repair, the task's deadline counted from the first model call, and the model's own policy and fallbacks
(LangChain's ``ModelRetryMiddleware``/``ModelFallbackMiddleware`` cover those here). ``docs/middleware.md``
compares the two and gives the order to list LangChain's middleware in.

Needs ``langchain`` (``pip install 'ironloop[bench]'`` or ``pip install langchain``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Annotated, NotRequired

from ironloop.graph.agent import DEFAULT_TASK_BUDGET
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
from langgraph.types import Command


class UntrustedState(AgentState):
    """``create_agent``'s state plus ironloop's ``untrusted_sources`` (not part of the agent's input)."""

    untrusted_sources: NotRequired[Annotated[list[str], OmitFromSchema(input=True, output=False), merge_sources]]
    """Tools with ``untrusted_output`` whose output the thread has read (`graph.state.AgentState`)."""


class IronloopToolMiddleware(AgentMiddleware):
    """Runs ``create_agent``'s tool calls under ironloop's per-tool policies (sync and async hooks).

    Arguments as for `graph.agent.build_agent`; ``runner`` instead shares an existing `ToolCallRunner` (its
    circuits, rate limits and ledger). The tools are learned at the first call. ``approval_format="langchain"``
    shapes approval requests for LangChain's HITL clients too (Agent Chat UI); both formats are answered.
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

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command]
    ) -> ToolMessage | Command:
        return self.runner.wrap_tool_call(request, handler)

    async def awrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command]]
    ) -> ToolMessage | Command:
        return await self.runner.awrap_tool_call(request, handler)
