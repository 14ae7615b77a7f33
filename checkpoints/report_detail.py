"""The ledger over time and its slowest calls: what ``ironloop report`` adds to the per-tool totals, so a tool
that became flaky at 14:00 shows as a change, not as a slightly worse average.

Time buckets are aligned to whole multiples of their width (since the epoch, in UTC) and chosen so that the
window's records fall into at most `MAX_BUCKETS`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ironloop.checkpoints.schema import tool_attempts, tool_calls
from ironloop.checkpoints.stats import percentile
from sqlalchemy import Engine, Select, select

MAX_BUCKETS = 60
BUCKET_WIDTHS_S = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
TRANSIENT = ("transient_error", "timeout")
"""Attempt outcomes that count as the tool's raw flakiness."""
NOT_DISPATCHED = ("rejected", "denied")


@dataclass(frozen=True)
class Window:
    """Which records a report covers: finished at or after ``since`` (any time if ``None``), up to ``until``,
    of one thread or all."""

    since: datetime | None
    until: datetime
    thread_id: str | None = None

    def calls(self, query: Select[Any]) -> Select[Any]:
        return self._where(query, tool_calls.c.finished_at, tool_calls.c.thread_id)

    def attempts(self, query: Select[Any]) -> Select[Any]:
        return self._where(query, tool_attempts.c.started_at, tool_attempts.c.thread_id)

    def _where(self, query: Select[Any], at: Any, thread: Any) -> Select[Any]:
        if self.since is not None:
            query = query.where(at >= self.since)
        query = query.where(at <= self.until)
        return query.where(thread == self.thread_id) if self.thread_id is not None else query


@dataclass
class Bucket:
    """One tool's figures in one time bucket."""

    start: datetime
    calls: int = 0
    ok: int = 0
    attempts: int = 0
    transient: int = 0
    durations_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "calls": self.calls,
            "attempts": self.attempts,
            "success_rate": self.ok / self.calls if self.calls else None,
            "transient_rate": self.transient / self.attempts if self.attempts else None,
            "p95_ms": none_if_nan(percentile(self.durations_ms, 95)),
        }


def over_time(engine: Engine, window: Window) -> dict[str, Any]:
    """Per tool, one `Bucket` per time step from the window's first record to its last (empty steps included,
    so a gap shows as a gap): ``{"bucket_s": width, "tools": {tool: [bucket, ...]}}``."""
    calls = window.calls(
        select(tool_calls.c.tool, tool_calls.c.outcome, tool_calls.c.duration_ms, tool_calls.c.finished_at)
    )
    attempts = window.attempts(select(tool_attempts.c.tool, tool_attempts.c.outcome, tool_attempts.c.started_at))
    with engine.connect() as connection:
        call_rows = [row for row in connection.execute(calls) if row.outcome not in NOT_DISPATCHED]
        attempt_rows = list(connection.execute(attempts))
    instants = [r.finished_at for r in call_rows] + [r.started_at for r in attempt_rows]
    if not instants:
        return {"bucket_s": None, "tools": {}}
    first, last = min(instants), max(instants)
    width = bucket_width((last - first).total_seconds())
    origin = _floor(first, width)
    count = int((_floor(last, width) - origin) // width) + 1
    series: dict[str, list[Bucket]] = defaultdict(
        lambda: [Bucket(datetime.fromtimestamp(origin + i * width, UTC)) for i in range(count)]
    )
    for row in call_rows:
        bucket = series[row.tool][_index(row.finished_at, origin, width)]
        bucket.calls += 1
        bucket.ok += row.outcome == "ok"
        bucket.durations_ms.append(row.duration_ms)
    for row in attempt_rows:
        bucket = series[row.tool][_index(row.started_at, origin, width)]
        bucket.attempts += 1
        bucket.transient += row.outcome in TRANSIENT
    return {"bucket_s": width, "tools": {tool: [b.as_dict() for b in series[tool]] for tool in sorted(series)}}


def bucket_width(span_s: float) -> int:
    """The narrowest standard width that puts ``span_s`` seconds in at most `MAX_BUCKETS` buckets."""
    for width in BUCKET_WIDTHS_S:
        if span_s / width < MAX_BUCKETS:
            return width
    return math.ceil(span_s / (MAX_BUCKETS - 1))


def slowest_calls(engine: Engine, window: Window, *, limit: int = 10) -> list[dict[str, Any]]:
    """The ``limit`` slowest dispatched calls, slowest first, each with its attempts in order."""
    c, a = tool_calls.c, tool_attempts.c
    query = window.calls(
        select(c.thread_id, c.tool_call_id, c.tool, c.outcome, c.attempts, c.duration_ms, c.reason, c.finished_at)
        .where(c.outcome.not_in(NOT_DISPATCHED))
        .order_by(c.duration_ms.desc(), c.id)
        .limit(limit)
    )
    with engine.connect() as connection:
        calls = [dict(row._mapping) for row in connection.execute(query)]
        ids = sorted({call["tool_call_id"] for call in calls})
        attempts = (
            connection.execute(
                select(
                    a.thread_id,
                    a.tool_call_id,
                    a.attempt,
                    a.outcome,
                    a.duration_ms,
                    a.started_at,
                    a.error_class,
                    a.error_text,
                )
                .where(a.tool_call_id.in_(ids))
                .order_by(a.attempt, a.id)
            ).all()
            if ids
            else []
        )
    for call in calls:
        call["attempt_list"] = [
            {
                "attempt": row.attempt,
                "outcome": row.outcome,
                "duration_ms": row.duration_ms,
                "started_at": row.started_at,
                "error": ": ".join(part for part in (row.error_class, row.error_text) if part) or None,
            }
            for row in attempts
            if row.tool_call_id == call["tool_call_id"] and row.thread_id == call["thread_id"]
        ]
    return calls


def none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _floor(when: datetime, width: int) -> float:
    stamp = when.timestamp()
    return stamp - stamp % width


def _index(when: datetime, origin: float, width: int) -> int:
    return int((when.timestamp() - origin) // width)
