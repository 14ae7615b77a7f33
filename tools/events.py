"""Where one call's progress is reported: the listeners (the attempt ledger) and the graph's custom stream.

Every piece around a call reports through one `CallEvents`, so what an observer sees (one ``tool_attempt``
event per attempt, one ``tool_approval`` per decision, one ``tool_call`` at the end) does not depend on which
piece ended the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ironloop.tools.approval import ApprovalListener, ApprovalRecord
from ironloop.tools.records import Attempt, CallListener, CallRecord
from langchain_core.messages import ToolMessage
from langgraph.types import Command, StreamWriter


class CallEvents:
    """The listeners, and the stream writer of the graph run a call belongs to (``None`` outside a graph)."""

    def __init__(self, listeners: Iterable[CallListener] = (), writer: StreamWriter | None = None):
        self.listeners: Sequence[CallListener] = tuple(listeners)
        self.writer = writer

    def attempt_ended(self, record: CallRecord, attempt: Attempt) -> None:
        """An attempt has its outcome: the listeners record it."""
        for listener in self.listeners:
            listener.on_attempt(record, attempt)

    def announce_attempt(self, record: CallRecord, attempt: Attempt) -> None:
        """A ``tool_attempt`` event: sent once the attempt's outcome and the wait before the next are known."""
        event = {"event": "tool_attempt", "tool": record.tool, "tool_call_id": record.tool_call_id}
        self.emit({**event, **attempt.as_dict()})

    def answered_from_ledger(self, record: CallRecord) -> None:
        """The runtime answered the call itself (a replay from the idempotency ledger): report that attempt."""
        attempt = record.attempts[-1]
        self.attempt_ended(record, attempt)
        self.announce_attempt(record, attempt)

    def approval(self, approval: ApprovalRecord) -> None:
        """A human decided on the call: the ledger keeps the decision, the stream shows it."""
        for listener in self.listeners:
            if isinstance(listener, ApprovalListener):
                listener.on_approval(approval)
        self.emit(
            {
                "event": "tool_approval",
                "tool": approval.tool,
                "tool_call_id": approval.tool_call_id,
                **approval.decision.as_dict(),
            }
        )

    def call_ended(self, record: CallRecord, message: ToolMessage | Command) -> ToolMessage | Command:
        """The call's end: its record goes on its observation, to the listeners and on the stream."""
        if isinstance(message, ToolMessage):
            message.response_metadata = {**message.response_metadata, "ironloop": record.as_metadata()}
        for listener in self.listeners:
            listener.on_call_end(record)
        self.emit(
            {
                "event": "tool_call",
                "tool": record.tool,
                "tool_call_id": record.tool_call_id,
                "outcome": str(record.outcome),
                "attempts": len(record.attempts),
                "ms": round(record.ms, 3),
                **({"reason": record.reason} if record.reason else {}),
            }
        )
        return message

    def emit(self, event: dict[str, Any]) -> None:
        """Put an event on the graph's custom stream, if the call runs inside a graph."""
        if self.writer is not None:
            self.writer(event)
