"""Which threads a checkpoint database holds: the one query `ironloop threads` needs that LangGraph's saver
interface has no method for (``list`` walks one thread's checkpoints; this lists the threads)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ironloop.checkpoints.schema import checkpoints
from sqlalchemy import Engine, func, select


@dataclass(frozen=True)
class ThreadRow:
    thread_id: str
    created_at: datetime | None
    updated_at: datetime | None


def recent_threads(engine: Engine, *, limit: int = 50) -> list[ThreadRow]:
    """Threads with checkpoints at the root namespace, most recently active first."""
    query = (
        select(checkpoints.c.thread_id, func.min(checkpoints.c.created_at), func.max(checkpoints.c.created_at))
        .where(checkpoints.c.checkpoint_ns == "")
        .group_by(checkpoints.c.thread_id)
        .order_by(func.max(checkpoints.c.created_at).desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        return [ThreadRow(*row) for row in connection.execute(query)]
