"""The offline demo: the reference scenario against the faulty search service, from Python and the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from ironloop.demo.agent import build_demo_agent
from ironloop.demo.scenario import DEMO_QUESTION, places_in
from ironloop.demo.tasks import EXPECTED_MODEL_CALLS, corpus_population, run_demo_tasks


def test_scenario_understands_its_question() -> None:
    assert places_in(DEMO_QUESTION) == ["Paris", "Lyon"]
    assert places_in("population of Rome, Milan and Nice?") == ["Rome", "Milan", "Nice"]
    assert corpus_population("Lyon") == 513_000


def test_demo_tasks_succeed_under_the_reference_faults(reference_search_service) -> None:
    service, injector = reference_search_service
    stats = asyncio.run(run_demo_tasks(build_demo_agent(service.url), 150, concurrency=10))
    summary = stats.summary()
    assert injector.counts["http_503"] > 50 and injector.counts["delay"] > 10  # the faults were real
    assert summary["success_rate"] >= 0.97
    successes = [r for r in stats.results if r.success]
    assert all(r.model_calls == EXPECTED_MODEL_CALLS for r in successes)
    assert summary["attempts"] > summary["tool_calls"]  # retries absorbed the faults


def test_a_search_that_cannot_succeed_is_answered_honestly(search_service) -> None:
    service, _ = search_service
    agent = build_demo_agent(service.url)
    state = agent.invoke({"messages": [("user", "What is the combined population of Paris and Atlantis?")]})
    answer = state["messages"][-1].content
    assert "could not find the population of Atlantis" in answer
    assert "no results" in answer


def test_cli_demo_prints_a_trajectory() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ironloop", "demo", "--seed", "3"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "turn 1  model → search(query='Paris population')  search(query='Lyon population')" in out
    assert "attempt 1:" in out and "turn 3  model → answer" in out
    assert "search ⇒ [untrusted search output] Paris population: Paris" in out  # the data, not the preamble
    answer = "The combined city-proper population of Paris and Lyon is 2,673,000 (2,160,000 + 513,000)."
    assert out.strip().splitlines()[-1] == f"answer: {answer}"


def test_cli_demo_tasks_writes_figures(tmp_path) -> None:
    target = tmp_path / "demo.json"
    result = subprocess.run(
        [sys.executable, "-m", "ironloop", "demo", "--tasks", "40", "--concurrency", "8", "--out", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout and "p99" in result.stdout
    figures = json.loads(target.read_text())
    assert figures["tasks"] == 40 and figures["success_rate"] >= 0.9


def test_cli_rejects_an_unknown_profile() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ironloop", "demo", "--profile", "nope"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unknown fault profile 'nope'" in result.stderr and "Traceback" not in result.stderr
