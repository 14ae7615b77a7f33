"""Running a side-effect call exactly once, across retries, timeouts and crashes.

For a call of a ``ToolPolicy(side_effect=True)`` tool:

1. Its idempotency key is looked up in the ledger (`tools.idempotency`). *Completed*: the recorded result is
   returned, marked replayed, and nothing runs. *Failed*: the recorded failure is returned.
2. Otherwise the key is recorded *started*, durably, before the first attempt.
3. Attempts run under the policy, with the key in context (`current_idempotency_key`). A failed attempt is
   retried only if it surely did nothing (`tools.errors.surely_not_applied`), or if the service honours
   idempotency keys (then the same key makes the retry safe).
4. Success is recorded *completed* with the observation, durably, before the model sees it.
5. An outcome that stays unknown (a timeout, a lost response, or a *started* entry left by a process that
   died mid-call) is settled by what the tool declares: honours keys → run again with the same key;
   a ``reconcile`` function → ask it, and act on the answer (it happened: its result; it did not: run it again,
   within what is left of the policy's attempts and deadline, and ``reconcile_rounds``; when no room is left,
   the model is told plainly that it did not happen, and the key is recorded *failed*); neither → never run
   again blindly: the key is recorded *unknown* and the model is told the action may have happened.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ironloop.tools import observations
from ironloop.tools.errors import PermanentToolError, describe, is_transient, surely_not_applied
from ironloop.tools.idempotency import (
    IdempotencyStore,
    KeyEntry,
    KeyStatus,
    Reconciled,
    Reconciliation,
    idempotency_key_for,
    using_idempotency_key,
)
from ironloop.tools.policy import ToolPolicy
from ironloop.tools.records import Attempt, AttemptOutcome, CallOutcome, CallRecord
from ironloop.tools.steps import CallContext, Result, Step
from ironloop.tools.threads import ToolThreads
from langchain_core.messages import ToolMessage
from langgraph.errors import GraphBubbleUp

RECONCILE_TIMEOUT_S = 30.0
"""How long a ``reconcile`` (or ``snapshot``) may take under a policy without ``timeout_s``."""

logger = logging.getLogger(__name__)


class ExactlyOnce:
    """The layer of a ``side_effect`` call: it wraps the attempt loop it is handed with the ledger (1-5 above).

    ``threads`` runs a sync ``reconcile`` or ``snapshot`` like a sync tool: on a tool thread, abandoned at the
    timeout, never blocking the event loop."""

    def __init__(self, store: IdempotencyStore, threads: ToolThreads | None = None):
        self.store = store
        self.threads = threads or ToolThreads()

    async def __call__(self, call: CallContext, proceed: Step) -> Result:
        record, policy, tool_call = call.record, call.policy, call.tool_call
        key = idempotency_key_for(record.thread_id, record.checkpoint_ns, record.tool_call_id)
        record.idempotency_key = key
        entry = await asyncio.to_thread(
            self.store.begin,
            KeyEntry(key, record.tool, record.tool_call_id, KeyStatus.STARTED, record.thread_id, record.checkpoint_ns),
        )
        if entry.status in (KeyStatus.COMPLETED, KeyStatus.FAILED):
            message = self._replay(tool_call, record, entry)
            call.events.answered_from_ledger(record)
            return message
        rounds = 0
        deadline_at = policy.deadline_from_now()
        unknown = not entry.fresh  # begun by an earlier attempt or process that did not record an end
        if unknown:
            before = _loaded(entry.result)
        else:
            try:
                before = await self._snapshot(policy, key, tool_call["args"])
            except Exception as error:  # without the state before, an unknown outcome could not be settled
                failure = observations.failed(tool_call, policy, record, _SnapshotFailed(describe(error)))
                await asyncio.to_thread(self.store.finish, key, KeyStatus.FAILED, str(failure.content))
                return failure
        with using_idempotency_key(key):
            while True:
                if unknown:
                    if rounds and policy.reconcile is not None and policy.reconcile_delay_s:
                        await asyncio.sleep(_cut(policy.reconcile_delay_s, deadline_at))  # let a late write land
                    settled = await self._settle(tool_call, policy, record, key, before)
                    if settled is not None:
                        if record.attempts and record.attempts[-1].replayed:
                            call.events.answered_from_ledger(record)
                        return settled
                    # reconcile said it did not happen: safe to run again, if the policy has room left
                    round_policy = self._next_round(policy, record, deadline_at, rounds)
                    if round_policy is None:
                        return await self._not_done(tool_call, record, key)
                else:
                    round_policy = policy
                rounds += 1
                doubt = Doubt(policy)
                try:
                    result = await proceed(call.but(policy=round_policy, retry_if=doubt.retry_if))
                except GraphBubbleUp:
                    raise
                except Exception as error:
                    # Any attempt that may have gone through makes the call's outcome unknown, even when the
                    # last one surely did nothing (a lost answer, then 503s): recording *failed* would invite
                    # a second charge.
                    if doubt.observe(error):
                        why = f"{describe(error)} after {len(record.attempts)} attempt(s)"
                        if policy.honours_idempotency_key:  # retried with the key already; a resume may go on
                            return await self._unknown(record, key, why)
                        unknown = True  # it may have happened: settle it before anything runs again
                        record.reason = why
                        continue
                    failure = observations.failed(tool_call, policy, record, error)
                    await asyncio.to_thread(self.store.finish, key, KeyStatus.FAILED, str(failure.content))
                    return failure
                answer = observations.succeeded(record, result)
                content = answer.content if isinstance(answer, ToolMessage) else str(answer)
                status = KeyStatus.COMPLETED if record.outcome == CallOutcome.OK else KeyStatus.FAILED
                await asyncio.to_thread(self.store.finish, key, status, str(content))
                return answer

    def recorded_answer(self, call: Mapping[str, Any], record: CallRecord) -> ToolMessage | None:
        """What the ledger knows of a call that lost its observation, without running anything (or ``None``)."""
        # The call ran (or should have run) in the sibling ``tools`` node of the node asking.
        parent, _, _ = record.checkpoint_ns.rpartition("|")
        key = idempotency_key_for(record.thread_id, f"{parent}|tools" if parent else "tools", record.tool_call_id)
        return self._known(call, record, key)

    async def recorded(self, call: CallContext) -> ToolMessage | None:
        """What the ledger knows of this call, about to be answered without running (``None``: it never began)."""
        record = call.record
        key = idempotency_key_for(record.thread_id, record.checkpoint_ns, record.tool_call_id)
        message = await asyncio.to_thread(self._known, call.tool_call, record, key)
        if message is not None and record.attempts:
            call.events.answered_from_ledger(record)
        return message

    def _known(self, call: Mapping[str, Any], record: CallRecord, key: str) -> ToolMessage | None:
        entry = self.store.get(key)
        if entry is None:
            return None
        record.idempotency_key = key
        if entry.status in (KeyStatus.COMPLETED, KeyStatus.FAILED):
            return self._replay(call, record, entry)
        record.outcome, record.reason = CallOutcome.UNKNOWN, "interrupted mid-call"
        return observations.observation(call, observations.interrupted_unknown(record.tool, key), error=True)

    async def _settle(
        self, call: Mapping[str, Any], policy: ToolPolicy, record: CallRecord, key: str, before: Any = None
    ) -> ToolMessage | None:
        """For an outcome that is unknown: the observation to give, or ``None`` if it is safe to run again."""
        if policy.honours_idempotency_key:
            return None
        if policy.reconcile is not None:
            answer, problem = await self._reconcile(policy, key, call["args"], before)
            if problem is not None:
                logger.warning("%s (idempotency key %s): reconcile %s; outcome unknown", record.tool, key, problem)
                why = record.reason or "it was interrupted after it may have been sent"
                return await self._unknown(record, key, f"{why}; reconcile {problem}")
            if answer.verdict is Reconciled.HAPPENED:
                result = answer.result or observations.confirmed_done(record.tool)
                await asyncio.to_thread(self.store.finish, key, KeyStatus.COMPLETED, result)
                record.outcome, record.reason = CallOutcome.OK, "reconciled: it had happened"
                record.attempts.append(_bookkeeping(len(record.attempts) + 1, replayed=True))
                return observations.observation(call, result, error=False)
            if answer.verdict is Reconciled.NOT_HAPPENED:
                return None
        return await self._unknown(record, key, record.reason or "it was interrupted after it may have been sent")

    async def _reconcile(
        self, policy: ToolPolicy, key: str, args: dict[str, Any], before: Any
    ) -> tuple[Reconciliation, str | None]:
        """The service's answer, and why it teaches nothing when it does not (``None`` when it is an answer)."""
        assert policy.reconcile is not None
        arguments = (key, args, before) if policy.snapshot is not None else (key, args)
        try:
            answer = await self._hook(policy, policy.reconcile, *arguments)
        except TimeoutError:
            return Reconciliation(Reconciled.UNKNOWN), f"gave no answer within {_hook_timeout(policy):g} s"
        except Exception as error:
            return Reconciliation(Reconciled.UNKNOWN), f"failed: {describe(error)}"
        if not isinstance(answer, Reconciliation):
            return Reconciliation(Reconciled.UNKNOWN), f"returned {answer!r:.80}, not a Reconciliation"
        return answer, None

    async def _snapshot(self, policy: ToolPolicy, key: str, args: dict[str, Any]) -> Any:
        """What the policy's ``snapshot`` records before the first attempt, kept in the ledger (``None``: none)."""
        if policy.snapshot is None:
            return None
        before = await self._hook(policy, policy.snapshot, key, args)
        await asyncio.to_thread(self.store.finish, key, KeyStatus.STARTED, json.dumps(before))
        return before

    async def _hook(self, policy: ToolPolicy, hook: Callable[..., Any], *args: Any) -> Any:
        """Run a policy's hook like a tool: a coroutine on the loop, a sync function on a tool thread; cut at the
        timeout."""
        async with asyncio.timeout(_hook_timeout(policy)):
            if inspect.iscoroutinefunction(hook):
                return await hook(*args)
            answer = await self.threads.run(hook, *args)
            return await answer if inspect.isawaitable(answer) else answer

    @staticmethod
    def _next_round(
        policy: ToolPolicy, record: CallRecord, deadline_at: float | None, rounds: int
    ) -> ToolPolicy | None:
        """The policy of one more round of attempts (what is left of the call's attempts and deadline), or ``None``
        when the call has no room left for one."""
        if policy.reconcile_rounds is not None and rounds >= policy.reconcile_rounds:
            return None
        attempts_left = policy.max_attempts - len(record.attempts)
        time_left = None if deadline_at is None else deadline_at - time.monotonic()
        if attempts_left < 1 or (time_left is not None and time_left <= 0):
            return None
        return policy.but(max_attempts=attempts_left, deadline_s=time_left)

    async def _not_done(self, call: Mapping[str, Any], record: CallRecord, key: str) -> ToolMessage:
        """Give up on a call the service said was not done: it did not happen, plainly, and the key *failed*."""
        why = record.reason or "the service did not answer"
        text = observations.not_done(record.tool, why, len(record.attempts))
        await asyncio.to_thread(self.store.finish, key, KeyStatus.FAILED, text)
        record.outcome, record.reason = CallOutcome.ERROR, f"did not happen: {why}"
        return observations.observation(call, text, error=True)

    async def _unknown(self, record: CallRecord, key: str, why: str) -> ToolMessage:
        text = observations.outcome_unknown(record.tool, key, why)
        await asyncio.to_thread(self.store.finish, key, KeyStatus.UNKNOWN, text)
        record.outcome, record.reason = CallOutcome.UNKNOWN, why
        return ToolMessage(content=text, name=record.tool, tool_call_id=record.tool_call_id, status="error")

    @staticmethod
    def _replay(call: Mapping[str, Any], record: CallRecord, entry: KeyEntry) -> ToolMessage:
        """The recorded end of a call that already ran: no execution."""
        record.attempts.append(_bookkeeping(1, replayed=True))
        ok = entry.status is KeyStatus.COMPLETED
        record.outcome = CallOutcome.OK if ok else CallOutcome.ERROR
        if not ok:
            record.reason = "failed earlier (recorded)"
        return observations.observation(call, entry.result or "", error=not ok)


class Doubt:
    """Watches one round of attempts for any whose effect is uncertain, and decides which are retried."""

    def __init__(self, policy: ToolPolicy):
        self.policy = policy
        self.uncertain = False

    def observe(self, error: BaseException) -> bool:
        """Note a failed attempt; True once any attempt so far may have had its effect."""
        if is_transient(error) and not surely_not_applied(error):
            self.uncertain = True
        return self.uncertain

    def retry_if(self, error: BaseException) -> bool:
        self.observe(error)
        return self.policy.should_retry(error) and (self.policy.honours_idempotency_key or surely_not_applied(error))


class _SnapshotFailed(PermanentToolError):
    def __init__(self, why: str):
        super().__init__(f"the state before the call could not be read ({why}); nothing was attempted")


def _loaded(text: str | None) -> Any:
    """The snapshot a *started* entry keeps (``None`` if none, or not readable)."""
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None


def _hook_timeout(policy: ToolPolicy) -> float:
    return policy.timeout_s if policy.timeout_s is not None else RECONCILE_TIMEOUT_S


def _cut(delay: float, deadline_at: float | None) -> float:
    return delay if deadline_at is None else max(0.0, min(delay, deadline_at - time.monotonic()))


def _bookkeeping(number: int, *, replayed: bool) -> Attempt:
    return Attempt(number=number, outcome=AttemptOutcome.OK, started_at=time.time(), ms=0.0, replayed=replayed)
