"""Hostile bytes at the database boundary (issue 12, item 11), on SQLite, PostgreSQL and MariaDB.

A NUL in a side-effect call's result, or a tool call id over 255 characters, gave a raw ``DataError`` when the
call's completion was recorded, on every resume (the charge already made); a NUL in one tool's error text made
PostgreSQL refuse the ledger's whole batch; a lone surrogate killed the ledger's writer thread (then nothing more
was recorded). Values are now fitted to their columns (`checkpoints.fit`), a batch the database still refuses is
written row by row, and a thread with such a call runs to its end and stays finished.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from ironloop.checkpoints import InvalidKeyError, SQLAlchemySaver
from ironloop.checkpoints.fit import TEXT_LIMIT_BYTES, fit_json, fit_key, fit_text
from ironloop.checkpoints.idempotency import SQLIdempotencyStore
from ironloop.checkpoints.ledger import AttemptLedger
from ironloop.checkpoints.schema import tool_approvals, tool_attempts, tool_calls
from ironloop.graph.agent import build_agent
from ironloop.tools.approval import ApprovalRecord, Decision
from ironloop.tools.idempotency import KeyEntry, KeyStatus, idempotency_key_for
from ironloop.tools.policy import ToolPolicy
from ironloop.tools.records import Attempt, AttemptOutcome, CallOutcome, CallRecord
from langchain_core.tools import tool
from sqlalchemy import Engine, func, select

from tests.helpers import observations, replay_model, turn

HOSTILE = "refused\x00 by upstream \ud800 (lone surrogate)"
LONG_ID = "call_" + "x" * 295
"""A tool call id of 300 characters: over every ``VARCHAR(255)``."""


@pytest.fixture
def saver(checkpoint_db_url: str) -> Any:
    with SQLAlchemySaver.from_url(checkpoint_db_url) as saver:
        saver.setup()
        yield saver


def healthy_call(thread: str, n: int) -> CallRecord:
    record = CallRecord(tool="search", tool_call_id=f"c{n}", thread_id=thread, outcome=CallOutcome.OK, ms=3.0)
    record.attempts.append(Attempt(number=1, outcome=AttemptOutcome.OK, started_at=time.time(), ms=3.0))
    return record


def feed(ledger: AttemptLedger, record: CallRecord) -> None:
    for attempt in record.attempts:
        ledger.on_attempt(record, attempt)
    ledger.on_call_end(record)


def count(engine: Engine, table: Any, thread: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).where(table.c.thread_id == thread)).scalar_one())


def test_a_hostile_call_costs_no_row_of_its_batch(saver: Any) -> None:
    thread = f"t-{uuid.uuid4().hex[:8]}"
    ledger = AttemptLedger(saver.engine, flush_interval_s=1.0)  # everything below lands in one batch
    try:
        for n in range(5):
            feed(ledger, healthy_call(thread, n))
        hostile = CallRecord(
            tool="t" * 300, tool_call_id=LONG_ID, thread_id=thread, outcome=CallOutcome.ERROR, reason=HOSTILE, ms=1.0
        )
        hostile.attempts.append(
            Attempt(
                number=1,
                outcome=AttemptOutcome.PERMANENT_ERROR,
                started_at=time.time(),
                ms=1.0,
                error_class="Upstream\x00Error",
                error=HOSTILE,
                retry_in_s=float("inf"),
            )
        )
        feed(ledger, hostile)
        ledger.on_approval(
            ApprovalRecord(
                tool="charge_card",
                tool_call_id=LONG_ID,
                thread_id=thread,
                checkpoint_ns="",
                decision=Decision("edit", by="ops\x00", reason=HOSTILE, args={"amount": float("nan"), "n": HOSTILE}),
                reason_asked="always",
                mode="always",
                args={"amount": float("inf"), "note": HOSTILE},
            )
        )
        assert ledger.flush(timeout_s=30), "the ledger's writer did not answer (a dead writer thread?)"
        assert (ledger.dropped, ledger.written) == (0, 13)
    finally:
        ledger.close()
    assert count(saver.engine, tool_calls, thread) == 6
    assert count(saver.engine, tool_attempts, thread) == 6
    assert count(saver.engine, tool_approvals, thread) == 1
    with saver.engine.connect() as connection:
        call_row = (
            connection.execute(
                select(tool_calls).where(
                    tool_calls.c.tool_call_id != "c0", tool_calls.c.thread_id == thread, tool_calls.c.outcome == "error"
                )
            )
            .mappings()
            .one()
        )
        attempt_row = (
            connection.execute(
                select(tool_attempts).where(
                    tool_attempts.c.outcome == "permanent_error", tool_attempts.c.thread_id == thread
                )
            )
            .mappings()
            .one()
        )
        approval = (
            connection.execute(select(tool_approvals).where(tool_approvals.c.thread_id == thread)).mappings().one()
        )
    assert call_row["tool_call_id"] == attempt_row["tool_call_id"] == fit_key(LONG_ID, 255)  # they still join
    assert len(call_row["tool_call_id"]) == 255 and call_row["tool_call_id"].startswith("call_xxx")
    assert attempt_row["error_text"] == HOSTILE.replace("\x00", "\ufffd").replace("\ud800", "\ufffd")
    assert attempt_row["details"] == {"retry_in_s": "inf"}
    assert approval["edited_args"] == {"amount": "nan", "n": fit_text(HOSTILE)}


def test_a_row_the_database_refuses_costs_only_itself(saver: Any) -> None:
    thread = f"t-{uuid.uuid4().hex[:8]}"
    ledger = AttemptLedger(saver.engine, flush_interval_s=1.0)
    try:
        for n in range(5):
            feed(ledger, healthy_call(thread, n))
        broken = healthy_call(thread, 9)
        broken.attempts[0].number = None  # type: ignore[assignment]  # NOT NULL: no fitting makes this storable
        ledger.on_attempt(broken, broken.attempts[0])
        assert ledger.flush(timeout_s=30)
        assert (ledger.dropped, ledger.written) == (1, 10)
    finally:
        ledger.close()
    assert count(saver.engine, tool_attempts, thread) == 5 and count(saver.engine, tool_calls, thread) == 5


def test_the_idempotency_ledger_records_hostile_ids_and_results(saver: Any) -> None:
    store = SQLIdempotencyStore(saver.engine)
    thread = f"t-{uuid.uuid4().hex[:8]}"
    first, second = LONG_ID, LONG_ID[:-1] + "y"  # same 299-character start
    keys = [idempotency_key_for(thread, "tools", i) for i in (first, second)]
    for key, tool_call_id in zip(keys, (first, second), strict=True):
        entry = store.begin(KeyEntry(key, "charge\x00card", tool_call_id, KeyStatus.STARTED, thread, "tools"))
        assert entry.fresh
    store.finish(keys[0], KeyStatus.COMPLETED, f"charged {HOSTILE}")
    big = "é" * 40_000  # 80,000 bytes: more than MySQL's TEXT holds
    store.finish(keys[1], KeyStatus.COMPLETED, big)
    one, two = store.get(keys[0]), store.get(keys[1])
    assert one is not None and two is not None
    assert one.tool_call_id != two.tool_call_id and len(one.tool_call_id) == 255
    assert one.status is KeyStatus.COMPLETED and one.result == "charged " + fit_text(HOSTILE)
    assert two.result is not None and two.result.startswith("é" * 1000) and two.result.endswith("not recorded]")
    assert len(two.result.encode()) <= TEXT_LIMIT_BYTES
    assert not store.begin(KeyEntry(keys[0], "charge_card", first, KeyStatus.STARTED, thread, "tools")).fresh


def test_a_side_effect_with_a_nul_and_a_long_id_completes_once_and_stays_finished(saver: Any) -> None:
    executed: list[str] = []

    @tool
    def charge(amount_cents: int) -> str:
        """Charge."""
        executed.append("charge")
        return f"charged {amount_cents}\x00 (receipt \ud800)"

    ledger = AttemptLedger(saver.engine)
    thread = f"t-{uuid.uuid4().hex[:8]}"
    config = {"configurable": {"thread_id": thread}}
    try:
        agent = build_agent(
            replay_model(turn({"name": "charge", "args": {"amount_cents": 5}, "id": LONG_ID})),
            [charge],
            policies={"charge": ToolPolicy(side_effect=True, max_attempts=1)},
            checkpointer=saver,
            listeners=[ledger],
        )
        state = agent.invoke({"messages": [("user", "charge")]}, config)
        seen = observations(state["messages"])[LONG_ID]
        assert seen.status == "success" and seen.content.startswith("charged 5")
        assert not agent.get_state(config).next  # finished
        again = agent.invoke(None, config)  # a resume: nothing runs again
        assert again["messages"][-1].content == "done" and executed == ["charge"]
        assert ledger.flush(timeout_s=30) and ledger.dropped == 0
    finally:
        ledger.close()
    key = idempotency_key_for(thread, "tools", LONG_ID)
    entry = SQLIdempotencyStore(saver.engine).get(key)
    assert entry is not None and entry.status is KeyStatus.COMPLETED and entry.result == fit_text(seen.content)
    assert count(saver.engine, tool_calls, thread) == 1


@pytest.mark.parametrize("thread", ["a\x00b", "a\ud800b"])
def test_a_thread_id_no_database_stores_is_refused_clearly(saver: Any, thread: str) -> None:
    with pytest.raises(InvalidKeyError, match="NUL or a lone surrogate"):
        saver.get_tuple({"configurable": {"thread_id": thread}})


def test_fitting() -> None:
    assert fit_key("abc", 255) == "abc" and fit_key("a\x00", 255) == "a\ufffd"
    long_a, long_b = "a" * 300, "a" * 299 + "b"
    assert len(fit_key(long_a, 255)) == 255 and fit_key(long_a, 255) != fit_key(long_b, 255)
    assert fit_key(long_a, 255) == fit_key("a" * 300, 255)
    cut = fit_text("😀" * 20_000)  # 80,000 bytes: 16,363 emoji kept whole, then the note
    assert fit_text("ok") == "ok" and cut.endswith("😀… [3637 more characters not recorded]")
    assert len(cut.encode()) <= TEXT_LIMIT_BYTES
    assert fit_json({"a\x00": [float("nan"), 1, True, None, {"b": float("-inf")}, ("t",), b"x"]}) == {
        "a\ufffd": ["nan", 1, True, None, {"b": "-inf"}, ["t"], "b'x'"]
    }
