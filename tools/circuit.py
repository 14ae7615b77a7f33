"""Circuit breakers per tool: stop calling a service that keeps failing, then probe it.

Closed: calls go through; consecutive failed attempts are counted, a success resets the count. After
``failures`` in a row the circuit opens: for ``cooldown_s`` every call fails fast (to its fallback, if any)
without touching the service. Then it is half-open: one probe call goes through; its success closes the
circuit, its failure opens it for another cool-down. Other calls fail fast while the probe is out.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum

from ironloop.tools.errors import CircuitOpenError


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, kw_only=True)
class CircuitBreaker:
    failures: int = 5
    """Consecutive failed attempts that open the circuit."""
    cooldown_s: float = 10.0
    """How long an open circuit refuses calls before letting one probe through."""

    def __post_init__(self) -> None:
        if self.failures < 1 or self.cooldown_s <= 0:
            raise ValueError("CircuitBreaker needs failures >= 1 and cooldown_s > 0")


@dataclass
class Circuit:
    """The state of one tool's breaker, shared by every call of that tool in this process."""

    config: CircuitBreaker
    state: CircuitState = CircuitState.CLOSED
    consecutive_failures: int = 0
    opened_at: float = 0.0
    probe_out: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, tool: str) -> CircuitState:
        """Let an attempt through (returning the state it goes under) or raise `CircuitOpenError`."""
        with self._lock:
            if self.state is CircuitState.OPEN and time.monotonic() - self.opened_at >= self.config.cooldown_s:
                self.state = CircuitState.HALF_OPEN
            if self.state is CircuitState.CLOSED:
                return CircuitState.CLOSED
            if self.state is CircuitState.HALF_OPEN and not self.probe_out:
                self.probe_out = True
                return CircuitState.HALF_OPEN
            left = max(0.0, self.config.cooldown_s - (time.monotonic() - self.opened_at))
        raise CircuitOpenError(
            f"circuit open: {tool} failed {self.config.failures} times in a row; not calling it for {left:.1f} s more"
        )

    def forget(self) -> None:
        """An attempt ended without telling anything (cancelled): free the probe slot."""
        with self._lock:
            self.probe_out = False

    def record(self, success: bool) -> None:
        with self._lock:
            self.probe_out = False
            if success:
                self.state, self.consecutive_failures = CircuitState.CLOSED, 0
                return
            self.consecutive_failures += 1
            if self.state is CircuitState.HALF_OPEN or self.consecutive_failures >= self.config.failures:
                self.state, self.opened_at = CircuitState.OPEN, time.monotonic()
