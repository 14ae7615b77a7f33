"""Exactly-once across crashes: SIGKILL the agent at seeded random moments of payment tasks, resume it, check.

The harness is `benchmarks.crash` (one implementation for CI and ``ironloop bench crash``): workers forked from
a warm zygote run the demo agent on SQL checkpoints; the payments service runs in this process and its ledger is
the truth. Kills land inside charge_card calls, right after the service committed a charge (before the answer
left it), while a committed charge hangs, in checkpoint writes, in start-up and between steps. Every task is
resumed in new processes until its thread is finished, then checked: the right answer, one charge per logical
call, no orphaned call, an idempotency ledger that agrees with the thread and the service.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ironloop.benchmarks.crash import CrashFigures, CrashPlan, run_crash
from ironloop.demo.services.faults import Fault, FaultInjector, FaultProfile
from ironloop.demo.services.payments import PaymentsLedger, create_payments_app
from ironloop.demo.services.server import ServiceThread
from ironloop.graph import build_agent
from ironloop.tools.builtin import CHARGE_POLICY, make_charge_tool
from ironloop.tools.idempotency import KeyStatus, MemoryIdempotencyStore

from tests.helpers import call, observations, record, replay_model, turn

SQLITE_KILLS = 80
POSTGRES_KILLS = 16


def check(figures: CrashFigures, kills: int) -> None:
    """Exactly-once held across every kill (the figures are printed: ``pytest -s`` shows them)."""
    print(f"\n{figures.format()}")
    assert figures.duplicate_charges == 0, figures.problems
    assert figures.orphaned_calls == 0, figures.problems
    assert figures.ledger_inconsistencies == 0, figures.problems
    assert figures.unaccounted_charges == 0, figures.problems
    assert figures.wrong_answers == 0, figures.problems
    assert figures.wedged_threads == 0 and figures.worker_errors == 0, figures.problems
    assert figures.ok, figures.problems
    assert figures.correct_answers + figures.honest_answers == figures.tasks
    assert figures.kills >= kills


@pytest.mark.timeout(120)
def test_sigkill_at_random_moments_never_charges_twice_sqlite(tmp_path: Path) -> None:
    plan = CrashPlan(kills=SQLITE_KILLS, seed=20260311, db_url=f"sqlite:///{tmp_path / 'crash.db'}")
    figures = run_crash(plan, tmp_path)
    check(figures, SQLITE_KILLS)
    # The kills landed where it matters (at 80 kills, each of these is all but certain to be hit).
    assert figures.in_side_effect_call > 0
    assert figures.kills_by_moment["after_commit"] > 0
    assert figures.kills_by_moment["checkpoint_write"] > 0


@pytest.mark.timeout(120)
def test_sigkill_at_random_moments_never_charges_twice_postgresql(postgres_url: str, tmp_path: Path) -> None:
    plan = CrashPlan(kills=POSTGRES_KILLS, seed=20260312, db_url=postgres_url)
    check(run_crash(plan, tmp_path), POSTGRES_KILLS)


def test_a_charge_whose_answer_was_lost_is_not_reported_failed_when_the_retries_meet_503s() -> None:
    injector = FaultInjector(FaultProfile("none"))
    faults = iter([Fault.COMMIT_THEN_DROP])  # the first request charges, then its answer is lost; then 503s
    injector.draw = lambda key: next(faults, Fault.HTTP_503)  # type: ignore[method-assign]
    ledger, store = PaymentsLedger(), MemoryIdempotencyStore()
    with ServiceThread(create_payments_app(injector, ledger)) as service:
        charge = call("charge_card", customer_id="cus_1", amount_cents=500)
        agent = build_agent(
            replay_model(turn(charge)),
            [make_charge_tool(service.url)],
            policies={"charge_card": CHARGE_POLICY.but(backoff_initial_s=0.001, backoff_max_s=0.002, jitter=0.0)},
            idempotency_store=store,
        )
        seen = observations(agent.invoke({"messages": [("user", "charge")]})["messages"])[charge["id"]]
    assert len(ledger.snapshot()) == 1  # the customer was charged
    entry = store.get(record(seen)["idempotency_key"])
    assert entry is not None and entry.status is not KeyStatus.FAILED, seen.content
    assert not str(seen.content).startswith("Error: charge_card failed"), seen.content
    assert str(seen.content).startswith("Outcome unknown: charge_card may have happened"), seen.content
