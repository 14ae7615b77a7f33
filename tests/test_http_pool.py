"""The tools' HTTP pool survives the cancellations ironloop makes all the time (attempt timeouts, hedge losers).

httpcore 1.0.9 (under httpx 0.28) leaks a pool slot when a request is cancelled while it waits for a
connection (encode/httpcore#1093): a busy pool fills with orphaned slots and every later request waits forever.
The chaos benchmark wedged that way after ~4,700 tasks; `tools.http` uses httpx2, which reclaims them.
"""

from __future__ import annotations

import asyncio

import httpx2
from ironloop.demo.services.faults import Fault, FaultInjector, FaultProfile
from ironloop.demo.services.search import create_search_app
from ironloop.demo.services.server import ServiceThread
from ironloop.tools.hedging import race_with_hedge
from ironloop.tools.http import LoopClients

SLOW_HALF = FaultProfile("slow-half", ((Fault.DELAY, 0.5),), delay_s=0.3)
"""Half the answers take 0.3 s: longer than the attempts below wait, so most of them are cancelled."""


def test_cancelled_requests_do_not_wedge_a_busy_pool() -> None:
    with ServiceThread(create_search_app(FaultInjector(SLOW_HALF, seed=1))) as service:

        async def churn_then_ask() -> tuple[int, int]:
            clients = LoopClients(timeout=httpx2.Timeout(3.0), limits=httpx2.Limits(max_connections=4))

            async def get() -> int:
                client = await clients.get()
                response = await client.get(f"{service.url}/search", params={"q": "Paris population"})
                return response.status_code

            cancelled = 0

            async def attempt() -> None:
                nonlocal cancelled
                try:
                    async with asyncio.timeout(0.05):
                        await race_with_hedge(get, 0.01, 2)
                except TimeoutError:
                    cancelled += 1

            async def worker() -> None:
                for _ in range(40):
                    await attempt()

            await asyncio.gather(*(worker() for _ in range(8)))
            # The pool must still serve a patient request (a wedged one raises PoolTimeout after 3 s).
            statuses = [await get() for _ in range(3)]
            return cancelled, statuses.count(200)

        cancelled, answered = asyncio.run(churn_then_ask())
    assert cancelled > 50  # the churn really cancelled requests under contention
    assert answered == 3
