"""One decision per waiting call: the first process to decide a call wins; the others are told who did, and when.

``ironloop resume THREAD --approve`` (``--reject``, ``--edit``, and the same through a worker) first *claims*
the decision for the calls it saw waiting, at the checkpoint where it saw them: one row per (thread,
checkpoint, call, round) in ``ironloop_approval_decisions``, whose primary key lets only the first claim in
(`AlreadyDecidedError` for the others: "already decided: charge_card [call_1] approved by ann at ..."). Whoever
then runs the thread (that process, another one, a worker) answers the waiting calls with the recorded
decisions (`DecisionBook.resume_map`), so a decision is applied once, whoever applies it. A decision the run
refused (edited arguments the tool's schema rejects: the call is asked again at the same checkpoint) is marked
refused (`DecisionBook.refuse`), and the next claim for that call opens a new round.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ironloop.checkpoints.database import WRITE_TRANSACTION, store_error
from ironloop.checkpoints.errors import CheckpointStoreError
from ironloop.checkpoints.schema import approval_decisions
from langgraph.types import Interrupt
from sqlalchemy import Engine, exc, func, insert, select

c = approval_decisions.c

VERBS = {"approve": "approved", "reject": "rejected", "edit": "edited"}


@dataclass(frozen=True)
class Decided:
    """A recorded decision on one waiting call."""

    thread_id: str
    checkpoint_id: str
    tool_call_id: str
    round: int
    tool: str
    decision: dict[str, Any]
    decided_by: str | None
    decided_at: datetime
    refused: str | None = None

    @property
    def key(self) -> str:
        return decision_key(self.thread_id, self.checkpoint_id, self.tool_call_id, self.round)

    def describe(self) -> str:
        verb = VERBS.get(str(self.decision.get("action")), str(self.decision.get("action")))
        reason = f' ("{self.decision["reason"]}")' if self.decision.get("reason") else ""
        return (
            f"{self.tool} [{self.tool_call_id}] {verb}{reason} by {self.decided_by or 'someone'} "
            f"at {self.decided_at:%Y-%m-%d %H:%M:%S} UTC"
        )


class AlreadyDecidedError(CheckpointStoreError):
    """Another process decided these calls first."""

    def __init__(self, decided: Sequence[Decided]):
        self.decided = list(decided)
        super().__init__("already decided: " + "; ".join(d.describe() for d in self.decided))


@dataclass(frozen=True)
class WaitingCall:
    """A call paused for approval, as its request shows it."""

    tool_call_id: str
    tool: str
    interrupt_id: str

    @classmethod
    def of(cls, request: Interrupt) -> WaitingCall:
        value = request.value if isinstance(request.value, Mapping) else {}
        return cls(str(value.get("tool_call_id")), str(value.get("tool")), request.id)


def decision_key(thread_id: str, checkpoint_id: str, tool_call_id: str, round_: int) -> str:
    return hashlib.sha256(json.dumps([thread_id, checkpoint_id, tool_call_id, round_]).encode()).hexdigest()


class DecisionBook:
    """Claims and reads approval decisions in the checkpoint database."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def claim(
        self, thread_id: str, checkpoint_id: str, calls: Sequence[WaitingCall], decision: Mapping[str, Any]
    ) -> list[Decided]:
        """Record ``decision`` for every call in ``calls`` (all or none). `AlreadyDecidedError` if any was decided
        already (the first claim wins)."""
        now = datetime.now(UTC)
        try:
            with self.engine.connect() as connection:
                connection = connection.execution_options(**{WRITE_TRANSACTION: True})
                with connection.begin():
                    claimed = []
                    for call in calls:
                        refused = connection.execute(
                            select(func.count())
                            .select_from(approval_decisions)
                            .where(
                                c.thread_id == thread_id,
                                c.checkpoint_id == checkpoint_id,
                                c.tool_call_id == call.tool_call_id,
                                c.refused.is_not(None),
                            )
                        ).scalar_one()
                        by = decision.get("by")
                        decided = Decided(
                            thread_id, checkpoint_id, call.tool_call_id, int(refused), call.tool, dict(decision),
                            str(by)[:255] if by else None, now,
                        )  # fmt: skip
                        connection.execute(
                            insert(approval_decisions).values(
                                key=decided.key,
                                thread_id=thread_id,
                                checkpoint_id=checkpoint_id,
                                tool_call_id=call.tool_call_id,
                                round=decided.round,
                                tool=call.tool[:255],
                                decision=decided.decision,
                                decided_by=decided.decided_by,
                                decided_at=now,
                            )
                        )
                        claimed.append(decided)
            return claimed
        except exc.IntegrityError:
            first = self.decided(thread_id, checkpoint_id, [call.tool_call_id for call in calls])
            raise AlreadyDecidedError(list(first.values()) or self.last(thread_id)) from None
        except exc.SQLAlchemyError as error:
            raise store_error(error, self.engine.url, "recording an approval decision") from error

    def decided(self, thread_id: str, checkpoint_id: str, tool_call_ids: Sequence[str]) -> dict[str, Decided]:
        """The standing (not refused) decision of each of these calls at this checkpoint, by tool call id."""
        query = self._select().where(
            c.thread_id == thread_id,
            c.checkpoint_id == checkpoint_id,
            c.tool_call_id.in_(list(tool_call_ids)),
            c.refused.is_(None),
        )
        return {d.tool_call_id: d for d in self._read(query, "reading approval decisions")}

    def last(self, thread_id: str, limit: int = 5) -> list[Decided]:
        """The thread's most recent decisions, newest first."""
        query = self._select().where(c.thread_id == thread_id).order_by(c.decided_at.desc()).limit(limit)
        return self._read(query, "reading approval decisions")

    def refuse(self, decided: Decided, problem: str) -> None:
        """The run asked again after this decision (it could not be used): it no longer stands."""
        try:
            with self.engine.connect() as connection:
                connection = connection.execution_options(**{WRITE_TRANSACTION: True})
                with connection.begin():
                    connection.execute(
                        approval_decisions.update().where(c.key == decided.key).values(refused=problem[:2000])
                    )
        except exc.SQLAlchemyError as error:
            raise store_error(error, self.engine.url, "marking an approval decision refused") from error

    def resume_map(self, thread_id: str, checkpoint_id: str, waiting: Sequence[Interrupt]) -> dict[str, Any] | None:
        """LangGraph's resume value (interrupt id → decision) when every waiting call has a standing decision, else
        ``None`` (the thread keeps waiting for a person)."""
        calls = [WaitingCall.of(request) for request in waiting]
        decided = self.decided(thread_id, checkpoint_id, [call.tool_call_id for call in calls])
        if not calls or any(call.tool_call_id not in decided for call in calls):
            return None
        return {call.interrupt_id: dict(decided[call.tool_call_id].decision) for call in calls}

    def _select(self) -> Any:
        return select(
            c.thread_id, c.checkpoint_id, c.tool_call_id, c.round, c.tool, c.decision, c.decided_by, c.decided_at,
            c.refused,
        )  # fmt: skip

    def _read(self, query: Any, doing: str) -> list[Decided]:
        try:
            with self.engine.connect() as connection:
                return [Decided(*row) for row in connection.execute(query)]
        except exc.SQLAlchemyError as error:
            raise store_error(error, self.engine.url, doing) from error


class DecisionRun:
    """The recorded decisions, as one run of a thread applies them: it notices a decision the run refused (the
    same call asked again at the same checkpoint) and marks it refused."""

    def __init__(self, book: DecisionBook, thread_id: str):
        self.book = book
        self.thread_id = thread_id
        self._applied: dict[tuple[str, str], Decided] = {}

    def answers(self, checkpoint_id: str, waiting: Sequence[Interrupt]) -> tuple[dict[str, Any], list[Interrupt]]:
        """The standing decisions of the waiting calls that have one (interrupt id → decision), and the requests
        of those that have none."""
        calls = [(request, WaitingCall.of(request)) for request in waiting]
        for request, call in calls:
            applied = self._applied.pop((checkpoint_id, call.tool_call_id), None)
            if applied is not None:
                problem = request.value.get("problem") if isinstance(request.value, Mapping) else None
                self.book.refuse(applied, str(problem or "asked again after this decision"))
        decided = self.book.decided(self.thread_id, checkpoint_id, [call.tool_call_id for _, call in calls])
        found: dict[str, Any] = {}
        missing: list[Interrupt] = []
        for request, call in calls:
            standing = decided.get(call.tool_call_id)
            if standing is None:
                missing.append(request)
                continue
            found[request.id] = dict(standing.decision)
            self._applied[(checkpoint_id, call.tool_call_id)] = standing
        return found, missing

    def standing(self, checkpoint_id: str, tool_call_id: str) -> Decided | None:
        return self._applied.get((checkpoint_id, tool_call_id))
