"""Which tools are actually flaky: per-tool figures from the attempt ledger (``ironloop report``), and who
approved, rejected or edited which call (``ironloop report --approvals``)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
            "success_rate": self.success_rate,
            "transient_rate": self.transient_rate,
            "timeouts": self.timeouts,
            "fallbacks": self.fallbacks,
            "errors": self.errors,
            "rejected": self.rejected,
            "denied": self.denied,
            "p50_ms": self.latency_ms(50),
            "p95_ms": self.latency_ms(95),
        }


def tool_report(engine: Engine, *, since: datetime | None = None, thread_id: str | None = None) -> list[ToolFigures]:
    """Figures per tool, flakiest first (lowest success after retries, then highest raw fault rate)."""
    figures: dict[str, ToolFigures] = defaultdict(lambda: ToolFigures(tool=""))
    calls = select(tool_calls.c.tool, tool_calls.c.outcome, tool_calls.c.duration_ms)
    attempts = select(tool_attempts.c.tool, tool_attempts.c.outcome)
    if since is not None:
        calls = calls.where(tool_calls.c.finished_at >= since)
        attempts = attempts.where(tool_attempts.c.started_at >= since)
    if thread_id is not None:
        calls = calls.where(tool_calls.c.thread_id == thread_id)
        attempts = attempts.where(tool_attempts.c.thread_id == thread_id)
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


def format_report(rows: list[ToolFigures]) -> str:
    if not rows:
        return "no tool calls recorded"
    header = (
        f"{'tool':<20} {'calls':>7} {'attempts':>9} {'success':>8} {'transient':>10} {'timeouts':>9} "
        f"{'fallbacks':>10} {'rejected':>9} {'denied':>7} {'p50 ms':>8} {'p95 ms':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{_cell(r.tool)[:20]:<20} {r.calls:>7} {r.attempts:>9} {_pct(r.success_rate):>8} "
            f"{_pct(r.transient_rate):>10} {r.timeouts:>9} {r.fallbacks:>10} {r.rejected:>9} {r.denied:>7} "
            f"{_ms(r.latency_ms(50)):>8} {_ms(r.latency_ms(95)):>8}"
        )
    return "\n".join(lines)


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


def approval_log(engine: Engine, *, since: datetime | None = None, thread_id: str | None = None) -> list[ApprovalRow]:
    """The approval decisions, oldest first."""
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
    if thread_id is not None:
        query = query.where(c.thread_id == thread_id)
    with engine.connect() as connection:
        return [ApprovalRow(*row) for row in connection.execute(query)]


def format_approvals(rows: list[ApprovalRow]) -> str:
    if not rows:
        return "no approval decisions recorded"
    header = f"{'decided at':<19} {'thread':<24} {'tool':<16} {'decision':<8} {'by':<16} reason / arguments"
    lines = [header, "-" * len(header)]
    for r in rows:
        detail = r.reason or ""
        if r.edited_args is not None:
            detail = f"{detail + '; ' if detail else ''}args {r.args} → {r.edited_args}"
        elif not detail:
            detail = f"args {r.args}"
        lines.append(
            f"{r.decided_at:%Y-%m-%d %H:%M:%S} {_cell(r.thread_id or '-')[:24]:<24} {_cell(r.tool)[:16]:<16} "
            f"{_cell(r.decision):<8} {_cell(r.decided_by or '-')[:16]:<16} {_cell(detail)}"
        )
    return "\n".join(lines)


def _cell(text: str) -> str:
    """A table cell on one line: text from tools and models may hold line breaks."""
    return " ".join(text.split())


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1%}"


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def _nan_last(value: float) -> float:
    return 2.0 if math.isnan(value) else value


def _nan_zero(value: float) -> float:
    return 0.0 if math.isnan(value) else value
