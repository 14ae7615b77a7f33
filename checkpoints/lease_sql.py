"""The statements behind thread leases (`checkpoints.leases`), apart from the code that runs them.

Every change is one conditional statement, so two processes racing for a lease cannot both win: a new lease is an
``INSERT`` (the primary key refuses the second), a take-over or a renewal an ``UPDATE`` that names the token it
saw (a compare-and-set: zero rows changed means someone else moved first).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ironloop.checkpoints.schema import checkpoints, thread_leases
from sqlalchemy import Delete, Insert, Select, Update, delete, insert, select

c = thread_leases.c


def read_lease(thread_id: str) -> Select[tuple]:
    return select(c.thread_id, c.token, c.holder, c.host, c.pid, c.pid_started, c.acquired_at, c.expires_at).where(
        c.thread_id == thread_id
    )


def read_holders(thread_ids: Sequence[str]) -> Select[tuple]:
    """The held leases among ``thread_ids`` (released ones have no holder)."""
    return select(c.thread_id, c.token, c.holder, c.host, c.pid, c.pid_started, c.acquired_at, c.expires_at).where(
        c.thread_id.in_(list(thread_ids)), c.holder.is_not(None)
    )


def first_lease(thread_id: str, holder: dict[str, object], now: datetime, expires_at: datetime) -> Insert:
    return insert(thread_leases).values(thread_id=thread_id, token=1, acquired_at=now, expires_at=expires_at, **holder)


def take_over(
    thread_id: str, seen_token: int, holder: dict[str, object], now: datetime, expires_at: datetime
) -> Update:
    """Take the lease whose token was ``seen_token`` (free, expired or its holder dead): its token grows by one."""
    return (
        thread_leases.update()
        .where(c.thread_id == thread_id, c.token == seen_token)
        .values(token=seen_token + 1, acquired_at=now, expires_at=expires_at, **holder)
    )


def renew(thread_id: str, token: int, expires_at: datetime) -> Update:
    return thread_leases.update().where(c.thread_id == thread_id, c.token == token).values(expires_at=expires_at)


def release(thread_id: str, token: int) -> Update:
    """Free the lease but keep its row (and token), so the next holder's token is larger still."""
    return (
        thread_leases.update()
        .where(c.thread_id == thread_id, c.token == token)
        .values(holder=None, host=None, pid=None, pid_started=None, acquired_at=None, expires_at=None)
    )


def forget(thread_id: str) -> Delete:
    return delete(thread_leases).where(c.thread_id == thread_id)


def writer_records(thread_id: str) -> Select[tuple]:
    """A thread's checkpoints (root namespace) in the order they were written, with their metadata."""
    k = checkpoints.c
    return (
        select(k.checkpoint_id, k.created_at, k.metadata)
        .where(k.thread_id == thread_id, k.checkpoint_ns == "")
        .order_by(k.checkpoint_id)
    )
