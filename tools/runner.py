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

The result is the tool's ``ToolMessage``, a plainly marked fallback, or an observation the model can act on.
It never raises for a tool's failure, so one bad call cannot fail the node or cancel its siblings; only
LangGraph's interrupts and cancellation pass through. Each call's record then goes onto its observation, to
the listeners and on the stream (`tools.events`).

The layers are asynchronous only where they wait; their decisions are plain methods. A synchronous hook can
run the same stack on a private event loop with the sync execute offloaded to a thread
(`tools.loop_thread.LoopThread`, `tools.threads.ToolThreads`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ironloop.tools.admission import Admission
from ironloop.tools.approval import ArgsCheck
from ironloop.tools.approval_gate import ApprovalGate
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
from ironloop.tools.credentials import Credentials
from ironloop.tools.events import CallEvents
from ironloop.tools.exactly_once import ExactlyOnce
from ironloop.tools.grants import CredentialGrants
from ironloop.tools.idempotency import IdempotencyStore, MemoryIdempotencyStore, logical_namespace
from ironloop.tools.observations import DEFAULT_MAX_RESULT_CHARS, CapResult, Observe, interrupted, observation
from ironloop.tools.policy import DEFAULT_POLICY, ToolPolicy
from ironloop.tools.records import CallListener, CallOutcome, CallRecord
from ironloop.tools.sentinels import DEFAULT, Default
from ironloop.tools.steps import CallContext, Execute, Layer, Result, chain
from ironloop.tools.threads import ToolThreads
from ironloop.tools.untrusted import UntrustedOutput, delimit
from ironloop.tools.validation import Rejection
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command, StreamWriter

__all__ = ["DEFAULT_MAX_RESULT_CHARS", "Execute", "ToolCallRunner"]


class ToolCallRunner:
    """Runs tool calls under per-tool policies; plug it into a ToolNode as ``awrap_tool_call``.

    ``credentials``: the tools' secrets; omitted, they are loaded from the environment and ``ironloop.toml`` when
    a tool granted some is first called; ``None``: there are none. ``idempotency_store``: the ledger of side
    effects; omitted, one in process memory. ``threads``: where sync ``reconcile``/``snapshot`` hooks run (the sync
    tools' threads; omitted, threads of the runner's own). ``max_in_flight``: calls run at once per event loop,
    the rest queued (`tools.admission`); ``None``: no cap.
    """

    def __init__(
        self,
        policies: Mapping[str, ToolPolicy] | None = None,
        default_policy: ToolPolicy = DEFAULT_POLICY,
        *,
        listeners: Iterable[CallListener] = (),
        sync_tools: Iterable[str] = (),
        max_result_chars: int | None = DEFAULT_MAX_RESULT_CHARS,
        idempotency_store: IdempotencyStore | Default = DEFAULT,
        budgets: Budgets | None = None,
        rng: random.Random | None = None,
        credentials: Credentials | Default | None = DEFAULT,
        credential_needs: Mapping[str, Mapping[str, bool]] | None = None,
        check_args: ArgsCheck | None = None,
        args_schemas: Mapping[str, dict[str, Any]] | None = None,
        threads: ToolThreads | None = None,
        max_in_flight: int | None = None,
    ):
        self.policies = dict(policies or {})
        self.default_policy = default_policy
        self.listeners = list(listeners)
        self.budgets = budgets
        store = MemoryIdempotencyStore() if idempotency_store is DEFAULT else idempotency_store
        needs = {tool: dict(names) for tool, names in (credential_needs or {}).items() if names}
        self.grants = CredentialGrants(needs, _credentials_source(credentials, needs))
        self.exactly_once = ExactlyOnce(store, threads)

        attempt = chain(
            [RecordAttempt(), CircuitGuard(), ErrorReport(), RateLimitSlot(), Timeout(sync_tools), Hedge()],
            run_tool,
        )
        attempts = chain([CapResult(max_result_chars)], AttemptLoop(attempt, rng))
        gate = ApprovalGate(check_args, args_schemas, ledger=self._recorded)
        around: list[Layer[CallContext]] = [gate, Admission(max_in_flight), UntrustedOutput(), self.grants]
        self._side_effect_call = chain([*around, self.exactly_once], attempts)
        self._plain_call = chain([*around, Observe()], attempts)

    @property
    def credentials(self) -> Credentials:
        """The credentials store (loaded from the environment and config file when first needed, by default)."""
        return self.grants.credentials

    def policy_for(self, tool_name: str) -> ToolPolicy:
        return self.policies.get(tool_name, self.default_policy)

    async def awrap_tool_call(self, request: ToolCallRequest, execute: Execute) -> Result:
        """One call from start to observation (the ``ToolNode`` hook)."""
        if request.tool is None:  # build_agent rejects these before dispatch; other ToolNodes may not
            available = ", ".join(sorted(t.name for t in request.runtime.tools)) or "none"
            name = request.tool_call["name"]
            reason = f"Error: there is no tool named {name!r}. Available tools: {available}."
            rejection = Rejection(request.tool_call["id"] or "", name, reason)
            return self.reject(rejection, request.runtime.config, request.runtime.stream_writer)

        record = _new_record(request.tool_call, request.runtime.config)
        policy = self.policy_for(record.tool)
        events = CallEvents(self.listeners, request.runtime.stream_writer)
        call = CallContext(request, execute, policy, record, events, self.task_budget(request))
        step = self._side_effect_call if policy.side_effect else self._plain_call
        message = events.call_ended(record, await step(call))
        if record.untrusted:
            return Command(update={"messages": [message], "untrusted_sources": [record.tool]})
        return message

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


def _credentials_source(
    credentials: Credentials | Default | None, needs: Mapping[str, Mapping[str, bool]]
) -> Credentials | Callable[[], Credentials]:
    """The store, or how to make it when first needed: loaded when some tool is granted secrets, else empty."""
    if credentials is None:
        return Credentials()
    if credentials is DEFAULT:
        return Credentials.load if needs else Credentials
    return credentials
