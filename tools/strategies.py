"""Tenacity strategies the policies are built from, one small class each (named like tenacity's own).

They compose with tenacity's operators (``|`` for stops, ``+`` for waits) and with its stock strategies.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from ironloop.tools.errors import retry_after_of
from tenacity import RetryCallState
from tenacity.stop import stop_base
from tenacity.wait import wait_base


class wait_exponential_jittered(wait_base):
    """Exponential backoff capped at ``maximum``, with a random cut of up to ``jitter`` of each delay.

    ``jitter=0`` waits exactly ``initial · 2ⁿ``; ``jitter=1`` is "full jitter" (uniform in [0, delay]).
    Jitter only ever shortens the delay, so ``maximum`` is a true ceiling.
    """

    def __init__(self, initial: float, maximum: float, jitter: float, rng: random.Random | None = None):
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.rng = rng or random.Random()

    def __call__(self, retry_state: RetryCallState) -> float:
        exponent = max(0, retry_state.attempt_number - 1)
        delay = min(self.maximum, self.initial * (2.0**exponent))
        return delay * (1.0 - self.jitter * self.rng.random())


class wait_retry_after(wait_base):
    """Wait at least as long as the failed attempt's ``Retry-After`` asked, else fall back to ``wait``."""

    def __init__(self, wait: wait_base):
        self.wait = wait

    def __call__(self, retry_state: RetryCallState) -> float:
        backoff = self.wait(retry_state)
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        advised = retry_after_of(error) if error is not None else None
        return backoff if advised is None else max(backoff, advised)


class stop_before_deadline(stop_base):
    """Stop when the coming sleep would end past the deadline: a wait that cannot be followed by an
    attempt only delays the fallback. ``deadline_at`` is a `time.monotonic()` instant."""

    def __init__(self, deadline_at: float, clock: Callable[[], float] = time.monotonic):
        self.deadline_at = deadline_at
        self.clock = clock

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.clock() + (retry_state.upcoming_sleep or 0.0) >= self.deadline_at
