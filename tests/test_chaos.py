"""A short chaos run in the suite: ironloop under the reference, harsh and outage profiles, and a smoke run of the
stock contenders. Counts only (hangs, duplicates, success, tasks ended); timings belong to the benchmark."""

from __future__ import annotations

from typing import Any

import pytest
from ironloop.benchmarks.chaos import Settings, run_all, summarize
from ironloop.benchmarks.chaos_contenders import STOCK_CONTENDERS

DEADLINE_S = 15.0


def chaos(profile: str, tasks: int, contenders: list[str], *, concurrency: int = 8) -> dict[str, dict[str, Any]]:
    settings = Settings(
        tasks=tasks,
        profile=profile,
        seed=3,
        concurrency=concurrency,
        deadline_s=DEADLINE_S,
        side_effect_share=0.2,
        contenders=contenders,
    )
    runs = run_all(settings, parallel=False, say=lambda *_: None)
    summaries = {run.name: summarize(run, DEADLINE_S) for run in runs}
    for name, summary in summaries.items():
        print(
            f"{profile} {name}: success {summary['success_rate']:.2%}, hangs {summary['hangs']}, "
            f"duplicates {summary['duplicates']}, p50 {summary['latency_ms'].get('p50')} ms"
        )
    return summaries


@pytest.mark.parametrize(("profile", "tasks"), [("reference", 300), ("harsh", 200)])
def test_ironloop_under_faults(profile: str, tasks: int) -> None:
    summary = chaos(profile, tasks, ["ironloop"])["ironloop"]
    assert summary["tasks"] == tasks and summary["payment_tasks"] > 10  # both scenarios were exercised
    assert summary["hangs"] == 0
    assert summary["duplicates"] == 0 and summary["missing_charges"] == 0
    assert summary["success_rate"] >= 0.99, summary["sample_failures"]


def test_ironloop_through_an_outage() -> None:
    summary = chaos("outage", 160, ["ironloop"])["ironloop"]
    assert summary["hangs"] == 0 and summary["errors"] == 0
    assert summary["duplicates"] == 0
    assert summary["ended_within_deadline"] == summary["tasks"]  # an answer, or an honest one saying what failed
    assert summary["faults_served"]["search"].get("outage", 0) > 0  # the outage happened during the run


def test_stock_contenders_smoke() -> None:
    summaries = chaos("reference", 10, list(STOCK_CONTENDERS))
    assert set(summaries) == set(STOCK_CONTENDERS)
    for name, summary in summaries.items():
        # each contender asked its model and met the same failing service: the run measured something
        assert summary["model_calls_mean"] >= 1, name
        assert summary["faults_served"]["search"].get("http_503", 0) > 0, name
        assert summary["success_rate"] * summary["tasks"] <= summary["answered"], name  # a success is an answer
    # Without retries, 45 % of searches failing cannot leave 10 tasks all right (16 searches or more: P < 1e-4),
    # so the benchmark tells the contenders apart: a harness that stopped injecting faults would not.
    assert summaries["create_react_agent"]["success_rate"] < 1.0, summaries["create_react_agent"]


def test_ironloop_with_search_over_mcp() -> None:
    # One task at a time: what is tested is that isError 503s are retried through one session, not how many
    # MCP round trips a loaded machine fits in a search's deadline (the benchmark measures that).
    summary = chaos("reference", 60, ["ironloop_mcp"], concurrency=1)["ironloop_mcp"]
    assert summary["hangs"] == 0 and summary["duplicates"] == 0
    assert summary["success_rate"] >= 0.99, summary["sample_failures"]
    assert summary["faults_served"]["search"].get("http_503", 0) > 20  # isError 503s were met, and retried
