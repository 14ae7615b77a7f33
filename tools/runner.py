"""The per-call runtime: each tool call under its policy, ending in exactly one observation.

`ToolCallRunner.awrap_tool_call` is a ``ToolNode`` ``awrap_tool_call`` hook. For one call it runs attempts
under the tool's `ToolPolicy` (timeout, retries with backoff and jitter, ``Retry-After``, deadline), then
returns the tool's ``ToolMessage``, a plainly marked fallback, or an error observation the model can act on.
It never raises for a tool's failure, so one bad call cannot fail the node or cancel its siblings; only
LangGraph's interrupts and cancellation pass through.

Credentials (`tools.credentials`): a tool whose policy lists ``credentials`` gets them per call through
`credential_args` (the ``tools`` node injects them), and every known secret is scrubbed from what any tool
hands back (`tools.redaction`) before anything records or shows it.

Before any of that, a call whose policy asks for a human's approval waits for it (`tools.approval`): a rejected
call never reaches the exactly-once ledger, the rate limiter or the tool. After it, the output of a tool with
``untrusted_output`` is handed to the model as delimited data, and the thread is marked as having read it.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from ironloop.tools.approval import (
    ApprovalListener,
    ApprovalRecord,
    ArgsCheck,
    Decision,
    approval_reason,
    ask,
)
from ironloop.tools.budget import Budgets, RunBudget, stop_when_budget_spent, task_key
from ironloop.tools.circuit import Circuit, CircuitOpenError, CircuitState
from ironloop.tools.credentials import Credentials, CredentialsConfigError, Secret
from ironloop.tools.errors import PermanentToolError, ToolTimeoutError, describe, error_class, is_transient
from ironloop.tools.exactly_once import ExactlyOnce
from ironloop.tools.hedging import race_with_hedge
from ironloop.tools.idempotency import IdempotencyStore, MemoryIdempotencyStore, logical_namespace
from ironloop.tools.policy import DEFAULT_POLICY, ToolPolicy
from ironloop.tools.rate_limit import RateLimiter
from ironloop.tools.records import Attempt, AttemptOutcome, CallListener, CallOutcome, CallRecord
from ironloop.tools.redaction import scrub_exception, scrub_message
from ironloop.tools.shared_circuit import open_circuit
from ironloop.tools.untrusted import wrap_untrusted
from ironloop.tools.validation import Rejection
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp, GraphInterrupt
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command, StreamWriter
from tenacity import RetryCallState, retry_if_exception

Execute = Callable[[ToolCallRequest], Awaitable[ToolMessage | Command]]

DEFAULT_MAX_RESULT_CHARS = 20_000
"""Longest tool result passed to the model; one tool must not blow up the context."""


class ToolCallRunner:
    """Runs tool calls under per-tool policies; plug it into a ToolNode as ``awrap_tool_call``."""

    def __init__(
        self,
        policies: Mapping[str, ToolPolicy] | None = None,
        default_policy: ToolPolicy | None = None,
        *,
        listeners: Iterable[CallListener] = (),
        sync_tools: Iterable[str] = (),
        max_result_chars: int | None = DEFAULT_MAX_RESULT_CHARS,
        idempotency_store: IdempotencyStore | None = None,
        budgets: Budgets | None = None,
        rng: random.Random | None = None,
        credentials: Credentials | None = None,
        credential_needs: Mapping[str, Mapping[str, bool]] | None = None,
        check_args: ArgsCheck | None = None,
        args_schemas: Mapping[str, dict[str, Any]] | None = None,
    ):
        self.policies = dict(policies or {})
        self.default_policy = default_policy or DEFAULT_POLICY
        self.listeners = list(listeners)
        self.sync_tools = frozenset(sync_tools)
        """Tools that run on threads: a timeout abandons their thread rather than cancelling them."""
        self.max_result_chars = max_result_chars
        self.exactly_once = ExactlyOnce(idempotency_store or MemoryIdempotencyStore())
        self.budgets = budgets
        self._circuits: dict[str, Circuit] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._state_lock = threading.Lock()
        self.rng = rng or random.Random()
        self.credential_needs = {tool: dict(needs) for tool, needs in (credential_needs or {}).items() if needs}
        """tool → {credential name → required}: what each tool is granted (`tools.credentials.check_grants`)."""
        self._credentials = credentials
        self.check_args = check_args
        """Checks a human's edited arguments like a model's (`tools.validation.ToolCatalog.check`)."""
        self.args_schemas = dict(args_schemas or {})
        """Each tool's argument schema, shown in approval requests so an edit can follow it."""

    @property
    def credentials(self) -> Credentials:
        """The credentials store: the one given, else loaded (env + config file) when first needed."""
        if self._credentials is None:
            with self._state_lock:
                if self._credentials is None:
                    self._credentials = Credentials.load() if self.credential_needs else Credentials()
        return self._credentials

    def credential_args(self, tool_name: str) -> dict[str, Secret]:
        """The secrets to inject into one call of ``tool_name``: only those its policy lists (maybe none).
        A required one that is missing raises `MissingCredentialError` (a permanent error)."""
        store = self.credentials
        args: dict[str, Secret] = {}
        for name, required in self.credential_needs.get(tool_name, {}).items():
            secret = store.require(tool_name, name) if required else store.get(tool_name, name)
            if secret is not None:
                args[name] = secret
        return args

    def _scrubbing(self, execute: Execute) -> Execute:
        """``execute`` whose result and error carry no known secret (the one place tool output enters)."""
        redact = self.credentials.redact

        async def scrubbed(request: ToolCallRequest) -> ToolMessage | Command:
            try:
                result = await execute(request)
            except (GraphBubbleUp, asyncio.CancelledError):
                raise
            except Exception as error:
                cleaned = scrub_exception(error, redact)
                if cleaned is error:
                    raise
                raise cleaned from None
            return scrub_message(result, redact)

        return scrubbed

    def policy_for(self, tool_name: str) -> ToolPolicy:
        return self.policies.get(tool_name, self.default_policy)

    async def awrap_tool_call(self, request: ToolCallRequest, execute: Execute) -> ToolMessage | Command:
        call = request.tool_call
        if request.tool is None:  # build_agent rejects these before dispatch; other ToolNodes may not
            available = ", ".join(sorted(t.name for t in request.runtime.tools)) or "none"
            reason = f"Error: there is no tool named {call['name']!r}. Available tools: {available}."
            return self.reject(
                Rejection(call["id"], call["name"], reason),
                request.runtime.config,
                request.runtime.stream_writer,
            )

        record = self._new_record(call, request.runtime.config)
        policy = self.policy_for(call["name"])
        writer = request.runtime.stream_writer
        decision = self.approve(request, policy, record)  # raises GraphInterrupt until a human answers
        if decision is not None and decision.action == "reject":
            return self._finish(writer, record, self._denied(call, record, decision))
        if decision is not None and decision.action == "edit":
            request = request.override(tool_call={**call, "args": decision.args})
        if self.credential_needs:
            try:
                self.credential_args(call["name"])  # a missing credential fails the call before it starts
            except (PermanentToolError, CredentialsConfigError) as error:
                message = self.failure_message(call, policy, record, PermanentToolError(str(error)))
                return self._finish(writer, record, message)
            if self.credentials:
                execute = self._scrubbing(execute)
        if policy.side_effect:
            message = await self.exactly_once.call(self, request, execute, policy, record)
        else:
            message = await self.call(request, execute, policy, record)
        if decision is not None and decision.action == "edit" and isinstance(message, ToolMessage):
            note = f"[a human edited the arguments before this call ran: {json.dumps(decision.args, default=str)}]"
            message.content = f"{message.content}\n{note}" if isinstance(message.content, str) else message.content
        if policy.untrusted_output and record.outcome == CallOutcome.OK and isinstance(message, ToolMessage):
            if isinstance(message.content, str):
                message.content = wrap_untrusted(call["name"], message.content)
            finished = self._finish(writer, record, message)
            return Command(update={"messages": [finished], "untrusted_sources": [call["name"]]})
        return self._finish(writer, record, message)

    def approve(self, request: ToolCallRequest, policy: ToolPolicy, record: CallRecord) -> Decision | None:
        """A human's decision on this call if its policy asks for one now (``None`` if not), recorded."""
        call = request.tool_call
        state = request.state if isinstance(request.state, dict) else {}
        mode = policy.approval_mode
        reason = approval_reason(call["name"], mode, state.get("untrusted_sources") or ())
        if reason is None:
            return None
        budget = self.task_budget(request)
        try:
            decision = ask(call, reason, check=self.check_args, schema=self.args_schemas.get(call["name"]))
        except GraphInterrupt:
            if budget is not None:
                budget.pause()
            raise
        if budget is not None:
            budget.unpause()
        approval = ApprovalRecord(
            tool=call["name"],
            tool_call_id=call["id"],
            thread_id=record.thread_id,
            checkpoint_ns=record.checkpoint_ns,
            decision=decision,
            reason_asked=reason,
            mode=mode,
            args=dict(call["args"]),
        )
        record.approval = approval.as_metadata()
        for listener in self.listeners:
            if isinstance(listener, ApprovalListener):
                listener.on_approval(approval)
        _emit(
            request.runtime.stream_writer,
            {"event": "tool_approval", "tool": call["name"], "tool_call_id": call["id"], **decision.as_dict()},
        )
        return decision

    @staticmethod
    def _denied(call: Mapping[str, Any], record: CallRecord, decision: Decision) -> ToolMessage:
        """The observation of a call a human rejected: their reason, for the model to act on."""
        who = f" ({decision.by})" if decision.by else ""
        reason = decision.reason or "no reason given"
        record.outcome, record.reason = CallOutcome.DENIED, f"rejected by a human{who}: {reason}"
        return ToolMessage(
            content=(
                f"Not run: a human{who} rejected this {call['name']} call when asked to approve it. Reason: {reason}. "
                "Do not retry it unchanged; tell the user, or take another approach."
            ),
            name=call["name"],
            tool_call_id=call["id"],
            status="error",
        )

    async def call(
        self, request: ToolCallRequest, execute: Execute, policy: ToolPolicy, record: CallRecord
    ) -> ToolMessage | Command:
        """Attempts under the policy, ending in the result, a marked fallback, or an error observation."""
        try:
            result = await self.attempts(request, execute, policy, record)
        except GraphBubbleUp:
            raise
        except Exception as error:
            return self.failure_message(request.tool_call, policy, record, error)
        return self.success(record, result)

    async def attempts(
        self,
        request: ToolCallRequest,
        execute: Execute,
        policy: ToolPolicy,
        record: CallRecord,
        retry_if: Callable[[BaseException], bool] | None = None,
    ) -> ToolMessage | Command:
        """Run attempts until one answers or the policy gives up (then the last error is raised).

        ``retry_if`` narrows which errors are retried (the exactly-once runtime retries fewer).
        """
        started = time.monotonic()
        deadline_at = policy.deadline_from_now()
        budget = self.task_budget(request)
        if budget is not None and budget.deadline_at is not None:
            deadline_at = budget.deadline_at if deadline_at is None else min(deadline_at, budget.deadline_at)

        def before_sleep(state: RetryCallState) -> None:
            last = record.attempts[-1]
            last.retry_in_s = round(state.upcoming_sleep, 4)
            self._announce_attempt(request, record, last)

        retrying = policy.retrying(deadline_at=deadline_at, rng=self.rng).copy(before_sleep=before_sleep)
        if retry_if is not None:
            retrying = retrying.copy(retry=retry_if_exception(retry_if))
        if budget is not None:
            retrying = retrying.copy(stop=retrying.stop | stop_when_budget_spent(budget))
        try:
            async for attempt in retrying:
                with attempt:
                    result = await self._attempt(request, execute, policy, record, deadline_at)
        except BaseException:
            if record.attempts:
                self._announce_attempt(request, record, record.attempts[-1])
            raise
        finally:
            record.ms += (time.monotonic() - started) * 1000
        self._announce_attempt(request, record, record.attempts[-1])
        return result

    def task_budget(self, request: ToolCallRequest) -> RunBudget | None:
        """The budget of the task this call belongs to (``None`` when the runner has no budgets)."""
        if self.budgets is None:
            return None
        state = request.state if isinstance(request.state, dict) else {}
        thread_id = ((request.runtime.config or {}).get("configurable") or {}).get("thread_id")
        return self.budgets.for_task(task_key(thread_id, state.get("messages", [])))

    def success(self, record: CallRecord, result: ToolMessage | Command) -> ToolMessage | Command:
        last = record.attempts[-1]
        if last.outcome == AttemptOutcome.OK:
            record.outcome = CallOutcome.OK
            return self._capped(result) if isinstance(result, ToolMessage) else result
        record.outcome, record.reason = CallOutcome.ERROR, last.error  # the tool's own error observation
        return result

    async def _attempt(
        self,
        request: ToolCallRequest,
        execute: Execute,
        policy: ToolPolicy,
        record: CallRecord,
        deadline_at: float | None,
    ) -> ToolMessage | Command:
        """One attempt: through the circuit breaker and the rate limiter, under the timeout, maybe hedged."""
        name = request.tool_call["name"]
        attempt = Attempt(number=len(record.attempts) + 1, outcome=AttemptOutcome.OK, started_at=time.time(), ms=0.0)
        record.attempts.append(attempt)
        circuit = self._circuit(name, policy)
        limiter = self._limiter(name, policy)
        started = time.monotonic()
        timeout: float | None = None
        acquired = False
        try:
            if circuit is not None and circuit.admit(name) is CircuitState.HALF_OPEN:
                attempt.circuit = str(CircuitState.HALF_OPEN)
            if limiter is not None:
                attempt.rate_limited_ms = 1000 * await limiter.acquire(deadline_at)
                acquired = True
            timed_out = sum(earlier.outcome is AttemptOutcome.TIMEOUT for earlier in record.attempts[:-1])
            timeout = policy.attempt_timeout(deadline_at, timed_out)
            hedge_after_s = policy.hedge_delay(timed_out)
            async with asyncio.timeout(timeout) as scope:
                if hedge_after_s is None:
                    result = await execute(request)
                else:
                    result, attempt.hedge = await race_with_hedge(
                        lambda: execute(request), hedge_after_s, policy.hedges
                    )
        except TimeoutError as exc:
            if scope.expired():
                attempt.abandoned_thread = name in self.sync_tools
                error = ToolTimeoutError(f"no answer within {timeout:.3g} s")
                self._failed(attempt, error, AttemptOutcome.TIMEOUT, record, circuit, started)
                raise error from exc
            self._failed(attempt, exc, AttemptOutcome.TIMEOUT, record, circuit, started)
            raise
        except (GraphBubbleUp, asyncio.CancelledError):
            attempt.ms = (time.monotonic() - started) * 1000
            if circuit is not None:
                circuit.forget()
            raise
        except Exception as exc:
            outcome = AttemptOutcome.TRANSIENT_ERROR if policy.should_retry(exc) else AttemptOutcome.PERMANENT_ERROR
            self._failed(attempt, exc, outcome, record, circuit, started)
            raise
        finally:
            if acquired:
                limiter.release()
        attempt.ms = (time.monotonic() - started) * 1000
        if circuit is not None:
            circuit.record(success=True)
        if isinstance(result, ToolMessage) and result.status == "error":
            # The tool handled its own error (a ToolException with handle_tool_error). Not retried.
            attempt.outcome, attempt.error = AttemptOutcome.PERMANENT_ERROR, describe(Exception(result.content))
        for listener in self.listeners:
            listener.on_attempt(record, attempt)
        return result

    def _failed(
        self,
        attempt: Attempt,
        error: BaseException,
        outcome: AttemptOutcome,
        record: CallRecord,
        circuit: Circuit | None,
        started: float,
    ) -> None:
        attempt.ms = (time.monotonic() - started) * 1000
        if circuit is not None and not isinstance(error, CircuitOpenError):
            # The service's faults (transient, timeouts) count; an answered refusal shows it is alive.
            circuit.record(success=outcome is AttemptOutcome.PERMANENT_ERROR)
        self._note_failure(attempt, error, outcome, record)

    def _circuit(self, tool: str, policy: ToolPolicy) -> Circuit | None:
        if policy.circuit_breaker is None:
            return None
        with self._state_lock:
            circuit = self._circuits.get(tool)
            if circuit is None or circuit.config != policy.circuit_breaker:
                circuit = self._circuits[tool] = open_circuit(policy.circuit_breaker, tool)
            return circuit

    def _limiter(self, tool: str, policy: ToolPolicy) -> RateLimiter | None:
        if policy.rate_limit is None:
            return None
        with self._state_lock:
            limiter = self._limiters.get(tool)
            if limiter is None or limiter.config != policy.rate_limit:
                limiter = self._limiters[tool] = RateLimiter(policy.rate_limit, key=f"ironloop:tool:{tool}")
            return limiter

    def _capped(self, message: ToolMessage) -> ToolMessage:
        """Cut an oversized text result, saying how much was cut."""
        limit = self.max_result_chars
        if limit is None or not isinstance(message.content, str) or len(message.content) <= limit:
            return message
        total = len(message.content)
        note = f"\n[cut: {total - limit:,} of {total:,} characters not shown]"
        return message.model_copy(update={"content": message.content[:limit] + note})

    def _note_failure(
        self, attempt: Attempt, error: BaseException, outcome: AttemptOutcome, record: CallRecord
    ) -> None:
        attempt.outcome = outcome
        attempt.error_class = error_class(error)
        attempt.error = describe(error)
        for listener in self.listeners:
            listener.on_attempt(record, attempt)

    def failure_message(
        self, call: dict[str, Any], policy: ToolPolicy, record: CallRecord, error: BaseException
    ) -> ToolMessage:
        tries = len(record.attempts)
        timed_out = bool(record.attempts) and record.attempts[-1].outcome == AttemptOutcome.TIMEOUT
        transient = is_transient(error) or timed_out
        why = f"{describe(error)} (after {tries} attempt{'s' if tries != 1 else ''})"
        record.reason = why
        if policy.has_fallback:
            record.outcome = CallOutcome.FALLBACK
            value = policy.fallback_for(error)
            return ToolMessage(
                content=(
                    f"[fallback] {call['name']} failed: {why}. The following is a fallback value, "
                    f"not a real result: {value}"
                ),
                name=call["name"],
                tool_call_id=call["id"],
                status="success",
            )
        record.outcome = CallOutcome.ERROR
        advice = (
            "The fault is temporary on the service's side; the runtime already retried. Continue without this "
            "result, or try again later."
            if transient
            else "This will fail the same way if repeated; change the arguments or take another approach."
        )
        return ToolMessage(
            content=f"Error: {call['name']} failed: {why}. {advice}",
            name=call["name"],
            tool_call_id=call["id"],
            status="error",
        )

    def reject(
        self, rejection: Rejection, config: RunnableConfig | None = None, writer: StreamWriter | None = None
    ) -> ToolMessage:
        """The observation for a call that is not run (invalid, unknown, out of turns)."""
        record = self._new_record({"name": rejection.name, "id": rejection.tool_call_id}, config)
        record.outcome, record.reason = CallOutcome.REJECTED, rejection.reason
        message = ToolMessage(
            content=rejection.reason, name=rejection.name, tool_call_id=rejection.tool_call_id, status="error"
        )
        return self._finish(writer, record, message)

    def orphan_answer(self, call: Mapping[str, Any], config: RunnableConfig | None = None) -> ToolMessage:
        """The observation for a call found without one after a stop: what the ledger knows, or "interrupted"."""
        record = self._new_record(call, config)
        if self.policy_for(call["name"]).side_effect:
            message = self.exactly_once.recorded_answer(call, record)
            if message is not None:
                return self._finish(None, record, message)
        note = (
            f"Not run: this {call['name']} call was interrupted (the run stopped before it finished) and was not "
            "retried automatically. Call it again if it is still needed."
        )
        return self.reject(Rejection(call["id"], call["name"], note), config)

    @staticmethod
    def _new_record(call: Mapping[str, Any], config: RunnableConfig | None) -> CallRecord:
        configurable = (config or {}).get("configurable", {})
        return CallRecord(
            tool=call["name"],
            tool_call_id=call["id"],
            thread_id=configurable.get("thread_id"),
            checkpoint_ns=logical_namespace(configurable.get("checkpoint_ns", "")),
        )

    def bookkeeping_attempt(self, request: ToolCallRequest, record: CallRecord) -> None:
        """Report an attempt the runtime answered itself (a replay from the idempotency ledger)."""
        attempt = record.attempts[-1]
        for listener in self.listeners:
            listener.on_attempt(record, attempt)
        self._announce_attempt(request, record, attempt)

    def _announce_attempt(self, request: ToolCallRequest, record: CallRecord, attempt: Attempt) -> None:
        _emit(
            request.runtime.stream_writer,
            {
                "event": "tool_attempt",
                "tool": record.tool,
                "tool_call_id": record.tool_call_id,
                **attempt.as_dict(),
            },
        )

    def _finish(
        self, writer: StreamWriter | None, record: CallRecord, message: ToolMessage | Command
    ) -> ToolMessage | Command:
        if isinstance(message, ToolMessage):
            message.response_metadata = {**message.response_metadata, "ironloop": record.as_metadata()}
        for listener in self.listeners:
            listener.on_call_end(record)
        _emit(
            writer,
            {
                "event": "tool_call",
                "tool": record.tool,
                "tool_call_id": record.tool_call_id,
                "outcome": str(record.outcome),
                "attempts": len(record.attempts),
                "ms": round(record.ms, 3),
                **({"reason": record.reason} if record.reason else {}),
            },
        )
        return message


def _emit(writer: StreamWriter | None, event: dict[str, Any]) -> None:
    """Put an event on the graph's custom stream, if the call runs inside a graph."""
    if writer is not None:
        writer(event)
