"""Scale out: Celery workers started here, on this machine's RabbitMQ (and once Redis) and PostgreSQL.

The kill tests run the fleet crash harness (`benchmarks.crash_distributed`, also ``ironloop bench crash
--distributed``): payment tasks are submitted while worker processes are SIGKILLed at seeded random moments (busy
ones, right after the payments service committed a charge, and whole workers), and the broker connections are
dropped once. Every task must finish with the right answer, one charge per logical call in the payments service's
ledger, no orphaned call, a writer record (the lease tokens stamped on every checkpoint) showing one runner at a
time, and none lost.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ironloop.benchmarks.crash_distributed import FleetCrashFigures, FleetCrashPlan, run_fleet_crash

from tests.conftest import server_unreachable
from tests.injection import QUESTION, injection_services

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
REDIS = "redis://127.0.0.1:6379/0"


def reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def rabbitmq() -> str:
    if not reachable(5672):
        server_unreachable("RabbitMQ", "127.0.0.1", 5672, "connection refused")
    return RABBITMQ


@pytest.fixture
def redis_broker() -> str:
    if not reachable(6379):
        server_unreachable("Redis", "127.0.0.1", 6379, "connection refused")
    return REDIS


def check(figures: FleetCrashFigures, kills: int) -> None:
    print(f"\n{figures.format()}")
    assert figures.lost == 0, figures.problems
    assert figures.duplicate_charges == 0, figures.problems
    assert figures.orphaned_calls == 0, figures.problems
    assert figures.overlapping_runners == 0, figures.problems
    assert figures.wedged_threads == 0 and figures.wrong_answers == 0, figures.problems
    assert figures.ok, figures.problems
    assert figures.completed == figures.tasks > 0
    assert figures.service_charges == figures.charges_asked
    assert figures.kills >= kills
    assert figures.redeliveries > 0  # killed mid-task, the tasks came back from the broker
    assert figures.runs > figures.tasks  # ... and runs were taken up again from their checkpoints


@pytest.mark.timeout(300)
def test_sigkilled_workers_on_rabbitmq_and_postgresql_lose_nothing_and_charge_once(
    rabbitmq: str, postgres_url: str, tmp_path: Path
) -> None:
    plan = FleetCrashPlan(
        db_url=postgres_url, broker_url=rabbitmq, kills=24, seed=20261201, workers=2, concurrency=2, in_flight=4
    )
    figures = run_fleet_crash(plan, tmp_path)
    check(figures, 24)
    assert figures.broker_drops == 1


@pytest.mark.timeout(300)
def test_sigkilled_workers_on_the_redis_broker(redis_broker: str, postgres_url: str, tmp_path: Path) -> None:
    plan = FleetCrashPlan(
        db_url=postgres_url,
        broker_url=redis_broker,
        kills=8,
        seed=20261202,
        workers=2,
        concurrency=1,
        in_flight=3,
        whole_worker_share=0.2,
        visibility_s=4.0,
    )
    check(run_fleet_crash(plan, tmp_path), 8)


def ironloop(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ironloop", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_sqlite_is_refused_for_several_worker_processes(tmp_path: Path) -> None:
    env = {**os.environ, "IRONLOOP_SEARCH_URL": "http://127.0.0.1:9"}
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    refused = ironloop("worker", "--concurrency", "2", "--db", db, env=env)
    assert refused.returncode == 2
    assert "SQLite" in refused.stderr and "cannot be shared by 2 worker processes" in refused.stderr
    assert "Traceback" not in refused.stderr
    celery = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "ironloop.distributed", "worker", "-c", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "IRONLOOP_DB_URL": db},
    )
    assert celery.returncode != 0 and "cannot be shared by 2 worker processes" in celery.stderr
    no_services = ironloop("worker", "--db", db, env={k: v for k, v in os.environ.items() if "IRONLOOP" not in k})
    assert no_services.returncode == 2 and "IRONLOOP_SEARCH_URL" in no_services.stderr


@pytest.fixture
def approval_fleet(rabbitmq: str, postgres_url: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], object]]:
    """One worker (two processes) running an agent whose charge waits for approval; the env to talk to it."""
    queue = f"ironloop-test-{os.getpid()}-{time.monotonic_ns()}"
    with injection_services() as (url, payments):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("IRONLOOP_")},
            "IRONLOOP_SEARCH_URL": url,
            "IRONLOOP_DB_URL": postgres_url,
            "IRONLOOP_BROKER_URL": rabbitmq,
            "IRONLOOP_QUEUE": queue,
        }
        log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ironloop",
                "worker",
                "--concurrency",
                "2",
                "--agent",
                "tests.fleet_agents:injected_agent",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            yield env, payments
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
            log.close()


@pytest.mark.timeout(240)
def test_a_paused_run_frees_its_worker_and_one_decision_continues_it_elsewhere(approval_fleet) -> None:
    env, payments = approval_fleet
    paused = ironloop("submit", QUESTION, "--wait", "--timeout", "150", env=env, timeout=180)
    assert paused.returncode == 3, paused.stdout + paused.stderr  # waiting for approval, the worker free again
    thread = paused.stdout.split()[1]
    assert "waiting for approval" in paused.stderr and payments.snapshot() == []
    listed = ironloop("threads", env=env)
    assert f"{thread} " in listed.stdout and "waiting for approval" in listed.stdout and "running:" not in listed.stdout

    approve = subprocess.Popen(
        [sys.executable, "-m", "ironloop", "resume", thread, "--approve", "--enqueue", "--wait", "--timeout", "150"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    reject = subprocess.Popen(
        [sys.executable, "-m", "ironloop", "resume", thread, "--reject", "no", "--enqueue", "--wait"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    results = [(p, *p.communicate(timeout=180)) for p in (approve, reject)]
    winners = [r for r in results if r[0].returncode == 0]
    losers = [r for r in results if r[0].returncode != 0]
    assert len(winners) == 1 and len(losers) == 1, [(p.returncode, out, err) for p, out, err in results]
    assert losers[0][0].returncode == 1 and "already decided:" in losers[0][2], losers[0][2]
    assert "Traceback" not in losers[0][2]
    charged = len(payments.snapshot())
    answer = winners[0][1].strip().splitlines()[-1]
    if winners[0][0] is approve:
        assert charged == 1 and answer.startswith("answer: Final: Charged cus_evil 99900 cents"), answer
        assert "approved by" in losers[0][2]
    else:
        assert charged == 0 and answer.startswith("answer: Final: Not run"), answer
        assert "rejected" in losers[0][2]
