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
   a ``reconcile`` function → ask it, and act on the answer; neither → never run again blindly: the key is
   recorded *unknown* and the model is told the action may have happened.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import TYPE_CHECKING, Any

from ironloop.tools.errors import describe, is_transient, surely_not_applied
from ironloop.tools.idempotency import (
    IdempotencyStore,
    KeyEntry,
    KeyStatus,
    Reconciled,
    Reconciliation,
    _current_key,
    idempotency_key_for,
)
from ironloop.tools.policy import ToolPolicy
from ironloop.tools.records import Attempt, AttemptOutcome, CallOutcome, CallRecord
from langchain_core.messages import ToolMessage
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

if TYPE_CHECKING:
    from ironloop.tools.runner import Execute, ToolCallRunner

MAX_ROUNDS = 2
"""Executions allowed in one call after a reconcile said "not happened" (bounds a flapping service)."""

RECONCILE_TIMEOUT_S = 30.0


class OutcomeUnknown(Exception):
    """The side effect may or may not have happened, and nothing can tell which."""


class ExactlyOnce:
    def __init__(self, store: IdempotencyStore):
        self.store = store

    async def call(
        self,
        runner: ToolCallRunner,
        request: ToolCallRequest,
        execute: Execute,
        policy: ToolPolicy,
        record: CallRecord,
    ) -> ToolMessage | Command:
        call = request.tool_call
        key = idempotency_key_for(record.thread_id, record.checkpoint_ns, call["id"])
        record.idempotency_key = key
        entry = await asyncio.to_thread(
            self.store.begin,
            KeyEntry(key, call["name"], call["id"], KeyStatus.STARTED, record.thread_id, record.checkpoint_ns),
        )
        if entry.status in (KeyStatus.COMPLETED, KeyStatus.FAILED):
            message = self._replay(call, record, entry)
            runner.bookkeeping_attempt(request, record)
            return message
        rounds = 0
        unknown = not entry.fresh  # begun by an earlier attempt or process that did not record an end
        token = _current_key.set(key)
        try:
            while True:
                if unknown:
                    settled = await self._settle(call, policy, record, key)
                    if settled is not None:
                        if record.attempts and record.attempts[-1].replayed:
                            runner.bookkeeping_attempt(request, record)
                        return settled
                if rounds == MAX_ROUNDS:
                    return await self._unknown(call, record, key, "the service kept failing after reconciliation")
                rounds += 1
                doubt = Doubt(policy)
                try:
                    result = await runner.attempts(request, execute, policy, record, retry_if=doubt.retry_if)
                except GraphBubbleUp:
                    raise
                except Exception as error:
                    # Any attempt that may have gone through makes the call's outcome unknown, even when the
                    # last one surely did nothing (a lost answer, then 503s): recording *failed* would invite
                    # a second charge.
                    if doubt.observe(error):
                        why = f"{describe(error)} after {len(record.attempts)} attempt(s)"
                        if policy.honours_idempotency_key:  # retried with the key already; a resume may go on
                            return await self._unknown(call, record, key, why)
                        unknown = True  # it may have happened: settle it before anything runs again
                        record.reason = why
                        continue
                    message = runner.failure_message(call, policy, record, error)
                    await asyncio.to_thread(self.store.finish, key, KeyStatus.FAILED, str(message.content))
                    return message
                message = runner.success(record, result)
                content = message.content if isinstance(message, ToolMessage) else str(message)
                status = KeyStatus.COMPLETED if record.outcome == CallOutcome.OK else KeyStatus.FAILED
                await asyncio.to_thread(self.store.finish, key, status, str(content))
                return message
        finally:
            _current_key.reset(token)

    def recorded_answer(self, call: dict[str, Any], record: CallRecord) -> ToolMessage | None:
        """What the ledger knows of a call that lost its observation, without running anything (or ``None``)."""
        # The call ran (or should have run) in the sibling ``tools`` node of the node asking.
        parent, _, _ = record.checkpoint_ns.rpartition("|")
        key = idempotency_key_for(record.thread_id, f"{parent}|tools" if parent else "tools", call["id"])
        entry = self.store.get(key)
        if entry is None:
            return None
        record.idempotency_key = key
        if entry.status in (KeyStatus.COMPLETED, KeyStatus.FAILED):
            return self._replay(call, record, entry)
        record.outcome, record.reason = CallOutcome.UNKNOWN, "interrupted mid-call"
        text = (
            f"Outcome unknown: {call['name']} was interrupted mid-call and may have happened. It was not repeated; "
            f"check with the service (idempotency key {key}) before trying again."
        )
        return ToolMessage(content=text, name=call["name"], tool_call_id=call["id"], status="error")

    async def _settle(
        self, call: dict[str, Any], policy: ToolPolicy, record: CallRecord, key: str
    ) -> ToolMessage | None:
        """For an outcome that is unknown: the observation to give, or ``None`` if it is safe to run again."""
        if policy.honours_idempotency_key:
            return None
        if policy.reconcile is not None:
            answer = await self._reconcile(policy, key, call["args"])
            if answer.verdict is Reconciled.HAPPENED:
                result = answer.result or f"{call['name']} had already been done (confirmed with the service)."
                await asyncio.to_thread(self.store.finish, key, KeyStatus.COMPLETED, result)
                record.outcome, record.reason = CallOutcome.OK, "reconciled: it had happened"
                record.attempts.append(_bookkeeping(len(record.attempts) + 1, replayed=True))
                return ToolMessage(content=result, name=call["name"], tool_call_id=call["id"])
            if answer.verdict is Reconciled.NOT_HAPPENED:
                return None
        return await self._unknown(call, record, key, record.reason or "it was interrupted after it may have been sent")

    async def _reconcile(self, policy: ToolPolicy, key: str, args: dict[str, Any]) -> Reconciliation:
        assert policy.reconcile is not None
        try:
            async with asyncio.timeout(RECONCILE_TIMEOUT_S):
                answer = policy.reconcile(key, args)
                if inspect.isawaitable(answer):
                    answer = await answer
        except Exception:  # a reconcile that fails teaches nothing: the outcome stays unknown
            return Reconciliation(Reconciled.UNKNOWN)
        return answer if isinstance(answer, Reconciliation) else Reconciliation(Reconciled.UNKNOWN)

    async def _unknown(self, call: dict[str, Any], record: CallRecord, key: str, why: str) -> ToolMessage:
        text = (
            f"Outcome unknown: {call['name']} may have happened ({why}). It was not repeated, to avoid doing it "
            f"twice. Check with the service (idempotency key {key}) before trying again."
        )
        await asyncio.to_thread(self.store.finish, key, KeyStatus.UNKNOWN, text)
        record.outcome, record.reason = CallOutcome.UNKNOWN, why
        return ToolMessage(content=text, name=call["name"], tool_call_id=call["id"], status="error")

    @staticmethod
    def _replay(call: dict[str, Any], record: CallRecord, entry: KeyEntry) -> ToolMessage:
        """The recorded end of a call that already ran: no execution."""
        record.attempts.append(_bookkeeping(1, replayed=True))
        ok = entry.status is KeyStatus.COMPLETED
        record.outcome = CallOutcome.OK if ok else CallOutcome.ERROR
        if not ok:
            record.reason = "failed earlier (recorded)"
        return ToolMessage(
            content=entry.result or "", name=call["name"], tool_call_id=call["id"], status="success" if ok else "error"
        )


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


def _bookkeeping(number: int, *, replayed: bool) -> Attempt:
    return Attempt(number=number, outcome=AttemptOutcome.OK, started_at=time.time(), ms=0.0, replayed=replayed)
