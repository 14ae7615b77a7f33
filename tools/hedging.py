"""Hedged requests for idempotent reads: if the first try is slow, race a second one and keep the first answer.

A tail of slow answers (a busy replica, a lost packet) costs the whole hedge delay at most, instead of a
full timeout and a retry. Never used for side-effect tools: two racing writes are two writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

FIRST, HEDGE = "first", "hedge"


async def race_with_hedge(start: Callable[[], Awaitable[T]], hedge_after_s: float) -> tuple[T, str | None]:
    """Run ``start()``; if it has not finished after ``hedge_after_s``, run it again and take the first success.

    Returns the result and which try won (``None`` when no hedge was sent). The first failure ends the race
    and is raised (the other try is cancelled): the service is failing now, and a fresh attempt after the
    policy's backoff beats waiting out a slow try to its timeout. A loser is cancelled (a sync tool's thread
    is abandoned).
    """
    first = asyncio.ensure_future(start())
    second: asyncio.Future[T] | None = None
    try:
        done, _ = await asyncio.wait({first}, timeout=hedge_after_s)
        if done:
            return first.result(), None
        second = asyncio.ensure_future(start())
        done, _ = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
        winner = first if first in done else second
        return winner.result(), FIRST if winner is first else HEDGE
    finally:  # also when the attempt's timeout cancels the race: no try is left running or unobserved
        for task in (first, second):
            if task is None:
                continue
            if task.done():
                _consume(task)
            else:
                task.cancel()
                task.add_done_callback(_consume)


def _consume(task: asyncio.Future[object]) -> None:
    """Retrieve a cancelled loser's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()
