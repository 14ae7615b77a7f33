"""The per-call runtime: each tool call under its policy, ending in exactly one observation.

`ToolCallRunner.awrap_tool_call` is a ``ToolNode`` ``awrap_tool_call`` hook made of small layers, each with
one job and readable alone (`tools.steps`), outermost first:

    ApprovalGate       a human's decision first, when the policy asks for one          tools.approval_gate
    Admission          waits in line while ``max_in_flight`` calls already run         tools.admission
    UntrustedOutput    an untrusted tool's output delimited, the thread marked        tools.untrusted
    CredentialGrants   the call's secrets bound to its tool; secrets scrubbed        tools.grants
    ExactlyOnce        side effects: the idempotency ledger around the attempts      tools.exactly_once
      or Observe       other calls: the result, or the failure as an observation      tools.observations
    CapResult          an oversized result cut                                        tools.observations
    AttemptLoop        retries under the policy; each attempt through the circuit    tools.attempts
                       breaker, error reports retry_on wants retried, the rate limit,
                       the timeout and hedging

Around each attempt, `TraceAttempt` (tools.attempt_trace) gives it a callback run of its own when the config
has callback handlers.

The result is the tool's ``ToolMessage``, a plainly marked fallback, or an observation the model can act on.
It never raises for a tool's failure, so one bad call cannot fail the node or cancel its siblings; only
LangGraph's interrupts and cancellation pass through. Each call's record then goes onto its observation, to
the listeners and on the stream (`tools.events`).

The layers are asynchronous only where they wait; their decisions are plain methods. `ToolCallRunner.wrap_tool_call`,
the sync hook, runs the same stack on the runner's own event-loop thread, with ``ToolNode``'s sync execute on a
`tools.threads.ToolThreads` thread (`tools.sync_bridge`): ``invoke`` retries, times out and hedges as ``ainvoke``
does. Either hook gives a sync-only tool its own thread (`ToolThreads.offload`), so many run at once and a timeout
can abandon one.

A runner learns its tools (their schemas, which are sync only, which take secrets) from `ToolCallRunner.for_tools`,
or, plugged into any ``ToolNode`` without them, from the first call's ``runtime.tools``.
"""

from __future__ import annotations

import random
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ironloop.tools.admission import Admission
from ironloop.tools.approval import RequestFormat
from ironloop.tools.approval_gate import ApprovalGate
from ironloop.tools.attempt_trace import TraceAttempt
from ironloop.tools.attempts import (
    AttemptLoop,
    CircuitGuard,
    ErrorReport,
    Hedge,
    RateLimitSlot,
    RecordAttempt,
    Timeout,
    run_tool,
)
from ironloop.tools.budget import Budgets, RunBudget, task_key
from ironloop.tools.containment import contain
from ironloop.tools.credentials import Credentials, check_grants
from ironloop.tools.events import CallEvents
from ironloop.tools.exactly_once import ExactlyOnce
from ironloop.tools.grants import CredentialGrants
from ironloop.tools.idempotency import IdempotencyStore, MemoryIdempotencyStore, logical_namespace
from ironloop.tools.loop_thread import LoopThread
from ironloop.tools.observations import DEFAULT_MAX_RESULT_CHARS, CapResult, Observe, interrupted, observation
from ironloop.tools.policy import DEFAULT_POLICY, ToolPolicy
from ironloop.tools.records import CallListener, CallOutcome, CallRecord
from ironloop.tools.redaction import scrubbing_tool
from ironloop.tools.sentinels import DEFAULT, Default
from ironloop.tools.steps import CallContext, Execute, Layer, Result, chain
from ironloop.tools.sync_bridge import AsyncOnlyTool, is_async_only
from ironloop.tools.threads import DEFAULT_MAX_THREADS, ThreadedTool, ToolThreads, is_sync_only
from ironloop.tools.untrusted import (
    UNTRUSTED_CHANNEL,
    UntrustedChannelWarning,
    UntrustedOutput,
    check_state_schema,
    delimit,
    missing_channel_text,
)
from ironloop.tools.validation import Rejection, ToolCatalog
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as create_tool
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command, StreamWriter

__all__ = ["DEFAULT_MAX_RESULT_CHARS", "Execute", "SyncExecute", "ToolCallRunner"]

SyncExecute = Callable[[ToolCallRequest], Result]
"""What ``ToolNode`` hands a sync ``wrap_tool_call`` hook: runs the tool once, in the caller's thread."""


class ToolCallRunner:
    """Runs tool calls under per-tool policies: plug it into any ``ToolNode`` as both hooks,
    ``ToolNode(tools, wrap_tool_call=runner.wrap_tool_call, awrap_tool_call=runner.awrap_tool_call)``.

    ``tools`` (or `for_tools`): the tools it will run, checked now (policies for unknown tools, secrets granted to
    a tool without the parameter); omitted, it learns them at the first call. ``credentials``: the tools'
    secrets; omitted, they are loaded from the environment and ``ironloop.toml`` when a tool granted some is first
    called; ``None``: there are none. ``idempotency_store``: the ledger of side effects; omitted, one in process
    memory. ``max_concurrency`` caps the threads sync tools run on. ``approval_format="langchain"`` adds
    LangChain's HITL keys to approval requests (`tools.approval`). ``state_schema``: the graph's state, checked
    now for the ``untrusted_sources`` channel (`tools.untrusted.check_state_schema`); without it a missing
    channel is warned about once, at the first call that needs it. ``max_in_flight``: calls run at once per
    event loop, the rest queued (`tools.admission`); ``None``: no cap.
    """

    def __init__(
        self,
        policies: Mapping[str, ToolPolicy] | None = None,
        default_policy: ToolPolicy = DEFAULT_POLICY,
        *,
        tools: Iterable[BaseTool | Callable[..., Any]] = (),
        listeners: Iterable[CallListener] = (),
        max_result_chars: int | None = DEFAULT_MAX_RESULT_CHARS,
        idempotency_store: IdempotencyStore | Default = DEFAULT,
        budgets: Budgets | None = None,
        rng: random.Random | None = None,
        credentials: Credentials | Default | None = DEFAULT,
        max_concurrency: int = DEFAULT_MAX_THREADS,
        approval_format: RequestFormat = "ironloop",
        state_schema: type | None = None,
        max_in_flight: int | None = None,
    ):
        self.policies = dict(policies or {})
        self.default_policy = default_policy
        self.listeners = list(listeners)
        self.budgets = budgets
        self.threads = ToolThreads(max_concurrency)
        self.catalog = ToolCatalog(())
        store = MemoryIdempotencyStore() if idempotency_store is DEFAULT else idempotency_store
        self.grants = CredentialGrants({}, _credentials_source(credentials))
        self.exactly_once = ExactlyOnce(store, self.threads)  # sync reconcile/snapshot hooks run there
        self._timeout = Timeout()
        self._lock = threading.Lock()
        self._prepared: dict[int, tuple[BaseTool, BaseTool]] = {}
        self._loop = LoopThread("ironloop-runner-loop")
        self._channel_checked = state_schema is not None
        if state_schema is not None and self._needs_channel():
            check_state_schema(state_schema)

        attempt = chain(
            [TraceAttempt(), RecordAttempt(), CircuitGuard(), ErrorReport(), RateLimitSlot(), self._timeout, Hedge()],
            run_tool,
        )
        attempts = chain([CapResult(max_result_chars)], AttemptLoop(attempt, rng))
        gate = ApprovalGate(
            self._check_args, self.catalog_schema, ledger=self._recorded, request_format=approval_format
        )
        around: list[Layer[CallContext]] = [gate, Admission(max_in_flight), UntrustedOutput(), self.grants]
        self._side_effect_call = chain([*around, self.exactly_once], attempts)
        self._plain_call = chain([*around, Observe()], attempts)
        tools = list(tools)
        if tools:
            self.add_tools(tools, strict=True)

    @classmethod
    def for_tools(
        cls,
        tools: Sequence[BaseTool | Callable[..., Any]],
        policies: Mapping[str, ToolPolicy] | None = None,
        default_policy: ToolPolicy = DEFAULT_POLICY,
        **options: Any,
    ) -> ToolCallRunner:
        """A runner for these tools, checked now; ``options`` as for the constructor."""
        return cls(policies, default_policy, tools=tools, **options)

    @property
    def credentials(self) -> Credentials:
        """The credentials store (loaded from the environment and config file when first needed, by default)."""
        return self.grants.credentials

    def policy_for(self, tool_name: str) -> ToolPolicy:
        return self.policies.get(tool_name, self.default_policy)

    def add_tools(self, tools: Iterable[BaseTool | Callable[..., Any]], *, strict: bool = False) -> None:
        """Learn tools: their schemas (to check a human's edits), which are sync only, which secrets each takes.

        Raises `ValueError` for secrets granted to a tool without the parameter, and, with ``strict``, for two
        tools of one name and for policies naming tools the runner does not have.
        """
        with self._lock:
            known = self.catalog.tools
            given = [t if isinstance(t, BaseTool) else create_tool(t) for t in tools]
            if not strict:  # learned from a ToolNode: the request's tool is also among its tools
                given = list({t.name: t for t in given}.values())
            new = [t for t in given if t.name not in known]
            catalog = ToolCatalog([*known.values(), *new]) if new else self.catalog
            if strict and (unknown := sorted(set(self.policies) - set(catalog.tools))):
                raise ValueError(f"policies given for tools the agent does not have: {', '.join(unknown)}")
            if not new:
                return
            grants = {name: self.policy_for(name).credentials for name in catalog.tools}
            self.grants.needs = check_grants(catalog.tools, grants)
            self._timeout.sync_tools = self._timeout.sync_tools | {t.name for t in new if is_sync_only(t)}
            self.catalog = catalog

    def catalog_schema(self, name: str) -> dict[str, Any] | None:
        """A known tool's argument schema (shown in approval requests)."""
        return self.catalog.parameters.get(name)

    def _check_args(self, name: str, args: Any) -> str | None:
        return self.catalog.check(name, args)

    def prepare(self, tool: BaseTool) -> BaseTool:
        """The tool as the runner runs it: its own ``KeyboardInterrupt``/``SystemExit`` contained (`tools.containment`),
        a sync-only one on its own threads (`ToolThreads.offload`), one granted
        secrets scrubbing its own result before LangChain's callbacks see it. Made once per tool."""
        with self._lock:
            known = self._prepared.get(id(tool))
        if known is not None:
            return known[1]
        prepared = tool if isinstance(tool, ThreadedTool) else contain(self.threads.offload(tool))
        if tool.name in self.grants.needs:
            prepared = scrubbing_tool(prepared, lambda: self.credentials.redact)
        with self._lock:
            self._prepared[id(tool)] = (tool, prepared)
            self._prepared[id(prepared)] = (prepared, prepared)
        return prepared

    async def awrap_tool_call(self, request: ToolCallRequest, execute: Execute) -> Result:
        """One call from start to observation (the ``ToolNode`` async hook)."""
        if request.tool is None:  # build_agent rejects these before dispatch; other ToolNodes may not
            available = ", ".join(sorted(t.name for t in request.runtime.tools)) or "none"
            name = request.tool_call["name"]
            reason = f"Error: there is no tool named {name!r}. Available tools: {available}."
            rejection = Rejection(request.tool_call["id"] or "", name, reason)
            return self.reject(rejection, request.runtime.config, request.runtime.stream_writer)
        if request.tool.name not in self.catalog.tools:
            self.add_tools([request.tool, *(request.runtime.tools or ())])
        request = request.override(tool=self.prepare(request.tool))

        record = _new_record(request.tool_call, request.runtime.config)
        policy = self.policy_for(record.tool)
        self._check_channel(request, policy)
        events = CallEvents(self.listeners, request.runtime.stream_writer)
        call = CallContext(request, execute, policy, record, events, self.task_budget(request))
        step = self._side_effect_call if policy.side_effect else self._plain_call
        message = events.call_ended(record, await step(call))
        if record.untrusted:
            return Command(update={"messages": [message], UNTRUSTED_CHANNEL: [record.tool]})
        return message

    def wrap_tool_call(self, request: ToolCallRequest, execute: SyncExecute) -> Result:
        """The same call under a sync ``invoke`` (the ``ToolNode`` sync hook): the async layers on the runner's
        event-loop thread, the tool on one of its tool threads (`tools.sync_bridge`)."""

        async def run_in_thread(request: ToolCallRequest) -> Result:
            if request.tool is not None and is_async_only(request.tool):
                request = request.override(tool=AsyncOnlyTool(request.tool, self._loop))
            return await self.threads.run(execute, request)

        return self._loop.run(self.awrap_tool_call(request, run_in_thread))  # in a copy of the caller's context

    def _needs_channel(self) -> bool:
        """True if some policy reads or writes the ``untrusted_sources`` channel."""
        policies = [self.default_policy, *self.policies.values()]
        return any(p.untrusted_output or p.approval_mode == "on_untrusted" for p in policies)

    def _check_channel(self, request: ToolCallRequest, policy: ToolPolicy) -> None:
        """Warn once if the graph's state has no ``untrusted_sources`` channel and this call needs it."""
        if self._channel_checked or not (policy.untrusted_output or policy.approval_mode == "on_untrusted"):
            return
        self._channel_checked = True
        if isinstance(request.state, Mapping) and UNTRUSTED_CHANNEL not in request.state:
            warnings.warn(missing_channel_text("the graph's state"), UntrustedChannelWarning, stacklevel=2)

    async def _recorded(self, call: CallContext) -> ToolMessage | None:
        """What the ledger knows of a call answered without running (a rejection), delimited if untrusted."""
        message = await self.exactly_once.recorded(call)
        return delimit(call.policy.untrusted_output, call.record, message) if message is not None else None

    def task_budget(self, request: ToolCallRequest) -> RunBudget | None:
        """The budget of the task this call belongs to (``None`` when the runner has no budgets)."""
        if self.budgets is None:
            return None
        state = request.state if isinstance(request.state, dict) else {}
        thread_id = ((request.runtime.config or {}).get("configurable") or {}).get("thread_id")
        return self.budgets.for_task(task_key(thread_id, state.get("messages", [])))

    def reject(
        self, rejection: Rejection, config: RunnableConfig | None = None, writer: StreamWriter | None = None
    ) -> ToolMessage:
        """The observation for a call that is not run (invalid, unknown, out of turns), unless the ledger knows it
        ran: a side effect is never answered "Not run" over a recorded end. (Such an answer from an untrusted tool
        is delimited and marked in its metadata: the node adds `tools.untrusted.tainted_by` to the state.)"""
        call = {"name": rejection.name, "id": rejection.tool_call_id}
        record = _new_record(call, config)
        events = CallEvents(self.listeners, writer)
        policy = self.policy_for(record.tool)
        known = self.exactly_once.recorded_answer(call, record) if policy.side_effect else None
        if known is not None:
            events.call_ended(record, delimit(policy.untrusted_output, record, known))
            return known
        record.outcome, record.reason = CallOutcome.REJECTED, rejection.reason
        message = observation(call, rejection.reason, error=True)
        events.call_ended(record, message)
        return message

    def orphan_answer(self, call: Mapping[str, Any], config: RunnableConfig | None = None) -> ToolMessage:
        """The observation for a call found without one after a stop: what the ledger knows, or "interrupted"."""
        return self.reject(Rejection(call["id"] or "", call["name"], interrupted(call["name"])), config)


def _new_record(call: Mapping[str, Any], config: RunnableConfig | None) -> CallRecord:
    configurable = (config or {}).get("configurable", {})
    return CallRecord(
        tool=call["name"],
        tool_call_id=call["id"] or "",
        thread_id=configurable.get("thread_id"),
        checkpoint_ns=logical_namespace(configurable.get("checkpoint_ns", "")),
    )


def _credentials_source(credentials: Credentials | Default | None) -> Credentials | Callable[[], Credentials]:
    """The store, or how to make it when first needed (only a tool granted secrets asks for it)."""
    if credentials is None:
        return Credentials()
    if credentials is DEFAULT:
        return Credentials.load
    return credentials
