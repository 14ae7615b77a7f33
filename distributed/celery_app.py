"""The Celery application: ``celery -A ironloop.distributed worker`` (or ``ironloop worker``) runs it.

Delivery (checked against Celery 5.7 with RabbitMQ and Redis; see docs/scale-out.md): a task is acknowledged
only when it has finished (``task_acks_late``); a worker process that dies mid-task has its task put back on the
queue (``task_reject_on_worker_lost``: without it Celery acknowledges the message and records ``WorkerLostError``);
each worker process reserves one task at a time (``worker_prefetch_multiplier=1``), so a death requeues at most the
task it was running. When a whole worker dies, RabbitMQ requeues its unacknowledged messages as soon as the
connection closes; Redis only after the visibility timeout (``$IRONLOOP_VISIBILITY_S``). Publishing waits for
RabbitMQ's confirm, so a submitted task is on the broker when ``submit`` returns. A task delivered twice is safe:
the thread's lease lets one run at a time and the run resumes from the last checkpoint (`distributed.runs`).
"""

from __future__ import annotations

import logging
import random
import sys
from typing import Any

from celery import Celery, Task, signals
from ironloop.checkpoints.errors import CheckpointStoreError
from ironloop.checkpoints.leases import ThreadBusyError
from ironloop.distributed.settings import Settings

log = logging.getLogger(__name__)

LEASE_WAIT_S = 2.0
"""How long a task waits for a thread another live worker runs, before it backs off (a retry, later)."""
RETRY_MAX_S = 10.0

settings = Settings.from_env()

app = Celery("ironloop", broker=settings.broker_url, set_as_current=False)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=settings.queue,
    broker_connection_retry_on_startup=True,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    broker_transport_options=(
        {
            "visibility_timeout": settings.visibility_s,
            # Look for unacknowledged messages past their timeout every interval (by default only every 100 s).
            "unacked_restore_interval": max(1.0, min(10.0, settings.visibility_s / 5)),
            "unacked_restore_throttle": 1,
        }
        if settings.redis_broker
        else {"confirm_publish": True}
    ),
)


def _backoff(retries: int) -> float:
    return min(RETRY_MAX_S, 0.25 * 2**retries) * random.uniform(0.5, 1.0)


@app.task(bind=True, name="ironloop.run_thread", max_retries=None)
def run_thread(self: Task, thread_id: str, message: str | None = None, message_id: str | None = None) -> Any:
    """Run (or continue) a thread on this worker until it finishes or waits for a person."""
    from ironloop.distributed.runs import worker_runtime

    if (self.request.delivery_info or {}).get("redelivered"):
        log.info("thread %s: redelivered task %s", thread_id, self.request.id)
    try:
        outcome = worker_runtime().run(thread_id, message, message_id, lease_wait_s=LEASE_WAIT_S)
    except ThreadBusyError as exc:  # a duplicate delivery while the holder lives: back off, look again later
        log.info("%s", exc)
        raise self.retry(countdown=_backoff(self.request.retries)) from exc
    except CheckpointStoreError as exc:  # the database is away, or this worker lost the lease: try again later
        log.warning("thread %s: %s; retrying", thread_id, exc)
        raise self.retry(countdown=_backoff(self.request.retries)) from exc
    log.info("thread %s: %s after %d passes", thread_id, outcome.status, outcome.passes)
    return outcome.as_dict()


_ours = False
"""Whether this process is (or was forked from) a worker of this app."""


@signals.worker_init.connect
def _check_worker(sender: Any = None, **_: Any) -> None:
    """Refuse what cannot work (SQLite shared by several processes), then import the runtime once, so worker
    processes forked later (and replacements for killed ones) start warm."""
    from ironloop.distributed import runs
    from ironloop.distributed.checks import FleetConfigError, check_fleet

    global _ours
    if getattr(sender, "app", None) is not app:  # Celery's signals are global: another app's worker in this process
        return
    _ours = True
    runs.node_name = str(getattr(sender, "hostname", "") or "")
    pool = getattr(getattr(sender, "pool_cls", None), "__module__", "") or str(getattr(sender, "pool_cls", ""))
    try:
        check_fleet(Settings.from_env(), concurrency=getattr(sender, "concurrency", 1), solo="solo" in pool)
    except FleetConfigError as exc:
        print(f"ironloop worker: error: {exc}", file=sys.stderr)
        sys.exit(2)


@signals.worker_process_init.connect
def _warm_process(**_: Any) -> None:
    """Build this worker process's runtime before it takes a task (a failure is retried by the first task)."""
    from ironloop.distributed.runs import worker_runtime

    if not _ours:
        return
    try:
        worker_runtime()
    except Exception as exc:
        log.warning("worker runtime not ready yet: %s", exc)
