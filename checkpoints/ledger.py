"""The attempt ledger: one row per tool attempt, one per finished call and one per human approval decision, in
the checkpoint database.

It is a `tools.records.CallListener` and a `tools.approval.ApprovalListener`. Rows are queued and written by a
background thread in batches, so a turn never waits on the database; `AttemptLedger.flush` (and `close`) wait
until everything queued is written. A database error is logged and counted (`AttemptLedger.dropped`), never
raised into a run: the ledger is for analysis, the checkpoints are what a run depends on.

Rows are fitted to their columns first (`checkpoints.fit`: NUL, lone surrogates, over-long ids, NaN in JSON), so
hostile text from a tool is recorded rather than refused. A batch the database still refuses is written again
row by row: one bad row costs only itself, never its batch. A database that cannot be reached drops the batch.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import UTC, datetime
from typing import Any

from ironloop.checkpoints.fit import fit_row
from ironloop.checkpoints.schema import tool_approvals, tool_attempts, tool_calls
from ironloop.tools.approval import ApprovalRecord
from ironloop.tools.records import Attempt, CallRecord
from sqlalchemy import Engine, Table, insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, TimeoutError

log = logging.getLogger(__name__)

_STOP = object()

DECISIONS = frozenset({"abandoned_thread", "rate_limited_ms", "circuit", "hedge", "replayed", "retry_in_s"})


class AttemptLedger:
    """Records attempts and calls asynchronously; safe to share between threads and graphs."""

    def __init__(self, engine: Engine, *, batch_size: int = 500, flush_interval_s: float = 0.05):
        self.engine = engine
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.dropped = 0
        """Rows lost to database errors (logged)."""
        self.written = 0
        self._queue: queue.Queue[Any] = queue.Queue()
        self._writer = threading.Thread(target=self._run, name="ironloop-ledger", daemon=True)
        self._writer.start()

    # CallListener
    def on_attempt(self, call: CallRecord, attempt: Attempt) -> None:
        # The runtime's decisions for this attempt (thread abandoned, rate-limit wait, circuit probe, hedge,
        # replay), kept as JSON so new kinds need no migration.
        decided = {k: v for k, v in attempt.as_dict().items() if k in DECISIONS}
        details = decided or None
        self._queue.put(
            (
                tool_attempts,
                {
                    "thread_id": call.thread_id,
                    "checkpoint_ns": call.checkpoint_ns,
                    "tool_call_id": call.tool_call_id,
                    "tool": call.tool,
                    "attempt": attempt.number,
                    "started_at": datetime.fromtimestamp(attempt.started_at, UTC),
                    "duration_ms": attempt.ms,
                    "outcome": str(attempt.outcome),
                    "error_class": _cut(attempt.error_class, 255),
                    "error_text": _cut(attempt.error, 500),
                    "details": details,
                },
            )
        )

    def on_call_end(self, call: CallRecord) -> None:
        self._queue.put(
            (
                tool_calls,
                {
                    "thread_id": call.thread_id,
                    "checkpoint_ns": call.checkpoint_ns,
                    "tool_call_id": call.tool_call_id,
                    "tool": call.tool,
                    "outcome": str(call.outcome),
                    "attempts": len(call.attempts),
                    "duration_ms": call.ms,
                    "reason": _cut(call.reason, 500),
                    "finished_at": datetime.now(UTC),
                },
            )
        )

    # ApprovalListener
    def on_approval(self, approval: ApprovalRecord) -> None:
        decision = approval.decision
        self._queue.put(
            (
                tool_approvals,
                {
                    "thread_id": approval.thread_id,
                    "checkpoint_ns": approval.checkpoint_ns,
                    "tool_call_id": approval.tool_call_id,
                    "tool": approval.tool,
                    "decision": decision.action,
                    "decided_by": _cut(decision.by, 255),
                    "reason": _cut(decision.reason, 500),
                    "mode": approval.mode,
                    "asked_because": _cut(approval.reason_asked, 500),
                    "args": approval.args,
                    "edited_args": decision.args,
                    "decided_at": datetime.now(UTC),
                },
            )
        )

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every row queued so far is written (or dropped). False on timeout."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join(timeout_s)

    def __enter__(self) -> AttemptLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            try:
                while len(batch) < self.batch_size:
                    batch.append(self._queue.get(timeout=self.flush_interval_s))
            except queue.Empty:
                pass
            rows: dict[Table, list[dict[str, Any]]] = {}
            signals = []
            stop = False
            for entry in batch:
                if entry is _STOP:
                    stop = True
                elif isinstance(entry, threading.Event):
                    signals.append(entry)
                else:
                    rows.setdefault(entry[0], []).append(entry[1])
            try:
                self._write({table: [fit_row(table, row) for row in values] for table, values in rows.items()})
            except Exception:  # the writer thread must outlive anything: a dead one would lose every later row
                log.exception("attempt ledger: unexpected failure writing %d rows", sum(map(len, rows.values())))
                self.dropped += sum(len(r) for r in rows.values())
            finally:
                for signal in signals:
                    signal.set()
            if stop:
                return

    def _write(self, rows: dict[Table, list[dict[str, Any]]]) -> None:
        if not rows:
            return
        count = sum(len(r) for r in rows.values())
        try:
            self._insert(rows)
            self.written += count
            return
        except Exception as exc:
            if _unreachable(exc):
                self.dropped += count
                log.warning("attempt ledger: %d rows not written: %s", count, exc.__class__.__name__)
                return
        for table, values in rows.items():  # one row the database refuses must not cost the others
            for value in values:
                try:
                    self._insert({table: [value]})
                    self.written += 1
                except Exception as exc:
                    self.dropped += 1
                    log.warning("attempt ledger: a %s row not written: %s", table.name, _why(exc))

    def _insert(self, rows: dict[Table, list[dict[str, Any]]]) -> None:
        with self.engine.begin() as connection:
            for table, values in rows.items():
                connection.execute(insert(table), values)


def _unreachable(error: BaseException) -> bool:
    """The database cannot be reached (or is locked): retrying row by row would only wait longer."""
    if isinstance(error, TimeoutError | OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def _why(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    return f"{type(original).__name__}: {' '.join(str(original).split())[:200]}"


def _cut(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"
