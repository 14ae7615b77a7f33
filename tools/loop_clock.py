"""A call's own clock: wall time, less the time its event loop was too busy to run it.

On a saturated event loop (hundreds of tasks at once in one process, or a process starved of CPU) an answer
that arrived at once waits its turn behind everyone else's work. A timeout measured by the wall clock then
blames the service for the loop's backlog: every attempt times out, the retries and hedges add load, and nothing
succeeds. `LoopClock` measures the loop's lag with a tick every `TICK_S` while some call watches it: a tick
that runs late shows the loop was busy elsewhere for that long. A `Stopwatch` reads wall time minus the lag
since it started, so an attempt's timeout and hedge delay count only time in which the call could have been
answered. The clock still advances by a tick per turn of the loop, so a hung service is still cut, later.
Deadlines stay on the wall clock: they bound what the caller waits.
"""

from __future__ import annotations

import asyncio
import weakref

TICK_S = 0.005
"""How often a watched loop checks its lag."""

SLACK_S = 0.001
"""Lateness of a tick that is not counted as lag (timer resolution)."""


class LoopClock:
    """The lag of one event loop, measured while at least one `Stopwatch` is running on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._lag = 0.0
        self._watchers = 0
        self._next_tick: float | None = None
        self._handle: asyncio.TimerHandle | None = None

    def lag(self) -> float:
        """Seconds the loop has been late so far, the tick now overdue included."""
        lag = self._lag
        if self._next_tick is not None:
            lag += max(0.0, self.loop.time() - self._next_tick - SLACK_S)
        return lag

    def start(self) -> Stopwatch:
        """A stopwatch on this loop's own clock, starting now (`Stopwatch.stop` it when done)."""
        self._watchers += 1
        if self._handle is None:
            self._schedule()
        return Stopwatch(self)

    def _schedule(self) -> None:
        self._next_tick = self.loop.time() + TICK_S
        self._handle = self.loop.call_at(self._next_tick, self._tick)

    def _tick(self) -> None:
        assert self._next_tick is not None
        self._lag += max(0.0, self.loop.time() - self._next_tick - SLACK_S)
        if self._watchers > 0:
            self._schedule()
        else:
            self._handle = self._next_tick = None

    def _stopped(self) -> None:
        self._watchers -= 1
        if self._watchers == 0 and self._handle is not None:
            self._lag = self.lag()
            self._handle.cancel()
            self._handle = self._next_tick = None


class Stopwatch:
    """Time on the loop's own clock since `start` (or the last `restart`)."""

    def __init__(self, clock: LoopClock):
        self.clock = clock
        self._running = True
        self.restart()

    def restart(self) -> None:
        self._wall, self._lag = self.clock.loop.time(), self.clock.lag()

    def elapsed(self) -> float:
        return (self.clock.loop.time() - self._wall) - (self.clock.lag() - self._lag)

    def stop(self) -> None:
        if self._running:
            self._running = False
            self.clock._stopped()


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopClock] = weakref.WeakKeyDictionary()


def stopwatch() -> Stopwatch:
    """A stopwatch on the running loop's own clock (call from inside the loop)."""
    loop = asyncio.get_running_loop()
    clock = _clocks.get(loop)
    if clock is None:
        clock = _clocks[loop] = LoopClock(loop)
    return clock.start()
