"""Admission control: at most ``max_in_flight`` tool calls run at once on an event loop; the others wait in line.

Hundreds of tasks submitted at once in one process share one event loop. Unchecked, every call starts at once,
each answer waits behind everyone else's work, every attempt overruns its timeout, the retries and hedges add
load, and nothing succeeds (200 demo tasks at once: 0 % correct). With a cap, the calls in flight run at the
loop's normal speed and the rest queue: throughput stays at what the CPU allows and latency grows with the
queue. A call's timeouts and deadline start when it is admitted, so time spent in line is never blamed on the
service; how long it waited is on its record (``queued_ms``). The task's own budget (`tools.budget`) still
counts the wait: it bounds the task's wall time.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref

from ironloop.tools.steps import CallContext, Result, Step


class Admission:
    """The layer that admits a call once fewer than ``max_in_flight`` calls run on its event loop (``None``: no
    cap). Each event loop has its own line (``invoke`` runs calls on one shared loop, `tools.loop_thread`)."""

    def __init__(self, max_in_flight: int | None):
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def _gate(self, limit: int) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            with self._lock:
                gate = self._gates.setdefault(loop, asyncio.Semaphore(limit))
        return gate

    async def __call__(self, call: CallContext, proceed: Step) -> Result:
        if self.max_in_flight is None:
            return await proceed(call)
        gate = self._gate(self.max_in_flight)
        if not gate.locked():
            async with gate:
                return await proceed(call)
        queued_at = time.monotonic()
        async with gate:
            call.record.queued_ms = (time.monotonic() - queued_at) * 1000
            return await proceed(call)
