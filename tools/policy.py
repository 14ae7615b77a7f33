"""Policies: how a remote call is timed out and retried, and for a tool, what replaces it when it fails.

A policy is a frozen value (like Temporal's ``RetryPolicy``): validated once, shared freely, changed with
`CallPolicy.but`. It turns itself into a tenacity controller built from the small strategies in
`tools.strategies`; the runtimes (`tools.runner` for tools, `graph.model_call` for the model) own the loop.
`ToolPolicy` adds the fallback, the side-effect flag, human approval and output trust to the retry settings every
call shares.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from ironloop.tools.approval import APPROVAL_MODES, ApprovalMode
from ironloop.tools.circuit import CircuitBreaker
from ironloop.tools.errors import is_transient
from ironloop.tools.idempotency import Reconcile, Snapshot
from ironloop.tools.rate_limit import RateLimit
from ironloop.tools.sentinels import NO_FALLBACK
from ironloop.tools.strategies import stop_before_deadline, wait_exponential_jittered, wait_retry_after
from langgraph.errors import GraphBubbleUp
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base


@dataclass(frozen=True, kw_only=True)
class CallPolicy:
    """Timeout and retry settings shared by every kind of remote call."""

    timeout_s: float | None = 30.0
    """Longest wait for one attempt. Async calls are cancelled; sync tools are abandoned in their thread.
    ``None``: attempts are bounded by ``deadline_s`` only."""

    timeout_growth: float = 1.0
    """Factor applied to the timeout (and the hedge delay) after each attempt that timed out: 2 gives 0.1,
    0.2, 0.4 s... as long as attempts keep timing out, like TCP's retransmission timer. A fixed short timeout
    is a load threshold in disguise: when a busy host slows every answer past it, every attempt is abandoned
    and its retry adds load (a retry storm). Growing it lets the call adapt to the service's present speed.
    Attempts that failed fast (a 503) do not grow it: the service answered, so the next try stays short.
    1 = the same timeout for every attempt."""

    max_attempts: int = 3
    """Attempts in all, the first included (1 = never retry)."""

    backoff_initial_s: float = 0.2
    """Wait before the second attempt; doubled for each further one."""

    backoff_max_s: float = 5.0
    """Ceiling of one wait between attempts (before a server's ``Retry-After``, which may ask for more)."""

    jitter: float = 0.5
    """Fraction of each wait drawn at random (0 = none, 1 = full jitter), so retries do not stampede."""

    deadline_s: float | None = 120.0
    """Budget of the whole call, attempts and waits included. A ``Retry-After`` that would end past it is
    not waited for: the call fails over to its fallback at once. ``None``: no overall budget."""

    retry_on: Callable[[BaseException], bool] = is_transient
    """Which errors deserve another attempt. Default: `tools.errors.is_transient`."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        for name in ("timeout_s", "deadline_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, got {value}")
        if self.backoff_initial_s < 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"need 0 <= backoff_initial_s <= backoff_max_s, got {self.backoff_initial_s} and {self.backoff_max_s}"
            )
        if self.timeout_growth < 1.0:
            raise ValueError(f"timeout_growth is a factor >= 1, got {self.timeout_growth}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter is a fraction in [0, 1], got {self.jitter}")
        if not callable(self.retry_on):
            raise TypeError("retry_on must be a predicate taking the exception")

    def but(self, **changes: Any) -> Self:
        """A copy with some fields changed: ``DEFAULT_POLICY.but(max_attempts=5)``."""
        return dataclasses.replace(self, **changes)

    def should_retry(self, error: BaseException) -> bool:
        """``retry_on``, guarded: interrupts, cancellation and exits are never retried."""
        if not isinstance(error, Exception) or isinstance(error, GraphBubbleUp):
            return False
        return bool(self.retry_on(error))

    def attempt_timeout(self, deadline_at: float | None, timed_out: int = 0) -> float | None:
        """The timeout of an attempt starting now, after ``timed_out`` earlier attempts of the call timed out:
        ``timeout_s`` grown by ``timeout_growth`` per such attempt, cut to what is left of the deadline."""
        timeout = None if self.timeout_s is None else self.timeout_s * self.growth(timed_out)
        if deadline_at is None:
            return timeout
        remaining = max(0.0, deadline_at - time.monotonic())
        return remaining if timeout is None else min(timeout, remaining)

    def growth(self, timed_out: int) -> float:
        """How much longer than the first attempt's the waits are after ``timed_out`` timed-out attempts."""
        return float(self.timeout_growth**timed_out)

    def deadline_from_now(self) -> float | None:
        return time.monotonic() + self.deadline_s if self.deadline_s is not None else None

    def retrying(
        self,
        *,
        deadline_at: float | None,
        rng: random.Random | None = None,
        also_stop: stop_base | None = None,
        retry_if: Callable[[BaseException], bool] | None = None,
    ) -> AsyncRetrying:
        """The tenacity controller for one async call. ``deadline_at`` is a `time.monotonic()` instant;
        ``also_stop`` adds a reason to stop (a task's budget); ``retry_if`` replaces ``should_retry``."""
        return AsyncRetrying(**self._strategies(deadline_at, rng, also_stop, retry_if))

    def retrying_sync(self, *, deadline_at: float | None, rng: random.Random | None = None) -> Retrying:
        """The same controller for a sync call."""
        return Retrying(**self._strategies(deadline_at, rng))

    def _strategies(
        self,
        deadline_at: float | None,
        rng: random.Random | None,
        also_stop: stop_base | None = None,
        retry_if: Callable[[BaseException], bool] | None = None,
    ) -> dict[str, Any]:
        stop: stop_base = stop_after_attempt(self.max_attempts)
        if deadline_at is not None:
            stop = stop | stop_before_deadline(deadline_at)
        if also_stop is not None:
            stop = stop | also_stop
        return {
            "stop": stop,
            "wait": wait_retry_after(
                wait_exponential_jittered(self.backoff_initial_s, self.backoff_max_s, self.jitter, rng)
            ),
            "retry": retry_if_exception(retry_if or self.should_retry),
            "reraise": True,
        }


@dataclass(frozen=True, kw_only=True)
class ToolPolicy(CallPolicy):
    """Per-tool reliability settings. Every field has a default fit for a remote call of a few seconds."""

    fallback: Any = NO_FALLBACK
    """What the model gets when the call finally fails: a value (``None`` included), or a callable given the error
    that returns one. The observation says plainly that it is a fallback and why. `NO_FALLBACK` (the default): the
    model gets an error observation instead."""

    side_effect: bool = False
    """The tool changes the world (charges, sends, books): each call runs exactly once (`tools.exactly_once`).
    A retry is then made only when the failed attempt surely did nothing, unless the service honours keys."""

    honours_idempotency_key: bool = False
    """With ``side_effect``: the service deduplicates by the ``Idempotency-Key`` the tool sends, so an attempt
    whose outcome is unknown (timeout, lost response) may be retried with the same key."""

    reconcile: Reconcile | None = None
    """With ``side_effect``: ``reconcile(idempotency_key, args)`` asks the service whether an attempt whose
    outcome is unknown happened (`tools.idempotency.Reconciliation`). Sync or async (a sync one runs on a tool
    thread); cut after ``timeout_s`` (30 s if ``None``). An exception or an answer that is not a
    ``Reconciliation`` leaves the outcome unknown, and is logged and recorded as the reason."""

    snapshot: Snapshot | None = None
    """With ``reconcile``: ``snapshot(idempotency_key, args)`` runs once before the first attempt; what it returns
    (a JSON value, kept in the ledger) is handed to ``reconcile`` as a third argument, ``before``. For a service
    without idempotency keys: "the seat is mine now" means the booking happened only if it was not mine before."""

    reconcile_delay_s: float = 0.0
    """With ``reconcile``: wait this long after an attempt that timed out or lost its answer before asking: the
    service may still be processing the request, and would answer "not happened" for a write about to land. Within
    ``deadline_s``: a delay past it is cut."""

    reconcile_rounds: int | None = None
    """With ``reconcile``: the most rounds of attempts one call makes when ``reconcile`` keeps answering that an
    attempt whose outcome was unknown did not happen (each such answer makes a retry safe). ``None``: as many as
    ``max_attempts`` and ``deadline_s`` allow, which bound the call's attempts in all rounds together. When the
    call gives up after such an answer, the model is told it did not happen, and the key is recorded *failed*."""

    rate_limit: RateLimit | None = None
    """Calls per time window and in flight at once; a call waits for a slot within its deadline."""

    circuit_breaker: CircuitBreaker | None = None
    """Fail fast (to the fallback) while the tool's service keeps failing; probe it after a cool-down."""

    hedge_after_s: float | None = None
    """Read tools only: if an attempt has not answered after this long, race a second one."""

    hedges: int = 1
    """With ``hedge_after_s``: the most extra tries one attempt races, one more every ``hedge_after_s``."""

    credentials: tuple[str, ...] = ()
    """Names of the secrets this tool is given (`tools.credentials`): each is passed, per call, to the tool's
    parameter of that name annotated ``Annotated[Secret, InjectedToolArg]``, from ``$IRONLOOP_TOOL_<TOOL>_<NAME>``
    or the config file. A tool is given nothing it does not list, and never another tool's secrets."""

    approval: ApprovalMode | None = None
    """When a call waits for a human's decision before it runs (`tools.approval`): ``"never"``, ``"always"``, or
    ``"on_untrusted"`` (once untrusted output has entered the thread). ``None`` (not set): ``"on_untrusted"`` for
    ``side_effect`` tools, ``"never"`` for others. The model cannot change it."""

    untrusted_output: bool = False
    """The tool returns text from outside (web pages, search results, e-mails): the model gets it as delimited
    data, and the thread is marked as having read untrusted input (see ``approval="on_untrusted"``)."""

    progress_resets_timeout: bool = False
    """Progress the tool reports (an MCP progress notification: `tools.attempts.progress_made`) restarts the
    attempt's ``timeout_s``, so a long tool that shows signs of life is not cut off; ``deadline_s`` still bounds
    the call (the MCP specification: progress may reset the timer, a maximum should hold)."""

    @property
    def has_fallback(self) -> bool:
        return self.fallback is not NO_FALLBACK

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.credentials, str) or not all(isinstance(n, str) and n for n in self.credentials):
            raise TypeError(f"credentials is a tuple of names, e.g. ('api_key',); got {self.credentials!r}")
        object.__setattr__(self, "credentials", tuple(self.credentials))
        if (self.snapshot is not None or self.reconcile_delay_s) and self.reconcile is None:
            raise ValueError("snapshot and reconcile_delay_s only apply with reconcile")
        if self.reconcile_delay_s < 0:
            raise ValueError(f"reconcile_delay_s must be >= 0, got {self.reconcile_delay_s}")
        if self.reconcile_rounds is not None and self.reconcile_rounds < 1:
            raise ValueError(f"reconcile_rounds must be at least 1 or None, got {self.reconcile_rounds}")
        if (self.honours_idempotency_key or self.reconcile is not None) and not self.side_effect:
            raise ValueError("honours_idempotency_key and reconcile only apply to side_effect=True tools")
        if self.hedge_after_s is not None:
            if self.side_effect:
                raise ValueError("hedged requests are for idempotent reads, never for side_effect tools")
            if self.hedge_after_s <= 0:
                raise ValueError(f"hedge_after_s must be positive, got {self.hedge_after_s}")
        if self.hedges < 1:
            raise ValueError(f"hedges must be at least 1, got {self.hedges}")
        if self.approval is not None and self.approval not in APPROVAL_MODES:
            raise ValueError(f"approval must be one of {', '.join(APPROVAL_MODES)} or None, got {self.approval!r}")

    @property
    def approval_mode(self) -> ApprovalMode:
        """The approval strategy in force, defaults resolved."""
        if self.approval is not None:
            return self.approval
        return "on_untrusted" if self.side_effect else "never"

    def hedge_delay(self, timed_out: int = 0) -> float | None:
        """When to hedge an attempt after ``timed_out`` timed-out ones: ``hedge_after_s``, grown like the timeout."""
        return None if self.hedge_after_s is None else self.hedge_after_s * self.growth(timed_out)

    def fallback_for(self, error: BaseException) -> Any:
        """The fallback value for this failure (calling the fallback if it is a function)."""
        return self.fallback(error) if callable(self.fallback) else self.fallback


DEFAULT_POLICY = ToolPolicy()
"""The policy of a tool that none was given for."""
