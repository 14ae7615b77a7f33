"""Running the reference scenario many times and judging each run: the figures behind ``ironloop demo --tasks``.

A task succeeds only if its answer is the right total built from real search results for every place (no
fallback, no error observation) at exactly the expected number of model calls.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ironloop.checkpoints.stats import percentile
from ironloop.demo.scenario import DEMO_QUESTION, expected_answer, places_in
from ironloop.demo.services.search import bundled_corpus
from ironloop.graph.state import current_run
from ironloop.tools.records import metadata_of
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

EXPECTED_MODEL_CALLS = 3


def corpus_population(place: str) -> int:
    """The population the bundled corpus states for a place (the ground truth of the demo)."""
    for doc in bundled_corpus():
        if doc["title"].lower() == f"{place.lower()} population":
            match = re.search(r"population of (\d[\d,]*)", doc["snippet"])
            if match:
                return int(match.group(1).replace(",", ""))
    raise KeyError(f"the bundled corpus has no population for {place!r}")


@dataclass(frozen=True)
class TaskResult:
    seconds: float
    model_calls: int
    success: bool
    answer: str
    calls: int
    attempts: int
    outcomes: Counter[str]


def judge(messages: Sequence[Any], expected: str, seconds: float) -> TaskResult:
    run = current_run(list(messages))
    observations = [m for m in run if isinstance(m, ToolMessage)]
    outcomes: Counter[str] = Counter()
    attempts = 0
    for message in observations:
        meta = metadata_of(message) or {}
        outcomes[meta.get("outcome", "unknown")] += 1
        attempts += len(meta.get("attempts", []))
    model_calls = sum(isinstance(m, AIMessage) for m in run)
    answer = str(run[-1].content) if run and isinstance(run[-1], AIMessage) else ""
    success = (
        answer.startswith(expected)
        and model_calls == EXPECTED_MODEL_CALLS
        and all(outcome == "ok" for outcome in outcomes.elements())
    )
    return TaskResult(seconds, model_calls, success, answer, len(observations), attempts, outcomes)


@dataclass
class TaskStats:
    results: list[TaskResult] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        n = len(self.results)
        seconds = [r.seconds for r in self.results]
        calls = Counter(r.model_calls for r in self.results)
        outcomes: Counter[str] = sum((r.outcomes for r in self.results), Counter())
        return {
            "tasks": n,
            "success_rate": sum(r.success for r in self.results) / n,
            "model_calls_mean": sum(r.model_calls for r in self.results) / n,
            "model_calls_distribution": {str(k): v for k, v in sorted(calls.items())},
            "exactly_3_model_calls": calls.get(EXPECTED_MODEL_CALLS, 0) / n,
            "latency_ms": {f"p{q}": round(percentile(seconds, q) * 1000, 1) for q in (50, 95, 99)}
            | {"max": round(max(seconds) * 1000, 1)},
            "tool_calls": sum(r.calls for r in self.results),
            "attempts": sum(r.attempts for r in self.results),
            "call_outcomes": dict(outcomes),
        }

    def format(self) -> str:
        s = self.summary()
        latency = s["latency_ms"]
        return "\n".join(
            [
                f"tasks                 {s['tasks']}",
                f"success               {s['success_rate']:.2%}  (right answer from real results, no fallback)",
                f"model calls per task  mean {s['model_calls_mean']:.3f}; exactly 3 in {s['exactly_3_model_calls']:.2%}"
                f"; distribution {s['model_calls_distribution']}",
                f"task latency          p50 {latency['p50']} ms  p95 {latency['p95']} ms  p99 {latency['p99']} ms"
                f"  max {latency['max']} ms",
                f"tool calls            {s['tool_calls']} calls, {s['attempts']} attempts, "
                f"outcomes {s['call_outcomes']}",
            ]
        )


async def run_demo_tasks(
    agent: CompiledStateGraph,
    tasks: int,
    *,
    question: str = DEMO_QUESTION,
    concurrency: int = 1,
    thread_prefix: str | None = None,
    on_done: Callable[[TaskResult], None] | None = None,
) -> TaskStats:
    """Run ``tasks`` copies of the question (``concurrency`` at a time) and judge each; ``on_done`` is told of
    each result as it comes (a progress bar)."""
    places = places_in(question)
    expected = expected_answer(places, [corpus_population(p) for p in places])
    prefix = thread_prefix or f"demo-{uuid.uuid4().hex[:8]}"
    stats = TaskStats()
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with gate:
            config: RunnableConfig = {"configurable": {"thread_id": f"{prefix}-{index}"}}
            started = time.perf_counter()
            state = await agent.ainvoke({"messages": [("user", question)]}, config)
            stats.results.append(judge(state["messages"], expected, time.perf_counter() - started))
            if on_done is not None:
                on_done(stats.results[-1])

    await asyncio.gather(*(one(i) for i in range(tasks)))
    return stats
