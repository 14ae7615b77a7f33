"""The composable reliability pieces of ToolPolicy: rate limit, circuit breaker, hedged requests, task budget.

Assertions count attempts, executions and states; the few time bounds are generous (shared machines)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from ironloop.demo.scripted_model import ScriptedChatModel
from ironloop.graph import build_agent
from ironloop.tools import ToolPolicy, TransientToolError
from ironloop.tools.budget import TaskBudget
from ironloop.tools.circuit import CircuitBreaker
from ironloop.tools.rate_limit import RateLimit
from langchain_core.tools import tool

from tests.helpers import call, observations, record, replay_model, turn

FAST = ToolPolicy(timeout_s=5, max_attempts=1, backoff_initial_s=0.001, backoff_max_s=0.002, jitter=0.0)


def run(agent, config=None):
    return agent.invoke({"messages": [("user", "go")]}, config)["messages"]


def test_rate_limit_makes_calls_wait_for_a_slot() -> None:
    @tool
    async def ping(x: int) -> str:
        """Answers at once."""
        return "pong"

    calls = [call("ping", x=i) for i in range(6)]
    policy = FAST.but(rate_limit=RateLimit(calls=3, per_s=1))
    seen = observations(run(build_agent(replay_model(turn(*calls)), [ping], policies={"ping": policy})))
    waits = sorted(record(seen[c["id"]])["attempts"][0].get("rate_limited_ms", 0) for c in calls)
    assert all(seen[c["id"]].content == "pong" for c in calls)  # waited, did not fail
    assert max(waits[:3]) < 300 and min(waits[3:]) > 500  # three at once, three in the next window


def test_rate_limit_caps_calls_in_flight() -> None:
    active, peak = 0, 0
    lock = threading.Lock()

    @tool
    async def work(x: int) -> str:
        """Takes a moment."""
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        await asyncio.sleep(0.05)
        with lock:
            active -= 1
        return "done"

    policy = FAST.but(rate_limit=RateLimit(calls=1000, max_concurrent=2))
    run(build_agent(replay_model(turn(*[call("work", x=i) for i in range(8)])), [work], policies={"work": policy}))
    assert peak == 2


def test_no_slot_before_the_deadline_fails_fast() -> None:
    @tool
    async def ping(x: int) -> str:
        """Answers at once."""
        return "pong"

    c1, c2 = call("ping", x=1), call("ping", x=2)
    policy = FAST.but(rate_limit=RateLimit(calls=1, per_s=60), deadline_s=0.5, fallback="later")
    started = time.monotonic()
    seen = observations(run(build_agent(replay_model(turn(c1, c2)), [ping], policies={"ping": policy})))
    assert time.monotonic() - started < 10  # did not wait the 60 s window
    outcomes = sorted(record(seen[c["id"]])["outcome"] for c in (c1, c2))
    assert outcomes == ["fallback", "ok"]
    loser = next(seen[c["id"]] for c in (c1, c2) if record(seen[c["id"]])["outcome"] == "fallback")
    assert "no rate-limit slot" in loser.content


def test_circuit_breaker_opens_fails_fast_then_a_probe_closes_it() -> None:
    healthy = threading.Event()
    executions = []

    @tool
    def flaky(x: int) -> str:
        """Down until healed."""
        executions.append(x)
        if not healthy.is_set():
            raise TransientToolError("503")
        return f"ok {x}"

    policy = FAST.but(circuit_breaker=CircuitBreaker(failures=3, cooldown_s=0.5), fallback="cached value")
    model = ScriptedChatModel(
        script=lambda ms: turn(call("flaky", x=len(ms))) if ms[-1].type == "human" else turn(content="done")
    )
    agent = build_agent(model, [flaky], policies={"flaky": policy})

    def one() -> dict:
        messages = run(agent)
        return record(next(m for m in messages if m.type == "tool"))

    first = [one() for _ in range(5)]
    assert len(executions) == 3  # calls 4 and 5 never reached the service
    assert [r["outcome"] for r in first] == ["fallback"] * 5
    assert "circuit open" in first[3]["reason"] and "circuit open" in first[4]["reason"]
    assert first[3]["attempts"][0]["outcome"] == "permanent_error"

    time.sleep(0.6)
    healthy.set()
    probe = one()
    assert probe["outcome"] == "ok" and probe["attempts"][0]["circuit"] == "half_open"
    after = one()
    assert after["outcome"] == "ok" and "circuit" not in after["attempts"][0]
    assert len(executions) == 5


def test_a_failed_probe_opens_the_circuit_again() -> None:
    executions = []

    @tool
    def down(x: int) -> str:
        """Always down."""
        executions.append(x)
        raise TransientToolError("503")

    policy = FAST.but(circuit_breaker=CircuitBreaker(failures=1, cooldown_s=0.3))
    model = ScriptedChatModel(
        script=lambda ms: turn(call("down", x=1)) if ms[-1].type == "human" else turn(content="done")
    )
    agent = build_agent(model, [down], policies={"down": policy})
    run(agent)
    run(agent)
    assert len(executions) == 1
    time.sleep(0.35)
    run(agent)  # the probe fails
    run(agent)  # refused again without a call
    assert len(executions) == 2


@pytest.mark.parametrize(("hedges", "winner"), [(1, "hedge"), (2, "hedge 2")])
def test_hedges_race_slow_tries_and_cancel_the_losers(hedges: int, winner: str) -> None:
    """The first ``hedges`` tries stall; the last hedge answers within the one attempt, and the stalled tries
    are cancelled."""
    tries: list[int] = []
    cancelled: list[int] = []

    @tool
    async def lookup(q: str) -> str:
        """The first tries stall, the last one answers."""
        n = len(tries)
        tries.append(n)
        if n < hedges:
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled.append(n)
                raise
        return f"answer from try {n}"

    c = call("lookup", q="x")
    policy = FAST.but(hedge_after_s=0.05, hedges=hedges)
    started = time.monotonic()
    seen = observations(run(build_agent(replay_model(turn(c)), [lookup], policies={"lookup": policy})))[c["id"]]
    assert time.monotonic() - started < 3
    assert seen.content == f"answer from try {hedges}"
    attempts = record(seen)["attempts"]
    assert len(attempts) == 1 and attempts[0]["hedge"] == winner
    time.sleep(0.05)
    assert tries == list(range(hedges + 1)) and sorted(cancelled) == list(range(hedges))


def test_hedges_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="hedges"):
        ToolPolicy(hedge_after_s=0.05, hedges=0)


def test_no_hedge_when_the_first_try_is_quick() -> None:
    @tool
    async def lookup(q: str) -> str:
        """Answers at once."""
        return "quick"

    c = call("lookup", q="x")
    seen = observations(
        run(build_agent(replay_model(turn(c)), [lookup], policies={"lookup": FAST.but(hedge_after_s=1)}))
    )
    assert "hedge" not in record(seen[c["id"]])["attempts"][0]


def test_growing_timeout_lets_a_slowed_service_answer() -> None:
    """A service slowed past the first timeout (a loaded host) is still reached: later attempts wait longer.
    With a fixed timeout every attempt is abandoned, which under load is a retry storm."""

    @tool
    async def slow(q: str) -> str:
        """Always answers after 0.3 s."""
        await asyncio.sleep(0.3)
        return "late but fine"

    c = call("slow", q="x")
    fixed = FAST.but(timeout_s=0.1, max_attempts=3)
    for policy, expected in ((fixed, None), (fixed.but(timeout_growth=5.0), "late but fine")):
        seen = observations(run(build_agent(replay_model(turn(c)), [slow], policies={"slow": policy})))[c["id"]]
        attempts = record(seen)["attempts"]
        if expected is None:
            assert [a["outcome"] for a in attempts] == ["timeout"] * 3
        else:
            assert seen.content == expected and [a["outcome"] for a in attempts] == ["timeout", "ok"]


def test_only_timed_out_attempts_grow_the_timeout() -> None:
    """Fast failures (a 503) show the service is answering: the next attempt keeps the short timeout."""
    answers = iter(["503", "503", "slow", "slow"])

    @tool
    async def flaky(q: str) -> str:
        """Fails fast twice, then answers after 0.3 s."""
        if next(answers) == "503":
            raise TransientToolError("503 Service Unavailable")
        await asyncio.sleep(0.3)
        return "late but fine"

    c = call("flaky", q="x")
    policy = FAST.but(timeout_s=0.1, timeout_growth=5.0, max_attempts=5)
    seen = observations(run(build_agent(replay_model(turn(c)), [flaky], policies={"flaky": policy})))[c["id"]]
    outcomes = [a["outcome"] for a in record(seen)["attempts"]]
    assert seen.content == "late but fine"
    assert outcomes == ["transient_error", "transient_error", "timeout", "ok"]


def test_timeout_and_hedge_delay_grow_per_timed_out_attempt() -> None:
    policy = ToolPolicy(timeout_s=0.1, timeout_growth=2.0, hedge_after_s=0.02, deadline_s=None)
    assert [round(policy.attempt_timeout(None, n), 3) for n in (0, 1, 2, 3)] == [0.1, 0.2, 0.4, 0.8]
    assert [round(policy.hedge_delay(n), 3) for n in (0, 1, 2)] == [0.02, 0.04, 0.08]
    deadline_at = time.monotonic() + 0.3
    assert policy.attempt_timeout(deadline_at, 3) <= 0.3  # never past the deadline
    with pytest.raises(ValueError, match="timeout_growth"):
        ToolPolicy(timeout_growth=0.5)


def test_hedging_is_refused_for_side_effects() -> None:
    with pytest.raises(ValueError, match="never for side_effect"):
        ToolPolicy(side_effect=True, hedge_after_s=0.1)


def test_retry_budget_caps_retries_across_the_task() -> None:
    attempts = []

    @tool
    def down(x: int) -> str:
        """Always transiently down."""
        attempts.append(x)
        raise TransientToolError("503")

    policy = FAST.but(max_attempts=10)
    agent = build_agent(
        replay_model(turn(call("down", x=1), call("down", x=2))),
        [down],
        policies={"down": policy},
        task_budget=TaskBudget(max_retries=3, deadline_s=None),
    )
    run(agent)
    assert len(attempts) == 2 + 3  # two first attempts, then only three retries in all


def test_task_deadline_ends_a_long_task_gracefully() -> None:
    @tool
    async def slow(x: int) -> str:
        """Takes 0.2 s."""
        await asyncio.sleep(0.2)
        return "slow"

    looping = ScriptedChatModel(script=lambda ms: turn(call("slow", x=len(ms))))
    agent = build_agent(looping, [slow], max_turns=100, task_budget=TaskBudget(deadline_s=0.6))
    started = time.monotonic()
    messages = run(agent)
    assert time.monotonic() - started < 10
    assert "the task deadline of 0.6 s ran out" in messages[-1].content
    assert sum(m.type == "ai" for m in messages) < 20
