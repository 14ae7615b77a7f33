"""The ``execute_tool`` span of each tool call, one span per attempt under it, and the tool metrics.

`ToolSpans` is a `tools.records.CallListener`: the runner tells it about each attempt and each finished call
(`tools.events`), and it writes the spans once the call is over, with the times the records hold, so the tree
is exactly the call's record: a retried call is one ``execute_tool`` span with two attempt spans, a replay from
the idempotency ledger is an attempt marked ``ironloop.attempt.replayed``, a fallback a call marked
``ironloop.call.outcome = fallback``. Spans are written after the fact: a tool's own client spans are not
nested under its attempt.

Attributes hold names, classes, counts, outcomes and times, never a tool's arguments, its result, an error's
text or an idempotency key (which could carry a secret, a customer's data, or a key the GenAI conventions
forbid recording).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ironloop.tools.errors import CircuitOpenError, error_class
from ironloop.tools.records import Attempt, AttemptOutcome, CallOutcome, CallRecord
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from ironloop.observability.runs import RunSpans

CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}
OPEN_CIRCUIT = error_class(CircuitOpenError("circuit open"))
"""The error class an attempt refused by an open circuit records."""
FAILED_CALLS = frozenset(
    {CallOutcome.FALLBACK, CallOutcome.ERROR, CallOutcome.UNKNOWN, CallOutcome.DENIED, CallOutcome.REJECTED}
)
"""Calls whose span has status ERROR: the tool gave no answer of its own (a fallback is the runtime's)."""


class Instruments:
    """The tool metrics (OpenTelemetry instruments of ``meter``)."""

    def __init__(self, meter: metrics.Meter):
        self.attempts = meter.create_counter("ironloop.tool.attempts", unit="{attempt}", description="Tool attempts")
        self.calls = meter.create_counter("ironloop.tool.calls", unit="{call}", description="Tool calls")
        self.call_duration = meter.create_histogram(
            "ironloop.tool.call.duration", unit="s", description="Tool call duration, retries and waits included"
        )
        self.attempt_duration = meter.create_histogram(
            "ironloop.tool.attempt.duration", unit="s", description="Duration of one tool attempt"
        )
        self.rate_limit_wait = meter.create_histogram(
            "ironloop.tool.rate_limit.wait", unit="s", description="Wait for a rate-limit slot before an attempt"
        )
        self.circuit_state = meter.create_gauge(
            "ironloop.tool.circuit.state", unit="1", description="Circuit breaker state: 0 closed, 1 half-open, 2 open"
        )


def attempt_outcome(attempt: Attempt) -> str:
    """``replayed`` for an answer from the idempotency ledger (nothing ran), else the attempt's outcome."""
    return "replayed" if attempt.replayed else str(attempt.outcome)


def circuit_state(attempt: Attempt) -> str:
    if attempt.error_class == OPEN_CIRCUIT:
        return "open"
    return "half_open" if attempt.circuit == "half_open" else "closed"


class ToolSpans:
    """Spans and metrics of tool calls, as a `CallListener` (a decision on approval is on its call's span, from the
    call's record: ``ironloop.approval.decision``)."""

    def __init__(
        self, tracer: trace.Tracer, instruments: Instruments, runs: RunSpans, circuit_tools: Iterable[str] = ()
    ):
        self.tracer, self.instruments, self.runs = tracer, instruments, runs
        self.circuit_tools = frozenset(circuit_tools)

    def on_attempt(self, call: CallRecord, attempt: Attempt) -> None:
        labels = {"gen_ai.tool.name": call.tool, "ironloop.attempt.outcome": attempt_outcome(attempt)}
        self.instruments.attempts.add(1, labels)
        self.instruments.attempt_duration.record(attempt.ms / 1000, labels)
        if attempt.rate_limited_ms is not None:
            self.instruments.rate_limit_wait.record(attempt.rate_limited_ms / 1000, {"gen_ai.tool.name": call.tool})
        if call.tool in self.circuit_tools and not attempt.replayed:
            self.instruments.circuit_state.set(CIRCUIT_STATES[circuit_state(attempt)], {"gen_ai.tool.name": call.tool})

    def on_call_end(self, call: CallRecord) -> None:
        outcome = str(call.outcome)
        labels = {"gen_ai.tool.name": call.tool, "ironloop.call.outcome": outcome}
        self.instruments.calls.add(1, labels)
        self.instruments.call_duration.record(call.ms / 1000, labels)
        self.write_spans(call)

    def write_spans(self, call: CallRecord) -> None:
        end = time.time_ns()
        start = end - int(call.ms * 1e6)
        if call.attempts:
            start = min(start, int(call.attempts[0].started_at * 1e9))
        span = self.tracer.start_span(
            f"execute_tool {call.tool}",
            context=self.runs.parent_context(),
            kind=SpanKind.INTERNAL,
            start_time=start,
            attributes=call_attributes(call),
        )
        inside = trace.set_span_in_context(span)
        previous: Attempt | None = None
        for attempt in call.attempts:
            began = int(attempt.started_at * 1e9)
            child = self.tracer.start_span(
                f"attempt {call.tool}",
                context=inside,
                kind=SpanKind.INTERNAL,
                start_time=began,
                attributes=attempt_attributes(attempt, previous, call.tool in self.circuit_tools),
            )
            if attempt.outcome is not AttemptOutcome.OK:
                child.set_status(Status(StatusCode.ERROR))
            child.end(end_time=max(began, min(end, began + int(attempt.ms * 1e6))))
            previous = attempt
        if call.outcome in FAILED_CALLS:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end)


def call_attributes(call: CallRecord) -> dict[str, Any]:
    """The ``execute_tool`` span's attributes (GenAI conventions, then ironloop's)."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.tool,
        "gen_ai.tool.type": "function",
        "ironloop.call.outcome": str(call.outcome),
        "ironloop.call.attempts": len(call.attempts),
        "ironloop.call.fallback": call.outcome is CallOutcome.FALLBACK,
        "ironloop.call.replayed": any(a.replayed for a in call.attempts),
        "ironloop.call.side_effect": call.idempotency_key is not None,
    }
    if call.tool_call_id:
        attributes["gen_ai.tool.call.id"] = call.tool_call_id
    if call.thread_id:
        attributes["gen_ai.conversation.id"] = call.thread_id
    if call.outcome in FAILED_CALLS:
        last = call.attempts[-1].error_class if call.attempts else None
        attributes["error.type"] = last or str(call.outcome)
    if call.approval:
        attributes["ironloop.approval.decision"] = str(call.approval.get("action", ""))
        attributes["ironloop.approval.mode"] = str(call.approval.get("mode", ""))
    return attributes


def attempt_attributes(attempt: Attempt, previous: Attempt | None, circuit: bool) -> dict[str, Any]:
    """One attempt: its number and outcome, the error's class, the wait before it and why, the rate-limit wait,
    the hedge, the circuit's state, and whether the ledger answered instead of the tool."""
    attributes: dict[str, Any] = {
        "ironloop.attempt.number": attempt.number,
        "ironloop.attempt.outcome": attempt_outcome(attempt),
        "ironloop.attempt.replayed": attempt.replayed,
    }
    if attempt.error_class:
        attributes["error.type"] = attempt.error_class
    if previous is not None and previous.retry_in_s is not None:
        attributes["ironloop.attempt.wait_before_s"] = previous.retry_in_s
        advised = previous.retry_after_s
        attributes["ironloop.attempt.wait_reason"] = "retry_after" if advised is not None else "backoff"
    if attempt.rate_limited_ms is not None:
        attributes["ironloop.attempt.rate_limit_wait_s"] = round(attempt.rate_limited_ms / 1000, 6)
    if attempt.hedge:
        attributes["ironloop.attempt.hedge"] = attempt.hedge
    if circuit and not attempt.replayed:
        attributes["ironloop.attempt.circuit_state"] = circuit_state(attempt)
    if attempt.abandoned_thread:
        attributes["ironloop.attempt.abandoned_thread"] = True
    return attributes
