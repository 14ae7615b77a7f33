"""Celery 5.7's delivery, checked rather than assumed, with the settings `ironloop.distributed` uses, on this
machine's RabbitMQ: a late-acknowledged task whose worker process is SIGKILLed runs again only with
``task_reject_on_worker_lost`` (without it the task is acknowledged and lost), and with a prefetch multiplier of 1
a busy worker process holds one unacknowledged message, the rest stay on the queue for other workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.test_distributed import rabbitmq  # noqa: F401 (fixture)


@contextmanager
def probe_worker(queue: str, log: Path, *, reject_on_worker_lost: bool) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PROBE_REJECT_ON_WORKER_LOST": "1" if reject_on_worker_lost else "0"}
    command = [sys.executable, "-m", "celery", "-A", "tests.celery_probe:probe", "worker", "-c", "1", "-Q", queue]
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*command, "-l", "INFO", "--without-gossip", "--without-mingle"], stdout=out, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )  # fmt: skip
    try:
        yield worker
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def runs(marker: Path) -> list[int]:
    return [int(line) for line in marker.read_text().split()] if marker.exists() else []


def queue_counts(queue: str) -> tuple[int, int]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "messages_ready", "messages_unacknowledged"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    for line in listed.stdout.splitlines():
        name, ready, unacked = line.split("\t")
        if name == queue:
            return int(ready), int(unacked)
    raise AssertionError(f"queue {queue} not found")


@pytest.mark.timeout(240)
def test_a_killed_worker_process_has_its_task_run_again_and_prefetch_is_one(rabbitmq: str, tmp_path: Path) -> None:  # noqa: F811
    from tests.celery_probe import slow

    queue = f"probe-{uuid.uuid4().hex[:8]}"
    first, waiting = tmp_path / "first", [tmp_path / f"waiting-{i}" for i in range(2)]
    with probe_worker(queue, tmp_path / "worker.log", reject_on_worker_lost=True):
        slow.apply_async((str(first),), queue=queue)
        wait_for(lambda: len(runs(first)) == 1, 120, "the first run")
        for marker in waiting:
            slow.apply_async((str(marker),), queue=queue)
        time.sleep(2)
        assert queue_counts(queue) == (2, 1)  # one message reserved by the busy process, two left for others
        os.kill(runs(first)[0], signal.SIGKILL)
        wait_for(lambda: len(runs(first)) == 2, 60, "the killed task to run again")
        assert runs(first)[1] != runs(first)[0]  # in the replacement process


@pytest.mark.timeout(240)
def test_without_reject_on_worker_lost_the_killed_task_is_lost(rabbitmq: str, tmp_path: Path) -> None:  # noqa: F811
    from tests.celery_probe import slow

    queue = f"probe-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "lost"
    with probe_worker(queue, tmp_path / "worker.log", reject_on_worker_lost=False):
        slow.apply_async((str(marker),), queue=queue)
        wait_for(lambda: len(runs(marker)) == 1, 120, "the first run")
        os.kill(runs(marker)[0], signal.SIGKILL)
        wait_for(lambda: "WorkerLostError" in (tmp_path / "worker.log").read_text(), 60, "WorkerLostError")
        time.sleep(5)
        assert len(runs(marker)) == 1  # acknowledged and recorded as failed: never run again
        assert queue_counts(queue) == (0, 0)
