"""Exactly-once side effects: each unknown-outcome branch, retries after a lost response, replay on resume."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from ironloop.demo.services.faults import Fault, FaultInjector, FaultProfile
from ironloop.demo.services.payments import PaymentsLedger, create_payments_app
from ironloop.demo.services.server import ServiceThread
from ironloop.graph import build_agent
from ironloop.tools import ToolPolicy
from ironloop.tools.builtin import CHARGE_POLICY, charge_reconciler, make_charge_tool
from ironloop.tools.idempotency import (
    KeyEntry,
    KeyStatus,
    MemoryIdempotencyStore,
    Reconciled,
    Reconciliation,
    current_idempotency_key,
    idempotency_key_for,
)
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from tests.helpers import call, observations, record, replay_model, turn

FAST = dict(backoff_initial_s=0.001, backoff_max_s=0.002, jitter=0.0)


@pytest.fixture
def payments():
    """A payments service whose faults a test sets per request: ``injector.profile = ...``."""
    injector = FaultInjector(FaultProfile("none"))
    ledger = PaymentsLedger()
    with ServiceThread(create_payments_app(injector, ledger)) as service:
        yield service.url, injector, ledger


class FaultsOnce:
    """Serve ``fault`` to the first request only, then behave."""

    def __init__(self, injector: FaultInjector, fault: Fault):
        self.injector, self.fault, self.used = injector, fault, False
        original = injector.draw

        def draw(key: str) -> Fault:
            original(key)
            if not self.used:
                self.used = True
                return self.fault
            return Fault.NONE

        injector.draw = draw  # type: ignore[method-assign]


def charge_agent(url: str, policy: ToolPolicy, store=None, checkpointer=None, *calls):
    return build_agent(
        replay_model(turn(*calls)),
        [make_charge_tool(url)],
        policies={"charge_card": policy},
        idempotency_store=store or MemoryIdempotencyStore(),
        checkpointer=checkpointer,
    )


def run(agent, config=None) -> list:
    return agent.invoke({"messages": [("user", "charge")]}, config)["messages"]


def test_lost_response_is_retried_with_the_same_key(payments) -> None:
    url, injector, ledger = payments
    FaultsOnce(injector, Fault.COMMIT_THEN_DROP)
    c = call("charge_card", customer_id="cus_1", amount_cents=500)
    seen = observations(run(charge_agent(url, CHARGE_POLICY.but(**FAST), None, None, c)))[c["id"]]
    assert seen.content.startswith("Charged cus_1 500 cents: charge ch_000001")
    meta = record(seen)
    assert [a["outcome"] for a in meta["attempts"]] == ["transient_error", "ok"]
    assert len(ledger.snapshot()) == 1  # the retry hit the stored response, not a second charge
    assert ledger.snapshot()[0].idempotency_key == meta["idempotency_key"]


def test_hang_after_commit_times_out_and_the_retry_is_safe(payments) -> None:
    url, injector, ledger = payments
    FaultsOnce(injector, Fault.HANG_AFTER_COMMIT)
    c = call("charge_card", customer_id="cus_2", amount_cents=700)
    policy = CHARGE_POLICY.but(timeout_s=0.3, **FAST)
    meta = record(observations(run(charge_agent(url, policy, None, None, c)))[c["id"]])
    outcomes = [a["outcome"] for a in meta["attempts"]]  # a loaded machine may time out a retry too
    assert outcomes[0] == "timeout" and set(outcomes[1:-1]) <= {"timeout"} and outcomes[-1] == "ok", outcomes
    assert meta["outcome"] == "ok" and len(ledger.snapshot()) == 1


def test_without_keys_or_reconcile_an_unknown_outcome_is_never_repeated(payments) -> None:
    url, injector, ledger = payments
    FaultsOnce(injector, Fault.COMMIT_THEN_DROP)
    store = MemoryIdempotencyStore()
    blind = ToolPolicy(side_effect=True, max_attempts=5, **FAST)  # the service's key support is not declared
    c = call("charge_card", customer_id="cus_3", amount_cents=900)
    seen = observations(run(charge_agent(url, blind, store, None, c)))[c["id"]]
    assert seen.status == "error" and seen.content.startswith("Outcome unknown: charge_card may have happened")
    meta = record(seen)
    assert meta["outcome"] == "unknown" and len(meta["attempts"]) == 1
    assert len(ledger.snapshot()) == 1
    assert store.get(meta["idempotency_key"]).status is KeyStatus.UNKNOWN


def test_without_keys_a_failure_that_surely_did_nothing_is_retried(payments) -> None:
    url, injector, ledger = payments
    FaultsOnce(injector, Fault.HTTP_503)
    c = call("charge_card", customer_id="cus_4", amount_cents=100)
    blind = ToolPolicy(side_effect=True, max_attempts=3, **FAST)
    meta = record(observations(run(charge_agent(url, blind, None, None, c)))[c["id"]])
    assert [a["outcome"] for a in meta["attempts"]] == ["transient_error", "ok"]
    assert len(ledger.snapshot()) == 1


def test_reconcile_learns_that_it_happened(payments) -> None:
    url, injector, ledger = payments
    FaultsOnce(injector, Fault.COMMIT_THEN_DROP)
    policy = ToolPolicy(side_effect=True, reconcile=charge_reconciler(url), max_attempts=5, **FAST)
    c = call("charge_card", customer_id="cus_5", amount_cents=1200)
    seen = observations(run(charge_agent(url, policy, None, None, c)))[c["id"]]
    assert seen.status == "success" and "charge ch_000001" in seen.content
    meta = record(seen)
    assert meta["outcome"] == "ok" and meta["attempts"][-1].get("replayed") is True
    assert meta["reason"] == "reconciled: it had happened"
    assert len(ledger.snapshot()) == 1


def test_reconcile_learns_that_it_did_not_happen_and_it_runs_again() -> None:
    done: dict[str, int] = {}
    failures = iter([TimeoutError("lost before reaching the service")])

    @tool
    def book_seat(seat: str) -> str:
        """Book a seat."""
        error = next(failures, None)
        if error is not None:
            raise error
        done[current_idempotency_key()] = done.get(current_idempotency_key(), 0) + 1
        return f"booked {seat}"

    def reconcile(key: str, args: dict) -> Reconciliation:
        return Reconciliation(Reconciled.HAPPENED, "booked") if key in done else Reconciliation(Reconciled.NOT_HAPPENED)

    c = call("book_seat", seat="12A")
    agent = build_agent(
        replay_model(turn(c)),
        [book_seat],
        policies={"book_seat": ToolPolicy(side_effect=True, reconcile=reconcile, max_attempts=3, **FAST)},
    )
    seen = observations(run(agent))[c["id"]]
    assert seen.content == "booked 12A"
    assert list(done.values()) == [1]
    assert [a["outcome"] for a in record(seen)["attempts"]] == ["timeout", "ok"]


def test_reconcile_that_cannot_tell_leaves_it_unknown() -> None:
    runs = []

    @tool
    def send_email(to: str) -> str:
        """Send an email."""
        runs.append(to)
        raise httpx.ReadTimeout("no answer")

    c = call("send_email", to="ada@example.com")
    policy = ToolPolicy(side_effect=True, reconcile=lambda key, args: Reconciliation(Reconciled.UNKNOWN), **FAST)
    agent = build_agent(replay_model(turn(c)), [send_email], policies={"send_email": policy})
    seen = observations(run(agent))[c["id"]]
    assert seen.content.startswith("Outcome unknown: send_email may have happened")
    assert runs == ["ada@example.com"]


def test_a_call_left_started_by_a_dead_process_is_settled_not_rerun(payments) -> None:
    url, _, ledger = payments
    c = call("charge_card", customer_id="cus_6", amount_cents=300)
    thread = {"configurable": {"thread_id": "t-dead"}}
    key = idempotency_key_for("t-dead", "tools", c["id"])

    store = MemoryIdempotencyStore()
    store.begin(KeyEntry(key, "charge_card", c["id"], KeyStatus.STARTED, "t-dead", "tools"))
    blind = ToolPolicy(side_effect=True, **FAST)
    seen = observations(run(charge_agent(url, blind, store, None, c), thread))[c["id"]]
    assert seen.content.startswith("Outcome unknown") and ledger.snapshot() == []

    store = MemoryIdempotencyStore()
    store.begin(KeyEntry(key, "charge_card", c["id"], KeyStatus.STARTED, "t-dead", "tools"))
    seen = observations(run(charge_agent(url, CHARGE_POLICY.but(**FAST), store, None, c), thread))[c["id"]]
    assert seen.content.startswith("Charged cus_6 300 cents")  # keys honoured: safe to send again
    assert len(ledger.snapshot()) == 1


def test_a_completed_call_is_replayed_on_fork_not_executed(payments) -> None:
    url, _, ledger = payments
    c = call("charge_card", customer_id="cus_7", amount_cents=4200)
    store = MemoryIdempotencyStore()
    agent = charge_agent(url, CHARGE_POLICY.but(**FAST), store, InMemorySaver(), c)
    config = {"configurable": {"thread_id": "t-fork"}}
    first = observations(run(agent, config))[c["id"]]
    before_tools = next(s for s in agent.get_state_history(config) if s.next == ("tools",))
    forked = agent.invoke(None, before_tools.config)
    again = observations(forked["messages"])[c["id"]]
    assert again.content == first.content
    meta = record(again)
    assert meta["attempts"][0]["replayed"] is True and meta["outcome"] == "ok"
    assert len(ledger.snapshot()) == 1


def test_same_key_different_body_is_refused_by_the_service(payments) -> None:
    url, _, ledger = payments
    headers = {"Idempotency-Key": "ik_same"}
    first = httpx.post(f"{url}/charges", json={"customer_id": "a", "amount_cents": 1}, headers=headers)
    again = httpx.post(f"{url}/charges", json={"customer_id": "a", "amount_cents": 1}, headers=headers)
    other = httpx.post(f"{url}/charges", json={"customer_id": "a", "amount_cents": 2}, headers=headers)
    assert first.status_code == 200 and again.status_code == 200 and other.status_code == 422
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    assert len(ledger.snapshot()) == 1
    assert httpx.get(f"{url}/charges/ik_same").json()["id"] == first.json()["id"]
    assert httpx.get(f"{url}/charges/ik_other").status_code == 404


def test_the_key_is_stable_per_logical_call_and_readable_by_sync_tools() -> None:
    keys: list[str] = []

    @tool
    def write(x: int) -> str:
        """A sync write."""
        keys.append(current_idempotency_key())
        if len(keys) == 1:
            raise ConnectionRefusedError("not reached")
        return "ok"

    c1, c2 = call("write", x=1), call("write", x=2)
    policy = ToolPolicy(side_effect=True, max_attempts=3, **FAST)
    build_agent(replay_model(turn(c1)), [write], policies={"write": policy}).invoke(
        {"messages": [("user", "go")]}, {"configurable": {"thread_id": "k"}}
    )
    assert len(keys) == 2 and keys[0] == keys[1] == idempotency_key_for("k", "tools", c1["id"])
    assert idempotency_key_for("k", "tools", c2["id"]) != keys[0]
    with pytest.raises(RuntimeError, match="only tools with ToolPolicy"):
        current_idempotency_key()


def test_policy_options_need_side_effect() -> None:
    with pytest.raises(ValueError, match="side_effect"):
        ToolPolicy(honours_idempotency_key=True)


def test_orphaned_calls_are_answered_before_the_model_speaks_again(payments) -> None:
    from ironloop.demo.scripted_model import ScriptedChatModel
    from langchain_core.messages import AIMessage, ToolMessage

    url, _, ledger = payments
    seen_by_model: list[list] = []

    def script(messages):
        seen_by_model.append(list(messages))
        return AIMessage(content="ok")

    store = MemoryIdempotencyStore()
    charge = call("charge_card", customer_id="cus_9", amount_cents=100)
    lookup = call("charge_card", customer_id="cus_10", amount_cents=200)
    agent = build_agent(
        ScriptedChatModel(script=script),
        [make_charge_tool(url)],
        policies={"charge_card": CHARGE_POLICY},
        checkpointer=InMemorySaver(),
        idempotency_store=store,
    )
    config = {"configurable": {"thread_id": "wedged"}}
    # A run stopped mid-turn: the model asked for two charges; one had completed (the ledger knows), one never ran.
    key = idempotency_key_for("wedged", "tools", charge["id"])
    store.begin(KeyEntry(key, "charge_card", charge["id"], KeyStatus.STARTED, "wedged", "tools"))
    store.finish(key, KeyStatus.COMPLETED, "Charged cus_9 100 cents: charge ch_9 succeeded.")
    agent.update_state(
        config,
        {"messages": [("user", "charge them"), AIMessage(content="", tool_calls=[charge, lookup])]},
        as_node="model",
    )
    state = agent.invoke({"messages": [("user", "and now?")]}, config)  # new input instead of a resume

    history = seen_by_model[-1]
    kinds = [type(m).__name__ for m in history]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "ToolMessage", "HumanMessage"]
    answers = {m.tool_call_id: m for m in history if isinstance(m, ToolMessage)}
    assert answers[charge["id"]].content == "Charged cus_9 100 cents: charge ch_9 succeeded."
    assert answers[lookup["id"]].content.startswith("Not run: this charge_card call was interrupted")
    assert ledger.snapshot() == []  # nothing was executed behind the user's back
    assert state["messages"][-1].content == "ok"


class FlakyBooking:
    """A booking service that loses the first ``lost`` requests before they reach it, and a reconcile that says
    so ("not happened") until the booking exists."""

    def __init__(self, lost: int):
        self.lost = lost
        self.done: dict[str, int] = {}
        self.asked = 0

        @tool
        def book_seat(seat: str) -> str:
            """Book a seat."""
            if self.lost > 0:
                self.lost -= 1
                raise TimeoutError("lost before reaching the service")
            self.done[current_idempotency_key()] = self.done.get(current_idempotency_key(), 0) + 1
            return f"booked {seat}"

        self.tool = book_seat

    def reconcile(self, key: str, args: dict) -> Reconciliation:
        self.asked += 1
        if key in self.done:
            return Reconciliation(Reconciled.HAPPENED, "booked")
        return Reconciliation(Reconciled.NOT_HAPPENED)


def test_a_write_that_surely_did_not_happen_is_retried_within_the_policys_attempts() -> None:
    """Issue 12, item 14: after reconcile said "did not happen" twice, a fixed MAX_ROUNDS = 2 gave up with "Outcome
    unknown ... may have happened", however many attempts the policy allowed."""
    booking = FlakyBooking(lost=3)
    store = MemoryIdempotencyStore()
    c = call("book_seat", seat="12A")
    policy = ToolPolicy(side_effect=True, reconcile=booking.reconcile, max_attempts=5, **FAST)
    agent = build_agent(replay_model(turn(c)), [booking.tool], policies={"book_seat": policy}, idempotency_store=store)
    seen = observations(run(agent))[c["id"]]
    assert seen.content == "booked 12A", seen.content
    assert list(booking.done.values()) == [1] and booking.asked == 3
    assert [a["outcome"] for a in record(seen)["attempts"]] == ["timeout", "timeout", "timeout", "ok"]


def test_a_write_that_never_got_through_ends_plainly_not_done_and_recorded_failed() -> None:
    booking = FlakyBooking(lost=99)
    store = MemoryIdempotencyStore()
    c = call("book_seat", seat="12A")
    policy = ToolPolicy(side_effect=True, reconcile=booking.reconcile, max_attempts=4, reconcile_rounds=3, **FAST)
    agent = build_agent(replay_model(turn(c)), [booking.tool], policies={"book_seat": policy}, idempotency_store=store)
    seen = observations(run(agent))[c["id"]]
    assert seen.status == "error" and "did not happen" in seen.content, seen.content
    assert "may have happened" not in seen.content and "Outcome unknown" not in seen.content
    assert record(seen)["outcome"] == "error" and len(record(seen)["attempts"]) == 3  # three rounds of one attempt
    entry = store.get(record(seen)["idempotency_key"])
    assert entry is not None and entry.status == KeyStatus.FAILED and booking.done == {}


def lost_write(name: str = "book_seat"):
    """A write whose every attempt times out before reaching its service (so ``reconcile`` decides)."""

    def book(seat: str) -> str:
        """Book a seat."""
        raise TimeoutError("no answer")

    return tool(name)(book)


@pytest.mark.parametrize(
    ("reconcile", "why"),
    [
        (lambda key, args: 1 / 0, "reconcile failed: division by zero"),
        (lambda key, args: "yes", "reconcile returned 'yes', not a Reconciliation"),
    ],
    ids=["raises", "unexpected"],
)
def test_a_reconcile_that_fails_is_recorded_not_silent(reconcile, why: str, caplog) -> None:
    """Issue 12, item 15: a reconcile that raised or answered something else left "unknown" with no trace."""
    store = MemoryIdempotencyStore()
    c = call("book_seat", seat="1A")
    policy = ToolPolicy(side_effect=True, reconcile=reconcile, max_attempts=1, **FAST)
    agent = build_agent(replay_model(turn(c)), [lost_write()], policies={"book_seat": policy}, idempotency_store=store)
    with caplog.at_level("WARNING", logger="ironloop.tools.exactly_once"):
        seen = observations(run(agent))[c["id"]]
    assert record(seen)["outcome"] == "unknown" and why in record(seen)["reason"]
    entry = store.get(record(seen)["idempotency_key"])
    assert entry is not None and entry.status == KeyStatus.UNKNOWN and why in (entry.result or "")
    assert any(why in message for message in caplog.messages)


def test_a_sync_reconcile_runs_off_the_event_loop_and_is_cut_by_the_timeout() -> None:
    """Issue 12, item 15: a sync reconcile ran on the event loop: a blocking one stalled every call and no timeout
    could stop it."""
    threads: list[str] = []

    def slow_reconcile(key: str, args: dict) -> Reconciliation:
        threads.append(threading.current_thread().name)
        time.sleep(5)
        return Reconciliation(Reconciled.NOT_HAPPENED)

    c = call("book_seat", seat="1A")
    policy = ToolPolicy(side_effect=True, reconcile=slow_reconcile, max_attempts=1, timeout_s=0.3, **FAST)
    agent = build_agent(replay_model(turn(c)), [lost_write()], policies={"book_seat": policy})
    started = time.monotonic()
    seen = observations(run(agent))[c["id"]]
    assert time.monotonic() - started < 4.5  # the 5 s reconcile was abandoned at its timeout
    assert record(seen)["outcome"] == "unknown" and "reconcile gave no answer within 0.3 s" in record(seen)["reason"]
    assert threads and threads[0].startswith("ironloop-tool-")


def test_a_snapshot_taken_before_the_first_attempt_is_handed_to_reconcile() -> None:
    """Issue 12, item 15: a service without idempotency keys; "the seat is Ada's" means the booking happened only
    if it was not hers before the call."""
    seats = {"1A": "bob", "2B": "ada"}
    told: list[object] = []

    @tool
    def book_seat(seat: str) -> str:
        """Book a seat for Ada."""
        seats[seat] = "ada"
        raise TimeoutError("the answer was lost")

    async def snapshot(key: str, args: dict) -> str:
        return seats[args["seat"]]

    def reconcile(key: str, args: dict, before: object) -> Reconciliation:
        told.append(before)
        if seats[args["seat"]] == "ada" and before != "ada":
            return Reconciliation(Reconciled.HAPPENED, f"booked {args['seat']}")
        return Reconciliation(Reconciled.UNKNOWN)  # it was already hers: this call may have done nothing

    c, d = call("book_seat", seat="1A"), call("book_seat", seat="2B")
    policy = ToolPolicy(side_effect=True, reconcile=reconcile, snapshot=snapshot, max_attempts=1, **FAST)
    agent = build_agent(replay_model(turn(c, d)), [book_seat], policies={"book_seat": policy})
    seen = observations(run(agent))
    assert sorted(told, key=str) == ["ada", "bob"]
    assert seen[c["id"]].content == "booked 1A" and record(seen[c["id"]])["outcome"] == "ok"
    assert record(seen[d["id"]])["outcome"] == "unknown"


def test_reconcile_waits_the_policys_delay_after_a_timeout() -> None:
    asked_after: list[float] = []
    failed_at: list[float] = []

    def book(seat: str) -> str:
        """Book a seat."""
        failed_at.append(time.monotonic())
        raise TimeoutError("no answer")

    def reconcile(key: str, args: dict) -> Reconciliation:
        asked_after.append(time.monotonic() - failed_at[-1])
        return Reconciliation(Reconciled.UNKNOWN)

    c = call("book_seat", seat="1A")
    policy = ToolPolicy(side_effect=True, reconcile=reconcile, reconcile_delay_s=0.5, max_attempts=1, **FAST)
    agent = build_agent(replay_model(turn(c)), [tool("book_seat")(book)], policies={"book_seat": policy})
    run(agent)
    assert len(asked_after) == 1 and asked_after[0] >= 0.5


def test_the_reconcile_types_are_public() -> None:
    import ironloop

    assert ironloop.Reconciled is Reconciled and ironloop.Reconciliation is Reconciliation
    assert {"Reconcile", "Reconciled", "Reconciliation", "Snapshot"} <= set(ironloop.__all__)
    assert ironloop.Snapshot is not None and ironloop.Reconcile is not None
