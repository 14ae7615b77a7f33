"""What the model is told about a call: the runtime's own observations, in one place.

A call ends in the tool's result, or in one of the texts below: a failure (with the advice the model needs),
a plainly marked fallback, a human's refusal, a call that was never run, a side effect whose outcome is
unknown. Each also sets the `CallRecord`'s outcome and reason, so the ledger and the model hear the same story.
Two layers live here too: `Observe` turns the attempt loop's result or last error into the observation, and
`CapResult` cuts an oversized result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ironloop.tools.approval import Decision
from ironloop.tools.errors import describe, is_transient
from ironloop.tools.policy import ToolPolicy
from ironloop.tools.records import AttemptOutcome, CallOutcome, CallRecord
from ironloop.tools.steps import CallContext, Result, Step
from langchain_core.messages import ToolMessage
from langgraph.errors import GraphBubbleUp

DEFAULT_MAX_RESULT_CHARS = 20_000
"""Longest tool result passed to the model; one tool must not blow up the context."""


def observation(call: Mapping[str, Any], content: str, *, error: bool) -> ToolMessage:
    """A ToolMessage answering ``call``."""
    return ToolMessage(
        content=content, name=call["name"], tool_call_id=call["id"], status="error" if error else "success"
    )


def succeeded(record: CallRecord, result: Result) -> Result:
    """The tool answered: the call is ``ok``, unless its answer was its own error report (a ``ToolException``
    it handled), which is never retried."""
    last = record.attempts[-1]
    if last.outcome == AttemptOutcome.OK:
        record.outcome = CallOutcome.OK
    else:
        record.outcome, record.reason = CallOutcome.ERROR, last.error
    return result


def failed(call: Mapping[str, Any], policy: ToolPolicy, record: CallRecord, error: BaseException) -> ToolMessage:
    """The call finally failed with ``error``: its fallback, plainly marked, or an error the model can act on."""
    tries = len(record.attempts)
    timed_out = bool(record.attempts) and record.attempts[-1].outcome == AttemptOutcome.TIMEOUT
    why = f"{describe(error)} (after {tries} attempt{'s' if tries != 1 else ''})"
    record.reason = why
    if policy.has_fallback:
        record.outcome = CallOutcome.FALLBACK
        content = (
            f"[fallback] {call['name']} failed: {why}. The following is a fallback value, "
            f"not a real result: {policy.fallback_for(error)}"
        )
        return observation(call, content, error=False)
    record.outcome = CallOutcome.ERROR
    advice = (
        "The fault is temporary on the service's side; the runtime already retried. Continue without this "
        "result, or try again later."
        if is_transient(error) or policy.should_retry(error) or timed_out
        else "This will fail the same way if repeated; change the arguments or take another approach."
    )
    return observation(call, f"Error: {call['name']} failed: {why}. {advice}", error=True)


def denied(call: Mapping[str, Any], record: CallRecord, decision: Decision) -> ToolMessage:
    """A human rejected the call when asked to approve it: their reason, for the model to act on."""
    who = f" ({decision.by})" if decision.by else ""
    reason = decision.reason or "no reason given"
    record.outcome, record.reason = CallOutcome.DENIED, f"rejected by a human{who}: {reason}"
    content = (
        f"Not run: a human{who} rejected this {call['name']} call when asked to approve it. Reason: {reason}. "
        "Do not retry it unchanged; tell the user, or take another approach."
    )
    return observation(call, content, error=True)


def edited_note(args: Mapping[str, Any]) -> str:
    """Appended to the observation of a call whose arguments a human changed before it ran."""
    return f"[a human edited the arguments before this call ran: {json.dumps(args, default=str)}]"


def interrupted(tool: str) -> str:
    """A call found without an observation after a stop, that nothing says ever ran."""
    return (
        f"Not run: this {tool} call was interrupted (the run stopped before it finished) and was not "
        "retried automatically. Call it again if it is still needed."
    )


def outcome_unknown(tool: str, key: str, why: str) -> str:
    """A side effect that may have happened and was not repeated."""
    return (
        f"Outcome unknown: {tool} may have happened ({why}). It was not repeated, to avoid doing it "
        f"twice. Check with the service (idempotency key {key}) before trying again."
    )


def not_done(tool: str, why: str, attempts: int) -> str:
    """A side effect that surely did not happen: the service said so after each attempt whose outcome was unknown."""
    return (
        f"Error: {tool} did not happen ({why}; after {attempts} attempt{'s' if attempts != 1 else ''}, the service "
        "confirmed each time that it had not been done). Nothing was changed; it is safe to try again later."
    )


def interrupted_unknown(tool: str, key: str) -> str:
    """A side effect a stopped run left mid-call: the ledger knows it began, not how it ended."""
    return (
        f"Outcome unknown: {tool} was interrupted mid-call and may have happened. It was not repeated; "
        f"check with the service (idempotency key {key}) before trying again."
    )


def confirmed_done(tool: str) -> str:
    """A side effect whose outcome was unknown, confirmed by the service, which gave no result to quote."""
    return f"{tool} had already been done (confirmed with the service)."


def capped(message: ToolMessage, limit: int | None) -> ToolMessage:
    """Cut an oversized text result to ``limit`` characters, saying how much was cut (``None``: no limit).

    A result made of content blocks (an MCP tool's) is cut the same way, counting the text of its text blocks in
    order: the block that crosses the limit is cut and says so, later text blocks are dropped; images and other
    blocks pass through as they are."""
    if limit is None:
        return message
    if isinstance(message.content, str):
        if len(message.content) <= limit:
            return message
        return message.model_copy(update={"content": message.content[:limit] + _cut_note(len(message.content), limit)})
    blocks = message.content
    total = sum(len(text) for text in map(_block_text, blocks) if text is not None)
    if total <= limit:
        return message
    kept: list[Any] = []
    left = limit
    for block in blocks:
        text = _block_text(block)
        if text is None:
            kept.append(block)
        elif left > 0:
            if len(text) > left:
                text = text[:left] + _cut_note(total, limit)
                block = {**block, "text": text} if isinstance(block, dict) else text
            kept.append(block)
            left -= len(text)
    return message.model_copy(update={"content": kept})


def _block_text(block: Any) -> str | None:
    """The text of a content block (a string, or a ``{"type": "text"}`` block); ``None`` for other blocks."""
    if isinstance(block, str):
        return block
    if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
        return block["text"]
    return None


def _cut_note(total: int, limit: int) -> str:
    return f"\n[cut: {total - limit:,} of {total:,} characters not shown]"


class Observe:
    """The attempt loop's result, or its last error as a failure observation: a call that is not a side effect."""

    async def __call__(self, call: CallContext, proceed: Step) -> Result:
        try:
            result = await proceed(call)
        except GraphBubbleUp:
            raise
        except Exception as error:
            return failed(call.tool_call, call.policy, call.record, error)
        return succeeded(call.record, result)


class CapResult:
    """Cuts a successful text result longer than ``max_chars`` (``None``: no limit)."""

    def __init__(self, max_chars: int | None = DEFAULT_MAX_RESULT_CHARS):
        self.max_chars = max_chars

    async def __call__(self, call: CallContext, proceed: Step) -> Result:
        result = await proceed(call)
        attempts = call.record.attempts
        if isinstance(result, ToolMessage) and attempts and attempts[-1].outcome == AttemptOutcome.OK:
            return capped(result, self.max_chars)
        return result
