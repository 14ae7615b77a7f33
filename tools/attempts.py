"""The attempt loop, and the layers around each attempt: circuit breaker, rate limit, timeout, hedging.

`AttemptLoop` runs attempts under the call's policy (tenacity: backoff with jitter, ``Retry-After``, the
deadline, the task's retry budget) until one answers, or raises the last error. Each attempt passes through
its own stack of layers (`tools.steps.chain`), outermost first:

    RecordAttempt   times the attempt, classifies its failure, tells the listeners
    CircuitGuard    fails fast while the tool's circuit is open; counts the service's faults
    ErrorReport     a tool's own error answer fails the attempt when the policy's ``retry_on`` wants it retried
    RateLimitSlot   waits (within the deadline) for a slot of the tool's rate limit
    Timeout         stops waiting after the policy's timeout (grown after timed-out attempts) on the call's own
                    clock (`tools.loop_clock`); progress the tool reports (`progress_made`) restarts it, when
                    the policy says so
    Hedge           races a second try when the first is slow (reads only)
    run_tool        the tool itself: ``ToolNode``'s execute
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ironloop.tools.budget import stop_when_budget_spent
from ironloop.tools.circuit import Circuit, CircuitBreaker, CircuitState
from ironloop.tools.errors import (
    CircuitOpenError,
    ToolErrorReport,
    ToolTimeoutError,
    describe,
    error_class,
    retry_after_of,
)
from ironloop.tools.hedging import race_with_hedge
from ironloop.tools.loop_clock import Stopwatch, stopwatch
from ironloop.tools.policy import ToolPolicy
from ironloop.tools.rate_limit import RateLimit, RateLimiter
from ironloop.tools.records import Attempt, AttemptOutcome
from ironloop.tools.shared_circuit import open_circuit
from ironloop.tools.steps import CallContext, Result
from langchain_core.messages import ToolMessage
from langgraph.errors import GraphBubbleUp
from tenacity import RetryCallState


@dataclass
class AttemptContext:
    """One attempt of a call: the call, the attempt's record (already in ``call.record.attempts``), the deadline."""

    call: CallContext
    attempt: Attempt
    deadline_at: float | None
    """The call's deadline, a `time.monotonic()` instant (``None``: none)."""

    @property
    def timed_out_before(self) -> int:
        """How many earlier attempts of the call timed out (the timeout and hedge delay grow with them)."""
        return sum(earlier.outcome is AttemptOutcome.TIMEOUT for earlier in self.call.record.attempts[:-1])


AttemptStep = Callable[[AttemptContext], Awaitable[Result]]

Config = TypeVar("Config")
State = TypeVar("State")


class PerTool(Generic[Config, State]):
    """The state behind one setting of each tool (its circuit, its rate limiter), shared by every call of the
    tool in this process, and made afresh when the tool's setting changes."""

    def __init__(self, make: Callable[[str, Config], State]):
        self.make = make
        self._states: dict[str, tuple[Config, State]] = {}
        self._lock = threading.Lock()

    def for_tool(self, tool: str, config: Config | None) -> State | None:
        """The state of ``tool`` under ``config`` (``None`` when the policy does not set it)."""
        if config is None:
            return None
        with self._lock:
            known = self._states.get(tool)
            if known is None or known[0] != config:
                known = self._states[tool] = (config, self.make(tool, config))
            return known[1]


def outcome_of(error: BaseException, policy: ToolPolicy, attempt: Attempt) -> AttemptOutcome:
    """How a failed attempt is recorded: a timeout, a fault worth retrying, or a permanent refusal."""
    if attempt.outcome is AttemptOutcome.TIMEOUT or isinstance(error, TimeoutError):
        return AttemptOutcome.TIMEOUT
    return AttemptOutcome.TRANSIENT_ERROR if policy.should_retry(error) else AttemptOutcome.PERMANENT_ERROR


async def run_tool(attempt: AttemptContext) -> Result:
    """The innermost step: the tool, once."""
    return await attempt.call.execute(attempt.call.request)


class RecordAttempt:
    """Times the attempt and fills in its record: outcome, error, a tool's own error report; tells the listeners."""

    async def __call__(self, context: AttemptContext, proceed: AttemptStep) -> Result:
        attempt, call = context.attempt, context.call
        started = time.monotonic()
        try:
            result = await proceed(context)
        except (GraphBubbleUp, asyncio.CancelledError):
            attempt.ms = (time.monotonic() - started) * 1000
            raise
        except Exception as error:
            attempt.ms = (time.monotonic() - started) * 1000
            attempt.outcome = outcome_of(error, call.policy, attempt)
            attempt.error_class, attempt.error = error_class(error), describe(error)
            call.events.attempt_ended(call.record, attempt)
            raise
        attempt.ms = (time.monotonic() - started) * 1000
        if isinstance(result, ToolMessage) and result.status == "error":
            # The tool's own error report (a handled ToolException, an MCP isError), its policy not asking for
            # a retry (`ErrorReport`): its answer, not retried.
            attempt.outcome, attempt.error = AttemptOutcome.PERMANENT_ERROR, describe(ToolErrorReport(result))
        call.events.attempt_ended(call.record, attempt)
        return result


class CircuitGuard:
    """Lets the attempt through the tool's circuit breaker (`tools.circuit`), and tells it how the attempt went:
    the service's faults (transient errors, timeouts) count against it; an answered refusal shows it is alive."""

    def __init__(self) -> None:
        self.circuits: PerTool[CircuitBreaker, Circuit] = PerTool(lambda tool, config: open_circuit(config, tool))

    async def __call__(self, context: AttemptContext, proceed: AttemptStep) -> Result:
        policy = context.call.policy
        circuit = self.circuits.for_tool(context.call.name, policy.circuit_breaker)
        if circuit is None:
            return await proceed(context)
        if circuit.admit(context.call.name) is CircuitState.HALF_OPEN:  # raises CircuitOpenError when open
            context.attempt.circuit = str(CircuitState.HALF_OPEN)
        try:
            result = await proceed(context)
        except (GraphBubbleUp, asyncio.CancelledError):
            circuit.forget()
            raise
        except CircuitOpenError:
            raise
        except Exception as error:
            circuit.record(success=outcome_of(error, policy, context.attempt) is AttemptOutcome.PERMANENT_ERROR)
            raise
        circuit.record(success=True)
        return result


class ErrorReport:
    """A tool's own error report (a ``ToolMessage`` with ``status="error"``: an MCP ``isError`` result, a handled
    ``ToolException``) is its answer, unless the policy's ``retry_on`` accepts it as a `ToolErrorReport` (whose
    text is the report's): then it fails the attempt like any error, and the loop retries it."""

    async def __call__(self, context: AttemptContext, proceed: AttemptStep) -> Result:
        result = await proceed(context)
        if isinstance(result, ToolMessage) and result.status == "error":
            report = ToolErrorReport(result)
            if context.call.policy.should_retry(report):
                raise report
        return result


class RateLimitSlot:
    """Waits for a slot of the tool's rate limit (`tools.rate_limit`) before the attempt, within the deadline."""

    def __init__(self) -> None:
        self.limiters: PerTool[RateLimit, RateLimiter] = PerTool(
            lambda tool, config: RateLimiter(config, key=f"ironloop:tool:{tool}")
        )

    async def __call__(self, context: AttemptContext, proceed: AttemptStep) -> Result:
        limiter = self.limiters.for_tool(context.call.name, context.call.policy.rate_limit)
        if limiter is None:
            return await proceed(context)
        context.attempt.rate_limited_ms = 1000 * await limiter.acquire(context.deadline_at)
        try:
            return await proceed(context)
        finally:
            limiter.release()


_progress_clock: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "ironloop_progress_clock", default=None
)


def progress_made() -> None:
    """Called by a tool (from the call's context) when it learns that its work is progressing, e.g. an MCP
    progress notification: under a policy with ``progress_resets_timeout``, the attempt's timeout starts again
    (never past the call's deadline). Anywhere else it does nothing."""
    restart = _progress_clock.get()
    if restart is not None:
        restart()


class Timeout:
    """Stops waiting for the attempt after the policy's timeout on the call's own clock (`tools.loop_clock`: time
    the event loop spent on other work does not count), and at the deadline by the wall clock. An async tool is
    cancelled; a sync one (``sync_tools``) is abandoned in its thread. With ``progress_resets_timeout``, each
    `progress_made` restarts the timeout, within the deadline."""

    def __init__(self, sync_tools: Iterable[str] = ()):
        self.sync_tools = frozenset(sync_tools)

    async def __call__(self, context: AttemptContext, proceed: AttemptStep) -> Result:
        policy = context.call.policy
        shown = policy.attempt_timeout(context.deadline_at, context.timed_out_before)
        if shown is None:
            return await proceed(context)
        timeout = policy.attempt_timeout(None, context.timed_out_before)
        started = time.monotonic()
        watch = stopwatch()
        try:
            async with asyncio.timeout(None) as scope:
                expiry = _Expiry(scope, watch, timeout, context.deadline_at)
                token = _progress_clock.set(watch.restart if policy.progress_resets_timeout else None)
                try:
                    return await proceed(context)
                finally:
                    _progress_clock.reset(token)
                    expiry.cancel()
        except TimeoutError as exc:
            if not scope.expired():
                raise  # the tool's own timeout
            context.attempt.abandoned_thread = context.call.name in self.sync_tools
            context.attempt.outcome = AttemptOutcome.TIMEOUT
            restarts = policy.progress_resets_timeout  # then a longer wait is the progress, not load
            raise ToolTimeoutError(_timeout_text(shown, 0.0 if restarts else time.monotonic() - started)) from exc
        finally:
            watch.stop()


def _timeout_text(timeout: float | None, waited_s: float) -> str:
    """What the timeout was, and why the attempt took longer when it did (the event loop was busy elsewhere:
    that time is not counted against the timeout, `tools.loop_clock`)."""
    text = f"no answer within the attempt timeout of {timeout or 0:.3g} s"
    if timeout and waited_s > timeout * 1.5:
        text += f" (stopped after {waited_s:.3g} s: the event loop was busy)"
    return text


class _Expiry:
    """Expires ``scope`` once ``watch`` reads ``timeout`` (own clock) or the wall clock reaches ``deadline_at``."""

    def __init__(self, scope: asyncio.Timeout, watch: Stopwatch, timeout: float | None, deadline_at: float | None):
        self.scope, self.watch, self.timeout, self.deadline_at = scope, watch, timeout, deadline_at
        self.loop = asyncio.get_running_loop()
        self.handle: asyncio.TimerHandle | None = None
        self._check()

    def _check(self) -> None:
        left = self.timeout - self.watch.elapsed() if self.timeout is not None else float("inf")
        if self.deadline_at is not None:
            left = min(left, self.deadline_at - time.monotonic())
        if left <= 0:
            self.handle = None
            self.scope.reschedule(self.loop.time())
        else:
            self.handle = self.loop.call_later(left, self._check)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


class Hedge:
    """For a policy with ``hedge_after_s``: races further tries of a slow attempt and keeps the first answer."""

    async def __call__(self, context: AttemptContext, proceed: AttemptStep) -> Result:
        hedge_after_s = context.call.policy.hedge_delay(context.timed_out_before)
        if hedge_after_s is None:
            return await proceed(context)
        result, context.attempt.hedge = await race_with_hedge(
            lambda: proceed(context), hedge_after_s, context.call.policy.hedges
        )
        return result


class AttemptLoop:
    """Runs ``attempt`` until one answers or the policy gives up, then raises the last error.

    The retries follow the call's policy, narrowed by ``call.retry_if`` when a layer set one, and stop when the
    task's budget has no retry left; each attempt is announced on the stream once its wait is known.
    """

    def __init__(self, attempt: AttemptStep, rng: random.Random | None = None):
        self.attempt = attempt
        self.rng = rng or random.Random()

    async def __call__(self, call: CallContext) -> Result:
        record, policy, budget = call.record, call.policy, call.budget
        started = time.monotonic()
        deadline_at = policy.deadline_from_now()
        if budget is not None and budget.deadline_at is not None:
            deadline_at = budget.deadline_at if deadline_at is None else min(deadline_at, budget.deadline_at)
        try:
            # The first attempt runs outside tenacity: most calls answer at once, and building the retry
            # controller costs more than the call's own runtime. A failure hands over to the controller.
            try:
                result = await self.attempt(AttemptContext(call, self._new_attempt(call), deadline_at))
            except Exception as error:
                result = await self._retry(call, deadline_at, error)
        except BaseException:
            if record.attempts:
                call.events.announce_attempt(record, record.attempts[-1])
            raise
        finally:
            record.ms += (time.monotonic() - started) * 1000
        call.events.announce_attempt(record, record.attempts[-1])
        return result

    async def _retry(self, call: CallContext, deadline_at: float | None, first_error: Exception) -> Result:
        """Attempts after a failed first one, under the policy's tenacity controller (which starts by taking
        ``first_error`` as attempt 1's outcome)."""
        record, budget = call.record, call.budget

        def before_sleep(state: RetryCallState) -> None:
            last = record.attempts[-1]
            last.retry_in_s = round(state.upcoming_sleep, 4)
            if state.outcome is not None and (error := state.outcome.exception()) is not None:
                last.retry_after_s = retry_after_of(error)
            call.events.announce_attempt(record, last)

        retrying = call.policy.retrying(
            deadline_at=deadline_at,
            rng=self.rng,
            also_stop=stop_when_budget_spent(budget) if budget is not None else None,  # put last: it spends
            retry_if=call.retry_if,
        ).copy(before_sleep=before_sleep)
        replay: Exception | None = first_error
        async for attempt in retrying:
            with attempt:
                if replay is not None:
                    replayed, replay = replay, None
                    raise replayed
                result = await self.attempt(AttemptContext(call, self._new_attempt(call), deadline_at))
        return result

    @staticmethod
    def _new_attempt(call: CallContext) -> Attempt:
        attempt = Attempt(
            number=len(call.record.attempts) + 1, outcome=AttemptOutcome.OK, started_at=time.time(), ms=0.0
        )
        call.record.attempts.append(attempt)
        return attempt
