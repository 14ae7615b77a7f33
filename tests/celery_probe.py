"""A probe Celery app for `tests/test_celery_delivery.py`: ironloop's delivery settings on a task that records each
run in a file and sleeps on its first run (so a test can kill the worker process running it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import Celery
from ironloop.distributed.celery_app import app as ironloop_app

DELIVERY = ("task_acks_late", "task_reject_on_worker_lost", "worker_prefetch_multiplier")

probe = Celery("probe", broker=os.environ.get("PROBE_BROKER", "amqp://guest:guest@127.0.0.1:5672//"))
probe.conf.update({name: ironloop_app.conf[name] for name in DELIVERY}, broker_connection_retry_on_startup=True)
if os.environ.get("PROBE_REJECT_ON_WORKER_LOST") == "0":  # the control experiment: Celery's default
    probe.conf.task_reject_on_worker_lost = False


@probe.task(name="probe.slow")
def slow(marker: str) -> None:
    path = Path(marker)
    runs = path.read_text().count("\n") if path.exists() else 0
    with path.open("a") as handle:
        handle.write(f"{os.getpid()}\n")
    if runs == 0:
        time.sleep(60)
