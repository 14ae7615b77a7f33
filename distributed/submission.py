"""Sending work to the workers, and waiting for it: ``submit(question)`` → a `Submitted` handle.

Waiting reads the checkpoint database, not a Celery result backend: the thread itself says whether its run is
over (finished, waiting for a person, failed), so any process that can read the database can wait, and a task
that was redelivered or retried is waited for all the same.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ironloop.checkpoints.schema import KEY_LENGTH
from ironloop.distributed.runs import Outcome, final_answer
from ironloop.distributed.settings import Settings
from ironloop.tools.errors import IronloopError

POLL_S = 0.1


class WaitTimeoutError(IronloopError, TimeoutError):
    """The thread's run did not end within the wait."""


@dataclass(frozen=True)
class Submitted:
    """A task on the broker: its thread, and a way to wait for the run to end."""

    thread_id: str
    task_id: str
    message_id: str | None
    db_url: str
    decided: tuple[str, ...] = ()
    """For a continuation: the calls whose decisions it carries (the run is over when none of them waits)."""

    def wait(self, timeout_s: float | None = None, *, poll_s: float = POLL_S) -> Outcome:
        """Wait until the thread's run is over; the `Outcome` (status, answer). `WaitTimeoutError` after
        ``timeout_s`` seconds."""
        from ironloop.checkpoints import SQLAlchemySaver
        from ironloop.checkpoints.leases import ThreadLeases
        from ironloop.graph.status import state_reader, status_of
        from langchain_core.runnables import RunnableConfig

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with SQLAlchemySaver.from_url(self.db_url) as saver:
            agent = state_reader(saver)
            leases = ThreadLeases(saver.engine)
            config: RunnableConfig = {"configurable": {"thread_id": self.thread_id}}
            while True:
                snapshot = agent.get_state(config)
                if self._over(snapshot) and not leases.holders([self.thread_id]):
                    return Outcome(self.thread_id, status_of(snapshot), final_answer(snapshot), 0)
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeoutError(f"thread {self.thread_id!r} still running after {timeout_s:g} s")
                time.sleep(poll_s)

    def _over(self, snapshot: Any) -> bool:
        from ironloop.graph.status import FAILED, FINISHED, WAITING_FOR_APPROVAL, pending_approvals, status_of

        if snapshot.created_at is None:
            return False
        messages = snapshot.values.get("messages", []) if isinstance(snapshot.values, dict) else []
        if self.message_id is not None and not any(getattr(m, "id", None) == self.message_id for m in messages):
            return False
        status = status_of(snapshot)
        if status == WAITING_FOR_APPROVAL:
            waiting = {(i.value or {}).get("tool_call_id") for i in pending_approvals(snapshot)}
            return not waiting & set(self.decided)
        return status in (FINISHED, FAILED)


def submit(
    question: str,
    thread_id: str | None = None,
    *,
    queue: str | None = None,
    broker_url: str | None = None,
    db_url: str | None = None,
) -> Submitted:
    """Queue ``question`` for the workers (on ``thread_id``, or a new thread); returns at once with the handle."""
    if not question.strip():
        raise ValueError("the question is empty")
    thread = thread_id or f"task-{uuid.uuid4().hex[:16]}"
    _check_thread(thread)
    message_id = f"msg-{uuid.uuid4().hex}"
    task_id = _send((thread, question, message_id), queue, broker_url)
    return Submitted(thread, task_id, message_id, db_url or Settings.from_env().db_url)


def enqueue_continuation(
    thread_id: str,
    *,
    decided: tuple[str, ...] = (),
    queue: str | None = None,
    broker_url: str | None = None,
    db_url: str | None = None,
) -> Submitted:
    """Queue the continuation of a thread (after a decision, or a crash) for the workers."""
    _check_thread(thread_id)
    task_id = _send((thread_id, None, None), queue, broker_url)
    return Submitted(thread_id, task_id, None, db_url or Settings.from_env().db_url, decided)


def _check_thread(thread_id: str) -> None:
    if not thread_id or len(thread_id) > KEY_LENGTH or "\x00" in thread_id:
        raise ValueError(f"a thread id is 1 to {KEY_LENGTH} characters without NUL, got {thread_id[:60]!r}")


_connections: dict[str, Any] = {}
_connections_lock = threading.Lock()


def _send(args: tuple[Any, ...], queue: str | None, broker_url: str | None) -> str:
    from ironloop.distributed.celery_app import run_thread, settings

    options: dict[str, Any] = {"queue": queue or settings.queue}
    if broker_url is None or broker_url == settings.broker_url:
        return str(run_thread.apply_async(args, **options).id)
    with _connections_lock:  # another broker than the app's: one connection per URL, kept, used one send at a time
        connection = _connections.get(broker_url)
        if connection is None:
            connection = _connections[broker_url] = run_thread.app.connection_for_write(broker_url)
        return str(run_thread.apply_async(args, connection=connection, **options).id)
