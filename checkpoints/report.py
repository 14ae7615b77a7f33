"""Which tools are actually flaky: per-tool figures from the attempt ledger (``ironloop report``), and who
approved, rejected or edited which call (``ironloop report --approvals``)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ironloop.checkpoints.report_detail import Window, none_if_nan, over_time, slowest_calls
from ironloop.checkpoints.schema import tool_approvals, tool_attempts, tool_calls
from ironloop.checkpoints.stats import percentile
from sqlalchemy import Engine, select


@dataclass
class ToolFigures:
    tool: str
    calls: int = 0
    attempts: int = 0
    ok: int = 0
    fallbacks: int = 0
    errors: int = 0
    rejected: int = 0
    denied: int = 0
    """Calls a human rejected when asked for approval (not run)."""
    transient_attempts: int = 0
    timeouts: int = 0
    durations_ms: list[float] = field(default_factory=list)

    @property
    def dispatched(self) -> int:
        return self.calls - self.rejected - self.denied

    @property
    def success_rate(self) -> float:
        """Calls that ended ``ok`` (after retries), among those dispatched."""
        return self.ok / self.dispatched if self.dispatched else math.nan

    @property
    def transient_rate(self) -> float:
        """Attempts that met a transient fault or a timeout: the tool's raw flakiness, before retries."""
        return (self.transient_attempts + self.timeouts) / self.attempts if self.attempts else math.nan

    def latency_ms(self, q: float) -> float:
        return percentile(self.durations_ms, q)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "calls": self.calls,
            "attempts": self.attempts,
            "success_rate": none_if_nan(self.success_rate),
            "transient_rate": none_if_nan(self.transient_rate),
            "timeouts": self.timeouts,
            "fallbacks": self.fallbacks,
            "errors": self.errors,
            "rejected": self.rejected,
            "denied": self.denied,
            "p50_ms": none_if_nan(self.latency_ms(50)),
            "p95_ms": none_if_nan(self.latency_ms(95)),
        }


def report_document(engine: Engine, window: Window) -> dict[str, Any]:
    """Everything ``ironloop report`` shows, as one document: the window, per-tool totals, the same over time,
    the slowest calls with their attempts and the approval decisions. ``report --json`` prints it and ``report
    --html`` draws it, so the page and the JSON cannot disagree."""
    return {
        "window": {"since": window.since, "until": window.until, "thread": window.thread_id},
        "tools": [row.as_dict() for row in tool_report(engine, window=window)],
        "over_time": over_time(engine, window),
        "slowest_calls": slowest_calls(engine, window),
        "approvals": [row.as_dict() for row in approval_log(engine, window=window)],
    }


def tool_report(
    engine: Engine, *, since: datetime | None = None, thread_id: str | None = None, window: Window | None = None
) -> list[ToolFigures]:
    """Figures per tool, flakiest first (lowest success after retries, then highest raw fault rate)."""
    window = window or Window(since, datetime.now(UTC), thread_id)
    figures: dict[str, ToolFigures] = defaultdict(lambda: ToolFigures(tool=""))
    calls = window.calls(select(tool_calls.c.tool, tool_calls.c.outcome, tool_calls.c.duration_ms))
    attempts = window.attempts(select(tool_attempts.c.tool, tool_attempts.c.outcome))
    with engine.connect() as connection:
        for tool, outcome, duration in connection.execute(calls):
            row = figures[tool]
            row.tool = tool
            row.calls += 1
            if outcome in ("rejected", "denied"):
                row.rejected += outcome == "rejected"
                row.denied += outcome == "denied"
                continue
            row.durations_ms.append(duration)
            row.ok += outcome == "ok"
            row.fallbacks += outcome == "fallback"
            row.errors += outcome == "error"
        for tool, outcome in connection.execute(attempts):
            row = figures[tool]
            row.tool = tool
            row.attempts += 1
            row.transient_attempts += outcome == "transient_error"
            row.timeouts += outcome == "timeout"
    return sorted(
        figures.values(),
        key=lambda f: (_nan_last(f.success_rate), -_nan_zero(f.transient_rate), f.tool),
    )


@dataclass(frozen=True)
class ApprovalRow:
    """One human decision on a tool call, as the ledger recorded it."""

    decided_at: datetime
    thread_id: str | None
    tool: str
    tool_call_id: str
    decision: str
    decided_by: str | None
    reason: str | None
    mode: str
    asked_because: str | None
    args: Any
    edited_args: Any

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def approval_log(
    engine: Engine, *, since: datetime | None = None, thread_id: str | None = None, window: Window | None = None
) -> list[ApprovalRow]:
    """The approval decisions, oldest first."""
    if window is not None:
        since, thread_id = window.since, window.thread_id
    c = tool_approvals.c
    query = select(
        c.decided_at,
        c.thread_id,
        c.tool,
        c.tool_call_id,
        c.decision,
        c.decided_by,
        c.reason,
        c.mode,
        c.asked_because,
        c.args,
        c.edited_args,
    ).order_by(c.decided_at, c.id)
    if since is not None:
        query = query.where(c.decided_at >= since)
    if window is not None:
        query = query.where(c.decided_at <= window.until)
    if thread_id is not None:
        query = query.where(c.thread_id == thread_id)
    with engine.connect() as connection:
        return [ApprovalRow(*row) for row in connection.execute(query)]


def _nan_last(value: float) -> float:
    return 2.0 if math.isnan(value) else value


def _nan_zero(value: float) -> float:
    return 0.0 if math.isnan(value) else value
