"""Rate limits per tool: calls wait for a slot (within their deadline) instead of failing.

The counting is the `limits` library's moving window, in process memory by default; a ``storage_uri`` such
as ``redis://127.0.0.1:6379`` shares one limit between many worker processes. ``max_concurrent`` also caps
the calls of the tool in flight at once (per process).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from ironloop.tools.errors import RateLimitTimeoutError
from limits import RateLimitItemPerSecond, storage, strategies

POLL_S = 0.005


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """At most ``calls`` per ``per_s`` seconds (a whole number), and at most ``max_concurrent`` at once."""

    calls: int
    per_s: int = 1
    max_concurrent: int | None = None
    storage_uri: str = "memory://"

    def __post_init__(self) -> None:
        if self.calls < 1 or self.per_s < 1:
            raise ValueError("RateLimit needs calls >= 1 and a whole number of seconds per_s >= 1")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")


@dataclass
class RateLimiter:
    """The state behind one tool's `RateLimit` (shared by every call of that tool in this process)."""

    config: RateLimit
    key: str
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._item = RateLimitItemPerSecond(self.config.calls, self.config.per_s)
        self._window = strategies.MovingWindowRateLimiter(storage.storage_from_string(self.config.storage_uri))

    async def acquire(self, deadline_at: float | None) -> float:
        """Wait for a slot; returns the seconds waited. Raises `RateLimitTimeoutError` past the deadline."""
        started = time.monotonic()
        while True:
            if self._take_concurrency():
                if self._window.hit(self._item, self.key):
                    return time.monotonic() - started
                self.release()
                reset_at = self._window.get_window_stats(self._item, self.key).reset_time
                wait = max(POLL_S, reset_at - time.time())
            else:
                wait = POLL_S
            if deadline_at is not None and time.monotonic() + wait > deadline_at:
                raise RateLimitTimeoutError(
                    f"no rate-limit slot ({self.config.calls} per {self.config.per_s} s) before the deadline"
                )
            await asyncio.sleep(min(wait, 0.25))

    def _take_concurrency(self) -> bool:
        with self._lock:
            if self.config.max_concurrent is not None and self._in_flight >= self.config.max_concurrent:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1
