"""The per-call runtime, through the real graph: timeouts, retries, classification, fallback, isolation."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from ironloop.graph import build_agent
from ironloop.tools import PermanentToolError, ToolPolicy, TransientToolError
from langchain_core.tools import tool

from tests.helpers import call, observations, record, replay_model, turn

FAST = ToolPolicy(timeout_s=1.0, max_attempts=4, backoff_initial_s=0.001, backoff_max_s=0.002, jitter=0.0)


def run(agent, text: str = "go", *, use_async: bool = False) -> list:
    state_in = {"messages": [("user", text)]}
    if use_async:
        return asyncio.run(agent.ainvoke(state_in))["messages"]
    return agent.invoke(state_in)["messages"]


class Flaky:
    """A tool body that fails with the given errors, in order, then answers."""

    def __init__(self, *errors: BaseException, answer: str = "fine"):
        self.errors = list(errors)
        self.answer = answer
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> str:
        with self.lock:
            self.calls += 1
            error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        return self.answer


def agent_with(body: Flaky, policy: ToolPolicy, *calls: dict, **kwargs):
    @tool
    def flaky(x: int) -> str:
        """A tool that fails as told."""
        return body()

    return build_agent(replay_model(turn(*calls)), [flaky], policies={"flaky": policy}, **kwargs)


@pytest.mark.parametrize("use_async", [False, True], ids=["invoke", "ainvoke"])
def test_transient_errors_are_retried_until_success(use_async: bool) -> None:
    body = Flaky(TransientToolError("503"), ConnectionResetError("reset"), answer="42")
    c = call("flaky", x=1)
    messages = run(agent_with(body, FAST, c), use_async=use_async)
    observation = observations(messages)[c["id"]]
    meta = record(observation)
    assert observation.content == "42" and observation.status == "success"
    assert body.calls == 3
    assert [a["outcome"] for a in meta["attempts"]] == ["transient_error", "transient_error", "ok"]
    assert meta["outcome"] == "ok"
    assert messages[-1].content == "done"


def test_backoff_doubles_and_is_capped_without_jitter() -> None:
    body = Flaky(*[TransientToolError("busy") for _ in range(4)])
    policy = ToolPolicy(timeout_s=1, max_attempts=5, backoff_initial_s=0.01, backoff_max_s=0.03, jitter=0.0)
    c = call("flaky", x=1)
    meta = record(observations(run(agent_with(body, policy, c)))[c["id"]])
    assert [a.get("retry_in_s") for a in meta["attempts"]] == [0.01, 0.02, 0.03, 0.03, None]


def test_jitter_only_shortens_waits() -> None:
    body = Flaky(*[TransientToolError("busy") for _ in range(5)])
    policy = ToolPolicy(timeout_s=1, max_attempts=6, backoff_initial_s=0.02, backoff_max_s=0.02, jitter=0.5)
    c = call("flaky", x=1)
    waits = [a["retry_in_s"] for a in record(observations(run(agent_with(body, policy, c)))[c["id"]])["attempts"][:-1]]
    assert all(0.01 <= w <= 0.02 for w in waits) and len(set(waits)) > 1


def test_exhausted_retries_become_an_error_observation() -> None:
    body = Flaky(*[TransientToolError("down") for _ in range(10)])
    c = call("flaky", x=1)
    messages = run(agent_with(body, FAST, c))
    observation = observations(messages)[c["id"]]
    assert observation.status == "error"
    assert "after 4 attempts" in observation.content and "temporary" in observation.content
    assert record(observation)["outcome"] == "error"
    assert body.calls == 4
    assert messages[-1].content == "done"  # the run went on


@pytest.mark.parametrize(
    ("error", "attempts"),
    [
        (PermanentToolError("no such customer"), 1),
        (ValueError("bad"), 1),
        (TypeError("bug"), 1),
        (httpx.HTTPStatusError("404", request=httpx.Request("GET", "http://x"), response=httpx.Response(404)), 1),
        (httpx.HTTPStatusError("503", request=httpx.Request("GET", "http://x"), response=httpx.Response(503)), 2),
        (httpx.ConnectError("refused"), 2),
        (TimeoutError("slow"), 2),
        (TransientToolError("try again"), 2),
    ],
)
def test_classification_decides_what_is_retried(error: BaseException, attempts: int) -> None:
    body = Flaky(error)
    c = call("flaky", x=1)
    meta = record(observations(run(agent_with(body, FAST, c)))[c["id"]])
    assert body.calls == attempts
    expected_first = "transient_error" if attempts == 2 else "permanent_error"
    if isinstance(error, TimeoutError):
        expected_first = "timeout"
    assert meta["attempts"][0]["outcome"] == expected_first


def test_permanent_error_observation_tells_the_model_not_to_repeat() -> None:
    body = Flaky(PermanentToolError("customer 7 does not exist"))
    c = call("flaky", x=1)
    observation = observations(run(agent_with(body, FAST, c)))[c["id"]]
    assert "customer 7 does not exist" in observation.content
    assert "fail the same way" in observation.content


def test_retry_after_is_honoured() -> None:
    body = Flaky(TransientToolError("429", retry_after_s=0.2))
    c = call("flaky", x=1)
    meta = record(observations(run(agent_with(body, FAST, c)))[c["id"]])
    assert meta["attempts"][0]["retry_in_s"] >= 0.2
    assert meta["outcome"] == "ok"


def test_retry_after_from_an_http_response_header() -> None:
    response = httpx.Response(429, headers={"Retry-After": "0.15"})
    body = Flaky(httpx.HTTPStatusError("429", request=httpx.Request("GET", "http://x"), response=response))
    c = call("flaky", x=1)
    meta = record(observations(run(agent_with(body, FAST, c)))[c["id"]])
    assert meta["attempts"][0]["retry_in_s"] >= 0.15 and meta["outcome"] == "ok"


def test_retry_after_past_the_deadline_fails_over_at_once() -> None:
    body = Flaky(TransientToolError("429", retry_after_s=60))
    policy = FAST.but(deadline_s=2.0, fallback="cached answer")
    c = call("flaky", x=1)
    started = time.monotonic()
    observation = observations(run(agent_with(body, policy, c)))[c["id"]]
    assert time.monotonic() - started < 1.5  # did not sleep 60 s, nor up to the deadline
    assert body.calls == 1
    assert record(observation)["outcome"] == "fallback"
    assert observation.content.startswith("[fallback]") and "cached answer" in observation.content


def test_fallback_value_and_callable() -> None:
    c1, c2 = call("flaky", x=1), call("other", x=2)

    @tool
    def flaky(x: int) -> str:
        """Always down."""
        raise TransientToolError("down")

    @tool
    def other(x: int) -> str:
        """Always refuses."""
        raise PermanentToolError("forbidden")

    agent = build_agent(
        replay_model(turn(c1, c2)),
        [flaky, other],
        policies={
            "flaky": FAST.but(fallback="yesterday's figure: 12"),
            "other": FAST.but(fallback=lambda error: f"default (because {error})"),
        },
    )
    seen = observations(run(agent))
    assert "yesterday's figure: 12" in seen[c1["id"]].content
    assert "not a real result" in seen[c1["id"]].content and "after 4 attempts" in seen[c1["id"]].content
    assert "default (because forbidden)" in seen[c2["id"]].content
    assert record(seen[c2["id"]])["attempts"][0]["outcome"] == "permanent_error"
    assert {record(seen[c["id"]])["outcome"] for c in (c1, c2)} == {"fallback"}


@pytest.mark.parametrize("use_async", [False, True], ids=["invoke", "ainvoke"])
def test_async_tool_timeout_cancels_the_attempt(use_async: bool) -> None:
    cancelled = []

    @tool
    async def stuck(x: int) -> str:
        """Never answers."""
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return "late"

    c = call("stuck", x=1)
    agent = build_agent(replay_model(turn(c)), [stuck], policies={"stuck": FAST.but(timeout_s=0.1, max_attempts=2)})
    started = time.monotonic()
    meta = record(observations(run(agent, use_async=use_async))[c["id"]])
    assert time.monotonic() - started < 10
    assert [a["outcome"] for a in meta["attempts"]] == ["timeout", "timeout"]
    assert cancelled == [1, 1]
    assert not any(a.get("abandoned_thread") for a in meta["attempts"])


@pytest.mark.parametrize("use_async", [False, True], ids=["invoke", "ainvoke"])
def test_sync_tool_timeout_abandons_the_thread(use_async: bool) -> None:
    release = threading.Event()

    @tool
    def blocking(x: int) -> str:
        """Blocks until released."""
        release.wait(10)
        return "late"

    c = call("blocking", x=1)
    agent = build_agent(
        replay_model(turn(c)), [blocking], policies={"blocking": FAST.but(timeout_s=0.1, max_attempts=1)}
    )
    try:
        started = time.monotonic()
        messages = run(agent, use_async=use_async)
        assert time.monotonic() - started < 5
    finally:
        release.set()
    meta = record(observations(messages)[c["id"]])
    assert meta["attempts"][0]["outcome"] == "timeout"
    assert meta["attempts"][0]["abandoned_thread"] is True
    assert messages[-1].content == "done"


def test_one_failing_call_neither_cancels_nor_reruns_its_siblings() -> None:
    runs = {"ok": 0, "slow_ok": 0, "bad": 0, "flaky": 0}
    lock = threading.Lock()

    def counted(name: str) -> None:
        with lock:
            runs[name] += 1

    @tool
    def ok(x: int) -> str:
        """Answers at once."""
        counted("ok")
        return "ok"

    @tool
    async def slow_ok(x: int) -> str:
        """Answers after a while."""
        counted("slow_ok")
        await asyncio.sleep(0.3)
        return "slow ok"

    @tool
    def bad(x: int) -> str:
        """Fails for good."""
        counted("bad")
        raise RuntimeError("boom")

    @tool
    def flaky(x: int) -> str:
        """Fails twice, then answers."""
        counted("flaky")
        if runs["flaky"] < 3:
            raise TransientToolError("again")
        return "flaky ok"

    calls = [call(n, x=1) for n in ("ok", "slow_ok", "bad", "flaky")]
    agent = build_agent(replay_model(turn(*calls)), [ok, slow_ok, bad, flaky], default_policy=FAST)
    seen = observations(run(agent))
    assert runs == {"ok": 1, "slow_ok": 1, "bad": 1, "flaky": 3}
    assert [seen[c["id"]].status for c in calls] == ["success", "success", "error", "success"]
    assert seen[calls[1]["id"]].content == "slow ok"


@pytest.mark.parametrize("use_async", [False, True], ids=["invoke", "ainvoke"])
def test_parallel_sync_calls_really_run_at_once(use_async: bool) -> None:
    all_in_flight = threading.Barrier(32, timeout=20)

    @tool
    def nap(x: int) -> str:
        """Waits until all 32 calls are running at once, then sleeps 0.2 s."""
        all_in_flight.wait()  # raises BrokenBarrierError unless 32 calls were in flight together
        time.sleep(0.2)
        return str(x)

    calls = [call("nap", x=i) for i in range(32)]
    agent = build_agent(replay_model(turn(*calls)), [nap], default_policy=FAST.but(timeout_s=30, max_attempts=1))
    started = time.monotonic()
    seen = observations(run(agent, use_async=use_async))
    elapsed = time.monotonic() - started
    assert [seen[c["id"]].content for c in calls] == [str(i) for i in range(32)]  # the default executor: 6 at once
    assert elapsed < 0.2 * 32 / 2  # far under 32× one call, even on a loaded machine


def test_concurrency_cap_is_respected() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    @tool
    def nap(x: int) -> str:
        """Sleeps briefly."""
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1
        return "z"

    agent = build_agent(
        replay_model(turn(*[call("nap", x=i) for i in range(12)])), [nap], default_policy=FAST, max_concurrency=4
    )
    run(agent, use_async=True)
    assert peak == 4


def test_plain_functions_are_tools() -> None:
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    async def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    c1, c2 = call("add", a=2, b=3), call("shout", text="hi")
    seen = observations(run(build_agent(replay_model(turn(c1, c2)), [add, shout])))
    assert seen[c1["id"]].content == "5" and seen[c2["id"]].content == "HI"


def test_attempt_events_stream_live() -> None:
    body = Flaky(TransientToolError("503"))
    c = call("flaky", x=1)
    agent = agent_with(body, FAST, c)
    events = [chunk for chunk in agent.stream({"messages": [("user", "go")]}, stream_mode="custom")]
    attempts = [e for e in events if e["event"] == "tool_attempt"]
    assert [(e["number"], e["outcome"]) for e in attempts] == [(1, "transient_error"), (2, "ok")]
    assert attempts[0]["retry_in_s"] is not None and attempts[0]["tool_call_id"] == c["id"]
    assert [e["outcome"] for e in events if e["event"] == "tool_call"] == ["ok"]


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        ToolPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        ToolPolicy(jitter=1.5)
    with pytest.raises(ValueError, match="timeout_s"):
        ToolPolicy(timeout_s=0)
    with pytest.raises(ValueError, match="backoff"):
        ToolPolicy(backoff_initial_s=2, backoff_max_s=1)


def test_policies_for_unknown_tools_are_a_clear_error() -> None:
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    with pytest.raises(ValueError, match="does not have: serach"):
        build_agent(replay_model(), [add], policies={"serach": ToolPolicy()})
