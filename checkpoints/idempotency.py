"""`SQLIdempotencyStore`: the ledger of side-effect calls, in the checkpoint database.

Each method is one short transaction, committed before it returns: a key recorded *started* is on disk
before the tool runs, and *completed* is on disk before the model sees the result, so no crash can make a
completed call look new. ``begin`` is an insert that loses gracefully to a concurrent or earlier insert of
the same key (the primary key decides), so two workers can never both start one call.

What is written is fitted to its column first (`checkpoints.fit`): a tool call id longer than the column keeps
its start and a hash, a result loses its NUL bytes and is cut to what a ``TEXT`` column holds everywhere. A value
the database would refuse must never fail a call whose side effect already happened, on every resume.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from ironloop.checkpoints.fit import fit_row, fit_text
from ironloop.checkpoints.schema import idempotency_keys
from ironloop.tools.idempotency import KeyEntry, KeyStatus
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

T = idempotency_keys


class SQLIdempotencyStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def begin(self, entry: KeyEntry) -> KeyEntry:
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as connection:
                row = {
                    "key": entry.key,
                    "thread_id": entry.thread_id,
                    "checkpoint_ns": entry.checkpoint_ns,
                    "tool_call_id": entry.tool_call_id,
                    "tool": entry.tool,
                    "status": str(KeyStatus.STARTED),
                    "created_at": now,
                    "updated_at": now,
                }
                connection.execute(insert(T).values(fit_row(T, row)))
        except IntegrityError:
            existing = self.get(entry.key)
            if existing is None:  # deleted in between: cannot happen in practice; treat as unknown history
                raise
            return existing
        return replace(entry, status=KeyStatus.STARTED, fresh=True)

    def finish(self, key: str, status: KeyStatus, result: str | None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(T)
                .where(T.c.key == key)
                .values(
                    status=str(status),
                    result=fit_text(result) if result is not None else None,
                    updated_at=datetime.now(UTC),
                )
            )

    def get(self, key: str) -> KeyEntry | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(T).where(T.c.key == key)).mappings().first()
        if row is None:
            return None
        return KeyEntry(
            key=row["key"],
            tool=row["tool"],
            tool_call_id=row["tool_call_id"],
            status=KeyStatus(row["status"]),
            thread_id=row["thread_id"],
            checkpoint_ns=row["checkpoint_ns"],
            result=row["result"],
        )

    def entries(self, thread_id: str | None = None) -> list[KeyEntry]:
        """Every recorded key (of one thread), oldest first: for checks and reports."""
        query = select(T.c.key).order_by(T.c.created_at)
        if thread_id is not None:
            query = query.where(T.c.thread_id == thread_id)
        with self.engine.connect() as connection:
            keys = [row[0] for row in connection.execute(query)]
        return [entry for key in keys if (entry := self.get(key)) is not None]
