"""What the runtime remembers about each call: its attempts and how it ended.

A `CallRecord` travels on the call's ``ToolMessage`` (``response_metadata["ironloop"]``), on the graph's
custom stream (one event per attempt and one per call), and to any `CallListener` (the attempt ledger).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Protocol


class AttemptOutcome(StrEnum):
    OK = "ok"
    TRANSIENT_ERROR = "transient_error"
    TIMEOUT = "timeout"
    PERMANENT_ERROR = "permanent_error"


class CallOutcome(StrEnum):
    OK = "ok"
    FALLBACK = "fallback"
    ERROR = "error"
    REJECTED = "rejected"
    """Never dispatched: unknown tool, arguments not JSON or off-schema, repeated, turn budget spent."""
    UNKNOWN = "unknown"
    """A side effect whose outcome could not be learned: it may have happened; it was not repeated."""
    DENIED = "denied"
    """A human rejected the call when asked for approval: it was not run."""
    RESPONDED = "responded"
    """A human answered in the tool's place when asked for approval: it was not run."""


@dataclass(slots=True)
class Attempt:
    number: int
    outcome: AttemptOutcome
    started_at: float
    """Wall-clock start (epoch seconds)."""
    ms: float
    error_class: str | None = None
    error: str | None = None
    abandoned_thread: bool = False
    """A sync tool timed out: its thread was left to finish on its own."""
    retry_in_s: float | None = None
    """The wait before the next attempt, if there is one."""
    retry_after_s: float | None = None
    """The wait the service advised (``Retry-After``) when this attempt failed, if it advised one."""
    replayed: bool = False
    """A side effect already completed under this idempotency key: its recorded result, not a new execution."""
    rate_limited_ms: float | None = None
    """Time spent waiting for a rate-limit slot before the attempt."""
    circuit: str | None = None
    """``half_open`` when this attempt was the probe of a tripped circuit."""
    hedge: str | None = None
    """When a hedge was sent: which try answered first (``first``, ``hedge``, ``hedge 2``...)."""

    def as_dict(self) -> dict[str, Any]:
        """The fields that are set (every value is a scalar, so no deep copy is needed)."""
        data: dict[str, Any] = {}
        for name in _ATTEMPT_FIELDS:
            value = getattr(self, name)
            if value is not None and value is not False:
                data[name] = value
        data["outcome"] = str(self.outcome)
        data["ms"] = round(self.ms, 3)
        if self.rate_limited_ms is not None:
            data["rate_limited_ms"] = round(self.rate_limited_ms, 3)
        return data


_ATTEMPT_FIELDS = tuple(f.name for f in fields(Attempt))


@dataclass(slots=True)
class CallRecord:
    tool: str
    tool_call_id: str
    thread_id: str | None = None
    checkpoint_ns: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    outcome: CallOutcome | None = None
    reason: str | None = None
    """Why the call did not end ``ok``, in words the model can act on."""
    ms: float = 0.0
    queued_ms: float = 0.0
    """Time the call waited for admission (`tools.admission`) before its first attempt."""
    idempotency_key: str | None = None
    """Set for side-effect calls."""
    approval: dict[str, Any] | None = None
    """Set for calls that waited for a human: the decision (`tools.approval.ApprovalRecord.as_metadata`)."""
    untrusted: bool = False
    """The observation carries what an ``untrusted_output`` tool handed back: the thread is marked as having read
    untrusted input (the ``untrusted_sources`` state channel)."""

    def as_metadata(self) -> dict[str, Any]:
        """The dict stored on the ToolMessage (JSON-safe, so it survives checkpoints)."""
        data: dict[str, Any] = {
            "tool": self.tool,
            "outcome": str(self.outcome),
            "attempts": [a.as_dict() for a in self.attempts],
            "ms": round(self.ms, 3),
        }
        if self.queued_ms >= 1.0:
            data["queued_ms"] = round(self.queued_ms, 1)
        if self.reason:
            data["reason"] = self.reason
        if self.idempotency_key:
            data["idempotency_key"] = self.idempotency_key
        if self.approval:
            data["approval"] = self.approval
        if self.untrusted:
            data["untrusted"] = True
        return data


class CallListener(Protocol):
    """Told about every attempt and every finished call (the attempt ledger implements this)."""

    def on_attempt(self, call: CallRecord, attempt: Attempt) -> None: ...

    def on_call_end(self, call: CallRecord) -> None: ...


def metadata_of(message: Any) -> dict[str, Any] | None:
    """The runtime's record on a ToolMessage, if it has one."""
    meta = getattr(message, "response_metadata", None) or {}
    return meta.get("ironloop")


def was_rejected(message: Any) -> bool:
    """True for the observation of a call that was never run (invalid, unknown, repeated, out of turns)."""
    meta = metadata_of(message)
    return meta is not None and meta.get("outcome") == str(CallOutcome.REJECTED)
