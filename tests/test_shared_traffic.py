"""Shared traffic policy across worker processes, through this machine's Redis: one rate limit and one circuit per
tool for every process, instead of one each (``$IRONLOOP_TRAFFIC_URL`` / ``ironloop worker --traffic``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from ironloop.tools.circuit import Circuit, CircuitBreaker, CircuitState
from ironloop.tools.errors import CircuitOpenError
from ironloop.tools.rate_limit import RateLimit, RateLimiter, RateLimitTimeoutError
from ironloop.tools.shared_circuit import RedisCircuit, open_circuit

from tests.conftest import server_unreachable
from tests.test_distributed import reachable

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(autouse=True)
def redis_up() -> None:
    if not reachable(6379):
        server_unreachable("Redis", "127.0.0.1", 6379, "connection refused")


def test_processes_share_one_rate_limit_through_redis() -> None:
    """Three processes each try 5 calls at once under a shared limit of 5 per 10 s: 5 get a slot in all."""
    key = f"ironloop:test:{uuid.uuid4().hex}"
    script = textwrap.dedent(
        f"""
        import asyncio, time
        from ironloop.tools.rate_limit import RateLimit, RateLimiter, RateLimitTimeoutError
        limiter = RateLimiter(RateLimit(calls=5, per_s=10), key={key!r})
        async def one():
            try:
                await limiter.acquire(time.monotonic() + 0.5)
                return 1
            except RateLimitTimeoutError:
                return 0
        async def main():
            print(sum(await asyncio.gather(*(one() for _ in range(5)))))
        asyncio.run(main())
        """
    )
    env = {"IRONLOOP_TRAFFIC_URL": REDIS, "PATH": "/usr/bin:/bin"}
    runs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env) for _ in range(3)
    ]
    granted = [int(p.communicate(timeout=120)[0]) for p in runs]
    assert sum(granted) == 5, granted  # per-process limits would have let 15 through


def test_without_shared_storage_each_process_counts_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IRONLOOP_TRAFFIC_URL", raising=False)
    key = f"ironloop:test:{uuid.uuid4().hex}"
    first, second = (RateLimiter(RateLimit(calls=1, per_s=10), key=key) for _ in range(2))

    async def both() -> None:
        await first.acquire(time.monotonic() + 0.2)
        await second.acquire(time.monotonic() + 0.2)  # its own memory: a slot of its own

    asyncio.run(both())
    with pytest.raises(RateLimitTimeoutError):
        asyncio.run(first.acquire(time.monotonic() + 0.2))


def test_a_circuit_opened_by_one_process_is_open_for_all() -> None:
    tool = f"flaky-{uuid.uuid4().hex[:8]}"
    config = CircuitBreaker(failures=3, cooldown_s=0.5, storage_uri=REDIS)
    worker_a, worker_b = open_circuit(config, tool), open_circuit(config, tool)
    assert isinstance(worker_a, RedisCircuit) and worker_a is not worker_b
    for _ in range(3):
        assert worker_a.admit(tool) is CircuitState.CLOSED
        worker_a.record(success=False)
    with pytest.raises(CircuitOpenError, match="across workers"):
        worker_b.admit(tool)  # b never saw a failure: the circuit is shared
    time.sleep(0.6)
    assert worker_b.admit(tool) is CircuitState.HALF_OPEN  # one probe, for everyone
    with pytest.raises(CircuitOpenError):
        worker_a.admit(tool)
    worker_b.record(success=True)
    assert worker_a.admit(tool) is CircuitState.CLOSED


def test_circuits_stay_per_process_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IRONLOOP_TRAFFIC_URL", raising=False)
    circuit = open_circuit(CircuitBreaker(failures=1), "tool")
    assert type(circuit) is Circuit
    monkeypatch.setenv("IRONLOOP_TRAFFIC_URL", REDIS)
    assert isinstance(open_circuit(CircuitBreaker(failures=1), "tool"), RedisCircuit)


def test_an_unreachable_redis_lets_calls_through() -> None:
    circuit = RedisCircuit(CircuitBreaker(failures=1), "tool", "redis://127.0.0.1:9/0")
    assert circuit.admit("tool") is CircuitState.CLOSED
    circuit.record(success=False)  # logged, not raised
