"""The built-in tools, the local search service and the error classification helpers."""

from __future__ import annotations

import asyncio

import httpx
import httpx2
import pytest
from ironloop.demo.services.faults import PROFILES, Fault, FaultInjector, FaultProfile
from ironloop.tools.builtin import make_search_tool
from ironloop.tools.calc import evaluate
from ironloop.tools.errors import (
    PermanentToolError,
    TransientToolError,
    is_transient,
    parse_retry_after,
    raise_for_status,
)


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("2160000 + 513000", 2673000),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("2 ** 10", 1024),
        ("-3 + 1_000", 997),
        ("10 // 3", 3),
        ("10 % 3", 1),
        ("2^3", 8),
        ("1e3 + 1", 1001),
    ],
)
def test_calc_evaluates_arithmetic(expr: str, value: float) -> None:
    assert evaluate(expr) == value


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("__import__('os')", "unsupported"),
        ("1/0", "division by zero"),
        ("2 ** 10000", "exponent"),
        ("9 ** 999 ** 2", "exponent"),
        ("", "empty"),
        ("1 +", "not an arithmetic"),
        ("x + 1", "unsupported"),
        ("'a' * 3", "unsupported"),
        ("1" * 600, "longer"),
    ],
)
def test_calc_refuses_everything_else(expr: str, reason: str) -> None:
    with pytest.raises(PermanentToolError, match=reason):
        evaluate(expr)


def test_search_tool_against_the_service(search_service) -> None:
    service, _ = search_service
    search = make_search_tool(service.url)
    text = asyncio.run(search.ainvoke({"query": "Lyon population"}))
    assert text.splitlines()[0].startswith("Lyon population: Lyon (France) has a population of 513,000")
    with pytest.raises(PermanentToolError, match="no results"):
        asyncio.run(search.ainvoke({"query": "Atlantis"}))


def test_search_tool_translates_faults() -> None:
    import ironloop.demo.services.search as search_app
    from ironloop.demo.services.server import ServiceThread

    for profile, expected in [
        (FaultProfile("all-503", ((Fault.HTTP_503, 1.0),)), TransientToolError),
        (FaultProfile("all-429", ((Fault.HTTP_429, 1.0),), retry_after_s=2), TransientToolError),
        (FaultProfile("all-bad", ((Fault.MALFORMED, 1.0),)), TransientToolError),
        (FaultProfile("all-reset", ((Fault.RESET, 1.0),)), httpx2.RemoteProtocolError),
        (FaultProfile("all-outage", (), outage=(0.0, 60.0)), TransientToolError),
    ]:
        with ServiceThread(search_app.create_search_app(FaultInjector(profile))) as service:
            with pytest.raises(expected) as caught:
                asyncio.run(make_search_tool(service.url).ainvoke({"query": "Paris"}))
            if profile.name == "all-429":
                assert caught.value.retry_after_s == 2 and caught.value.status_code == 429


def test_fault_draws_are_seeded_and_per_key() -> None:
    a, b = FaultInjector(PROFILES["reference"].search, seed=5), FaultInjector(PROFILES["reference"].search, seed=5)
    seq_a = [a.draw("search:paris") for _ in range(50)]
    for _ in range(7):
        b.draw("search:lyon")  # interleaved requests for another key do not shift the sequence
    assert [b.draw("search:paris") for _ in range(50)] == seq_a
    assert seq_a != [FaultInjector(PROFILES["reference"].search, seed=6).draw("search:paris") for _ in range(50)]


def test_reference_profile_rates() -> None:
    injector = FaultInjector(PROFILES["reference"].search, seed=1)
    draws = [injector.draw(f"k{i}") for i in range(20000)]
    assert abs(draws.count(Fault.HTTP_503) / 20000 - 0.45) < 0.02
    assert abs(draws.count(Fault.DELAY) / 20000 - 0.15) < 0.02


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_raise_for_status_splits_transient_from_permanent() -> None:
    request = httpx.Request("GET", "http://svc/x")
    raise_for_status(httpx.Response(200, request=request), what="svc")
    with pytest.raises(TransientToolError, match="HTTP 503") as caught:
        raise_for_status(
            httpx.Response(503, json={"error": "down"}, headers={"Retry-After": "4"}, request=request), what="svc"
        )
    assert caught.value.retry_after_s == 4 and "(down)" in str(caught.value)
    with pytest.raises(PermanentToolError, match="HTTP 404"):
        raise_for_status(httpx.Response(404, request=request), what="svc")


def test_is_transient_table() -> None:
    assert is_transient(httpx.ReadTimeout("t")) and is_transient(ConnectionRefusedError())
    assert not is_transient(ValueError()) and not is_transient(PermanentToolError("x"))
    assert not is_transient(httpx.UnsupportedProtocol("ftp"))


def test_hang_and_trickle_are_cut_by_the_attempt_timeout() -> None:
    import ironloop.demo.services.search as search_app
    from ironloop.demo.services.server import ServiceThread
    from ironloop.graph import build_agent
    from ironloop.tools import ToolPolicy

    from tests.helpers import call, observations, record, replay_model, turn

    for fault in (Fault.HANG, Fault.TRICKLE):
        profile = FaultProfile(str(fault), ((fault, 1.0),), trickle_s=5.0)
        with ServiceThread(search_app.create_search_app(FaultInjector(profile))) as service:
            c = call("search", query="Paris population")
            policy = ToolPolicy(timeout_s=0.2, max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.01)
            agent = build_agent(replay_model(turn(c)), [make_search_tool(service.url)], policies={"search": policy})
            seen = observations(agent.invoke({"messages": [("user", "go")]})["messages"])[c["id"]]
            assert [a["outcome"] for a in record(seen)["attempts"]] == ["timeout", "timeout"], fault
