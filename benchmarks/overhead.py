"""Runtime overhead: what ironloop costs per task, per call and per byte against stock LangGraph agents.

``ironloop bench overhead`` runs the same scripted model (`demo.scenario.demo_script`, instant) and the same
tools against three contenders, so only the runtimes differ:

- ``ironloop``: `graph.agent.build_agent` with the built-in search and calc policies, every feature at its
  default (hedging, timeouts, retries, the loop guard, task budgets, admission control);
- ``create_agent``: ``langchain.agents.create_agent`` with ``ToolRetryMiddleware()`` at its defaults;
- ``create_react_agent``: ``langgraph.prebuilt.create_react_agent`` at its defaults.

Measures (contenders take turns round by round, so a change in the machine's load hits them alike; each figure
is the median over rounds, and the load average is recorded beside it):

- ``cpu``: CPU time per seed task (two parallel searches, a calc, an answer) under ``invoke`` and ``ainvoke``,
  no checkpointer; and under ``invoke`` with SQLite (ironloop's ``SQLAlchemySaver`` against the official
  ``SqliteSaver`` for the stock agents). Tools are in-process and instant.
- ``throughput``: tasks per second with 1, 8 and 64 tasks in flight under ``ainvoke``.
- ``fanout``: one turn of 1, 16 and 64 parallel calls of a tool that sleeps 100 ms, sync and async, under
  ``invoke`` and ``ainvoke``: the task's wall time ÷ 100 ms (1.0 is ideal).
- ``calls_per_turn``: one turn of 10, 100 and 1,000 instant calls, with an in-memory checkpointer: bytes
  checkpointed per call and wall time per call.
- ``overload``: 200 and 1,000 tasks submitted at once against the bundled search service over HTTP (no
  faults): correct answers, throughput, p50 and p95 latency.
- ``memory``: in a fresh process per contender, RSS per idle thread (a finished conversation kept by an
  in-memory checkpointer), per task in flight (1,000 tasks at once, each waiting in a 0.5 s tool) and the
  peak RSS of those 1,000 tasks.

Writes ``overhead.json``, ``overhead.md`` and ``overhead.png`` under the results directory. ``--quick`` runs
every measure small (a test runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ironloop.benchmarks import RESULTS_DIR
from ironloop.benchmarks.plots import missing_matplotlib, pyplot

CONTENDERS = {
    "ironloop": "ironloop (defaults)",
    "create_agent": "create_agent + ToolRetryMiddleware()",
    "create_react_agent": "create_react_agent",
}
MEASURES = ("cpu", "throughput", "fanout", "calls_per_turn", "overload", "memory")
NAP_S = 0.1


@dataclass(frozen=True)
class Sizes:
    rounds: int
    tasks_per_round: int
    in_flight: tuple[int, ...]
    fanout: tuple[int, ...]
    calls_per_turn: tuple[int, ...]
    overload: tuple[int, ...]
    memory_tasks: int


FULL = Sizes(15, 20, (1, 8, 64), (1, 16, 64), (10, 100, 1000), (200, 1000), 1000)
QUICK = Sizes(3, 4, (1, 8), (1, 16), (10, 50), (50,), 100)


# -- the contenders ------------------------------------------------------------------------------------------------


def search_text(query: str) -> str:
    from ironloop.demo.services.search import bundled_corpus, search_corpus

    return "\n".join(f"{r['title']}: {r['snippet']}" for r in search_corpus(query, bundled_corpus()))


def instant_tools() -> list[Any]:
    """``search`` (sync and async, answered from the bundled corpus in-process) and ``calc`` (sync)."""
    from ironloop.tools.builtin import calc
    from langchain_core.tools import StructuredTool

    def search(query: str) -> str:
        """Search the web for a short factual answer, e.g. "Paris population"."""
        return search_text(query)

    async def asearch(query: str) -> str:
        """Search the web for a short factual answer, e.g. "Paris population"."""
        return search_text(query)

    return [
        StructuredTool.from_function(func=search, coroutine=asearch, name="search"),
        StructuredTool.from_function(calc),
    ]


def build(name: str, model: Any, tools: list[Any], checkpointer: Any = None, **ironloop_options: Any) -> Any:
    """One contender's agent around ``model`` and ``tools``."""
    if name == "ironloop":
        from ironloop.graph.agent import build_agent
        from ironloop.tools.builtin import BUILTIN_POLICIES

        names = {getattr(t, "name", "") for t in tools}
        policies = {k: v for k, v in BUILTIN_POLICIES.items() if k in names}
        return build_agent(model, tools, policies=policies, checkpointer=checkpointer, **ironloop_options)
    if name == "create_agent":
        from langchain.agents import create_agent
        from langchain.agents.middleware import ToolRetryMiddleware

        return create_agent(model, tools, middleware=[ToolRetryMiddleware()], checkpointer=checkpointer)
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():  # deprecated in favour of create_agent, yet what most code still calls
        warnings.simplefilter("ignore")
        return create_react_agent(model, tools, checkpointer=checkpointer)


def demo_model() -> Any:
    from ironloop.demo.scenario import demo_script
    from ironloop.demo.scripted_model import ScriptedChatModel

    return ScriptedChatModel(script=demo_script)


def question() -> dict[str, Any]:
    from ironloop.demo.scenario import DEMO_QUESTION

    return {"messages": [("user", DEMO_QUESTION)]}


def expected_answer() -> str:
    from ironloop.demo.scenario import DEMO_QUESTION, expected_answer, places_in
    from ironloop.demo.tasks import corpus_population

    places = places_in(DEMO_QUESTION)
    return expected_answer(places, [corpus_population(p) for p in places])


def answered(state: dict[str, Any], expected: str) -> bool:
    return str(state["messages"][-1].content).startswith(expected)


def new_thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": uuid.uuid4().hex}}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def interleaved(names: list[str], rounds: int, measure: Callable[[str], float]) -> dict[str, float]:
    """The median of ``measure(name)`` over ``rounds``; contenders take turns, in alternating order."""
    samples: dict[str, list[float]] = {n: [] for n in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            samples[name].append(measure(name))
    return {n: statistics.median(v) for n, v in samples.items()}


# -- CPU per task --------------------------------------------------------------------------------------------------


def measure_cpu(names: list[str], sizes: Sizes) -> dict[str, Any]:
    return {mode: _cpu(names, sizes, mode) for mode in ("invoke", "ainvoke", "invoke_sqlite")}


def _cpu(names: list[str], sizes: Sizes, mode: str) -> dict[str, Any]:
    from ironloop.checkpoints import SQLAlchemySaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    expected = expected_answer()
    with tempfile.TemporaryDirectory() as scratch:
        ours = official = None
        if mode == "invoke_sqlite":
            ours = SQLAlchemySaver.from_url(f"sqlite:///{scratch}/ironloop.db")
            official = SqliteSaver(sqlite3.connect(f"{scratch}/official.db", check_same_thread=False))
            official.setup()
        agents = {n: build(n, demo_model(), instant_tools(), ours if n == "ironloop" else official) for n in names}
        for name, agent in agents.items():  # warm up, and check the answer once
            if not answered(agent.invoke(question(), new_thread()), expected):
                raise RuntimeError(f"{name} answered the seed task wrongly")

        def one(name: str) -> float:
            agent = agents[name]
            started = time.process_time()
            if mode == "ainvoke":

                async def tasks() -> None:
                    for _ in range(sizes.tasks_per_round):
                        await agent.ainvoke(question(), new_thread())

                asyncio.run(tasks())
            else:
                for _ in range(sizes.tasks_per_round):
                    agent.invoke(question(), new_thread())
            return (time.process_time() - started) / sizes.tasks_per_round * 1000

        before = load()
        ms = interleaved(names, sizes.rounds, one)
        if ours is not None:
            ours.close()
    return {"cpu_ms_per_task": _rounded(ms), "ratio": _ratios(ms), "load": [before, load()]}


# -- throughput ----------------------------------------------------------------------------------------------------


def measure_throughput(names: list[str], sizes: Sizes) -> dict[str, Any]:
    agents = {n: build(n, demo_model(), instant_tools()) for n in names}
    return {str(n): _throughput(agents, sizes, n) for n in sizes.in_flight}


def _throughput(agents: dict[str, Any], sizes: Sizes, in_flight: int) -> dict[str, Any]:
    """Tasks per second of wall time (median over rounds), and per second of the process's CPU time: on a loaded
    machine the second is the steadier figure."""
    expected = expected_answer()
    tasks = max(4 * in_flight, sizes.tasks_per_round)
    cpu: dict[str, list[float]] = {name: [] for name in agents}

    def one(name: str) -> float:
        started = time.process_time()
        latencies, correct = asyncio.run(_latencies(agents[name], tasks, in_flight, expected))
        cpu[name].append(tasks / (time.process_time() - started))
        if correct != tasks:
            raise RuntimeError(f"{name}: {tasks - correct} of {tasks} tasks answered wrongly")
        return tasks / latencies[-1]

    before = load()
    per_s = interleaved(list(agents), sizes.rounds, one)
    per_cpu_s = {name: statistics.median(values) for name, values in cpu.items()}
    return {
        "tasks_per_s": _rounded(per_s, 1),
        "ratio": _ratios(per_s),
        "tasks_per_cpu_s": _rounded(per_cpu_s, 1),
        "load": [before, load()],
    }


async def _latencies(agent: Any, tasks: int, in_flight: int, expected: str) -> tuple[list[float], int]:
    """Run ``tasks`` seed tasks, ``in_flight`` at a time: each task's latency, then the total wall time last; and
    how many answered correctly."""
    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []
    correct = 0

    async def one() -> None:
        nonlocal correct
        async with gate:
            started = time.perf_counter()
            try:
                state = await agent.ainvoke(question(), new_thread())
            except Exception:  # a stock agent lets a tool's exception end the task: a wrong answer, not a crash
                state = None
            latencies.append(time.perf_counter() - started)
            correct += state is not None and answered(state, expected)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(tasks)))
    return [*latencies, time.perf_counter() - started], correct


# -- fan-out -------------------------------------------------------------------------------------------------------


def nap_tools(kind: str) -> list[Any]:
    """``nap``: sleeps ``NAP_S``. ``sync``: a plain function; ``async``: a coroutine (with a sync twin, so the stock
    agents can run it under ``invoke``)."""
    from langchain_core.tools import StructuredTool

    def nap(x: int) -> str:
        """Sleep a while."""
        time.sleep(NAP_S)
        return str(x)

    async def anap(x: int) -> str:
        """Sleep a while."""
        await asyncio.sleep(NAP_S)
        return str(x)

    if kind == "sync":
        return [StructuredTool.from_function(func=nap, name="nap")]
    return [StructuredTool.from_function(func=nap, coroutine=anap, name="nap")]


def fan_model(calls: int) -> Any:
    from ironloop.demo.scripted_model import Replay, ScriptedChatModel
    from langchain_core.messages import AIMessage

    turn = AIMessage(
        content="", tool_calls=[{"name": "nap", "args": {"x": i}, "id": f"call_{i}"} for i in range(calls)]
    )
    return ScriptedChatModel(script=_Turns(turn, Replay([AIMessage(content="done")])))


class _Turns:
    """The given turn for a new question, then ``after``: a script that works for any number of tasks."""

    def __init__(self, turn: Any, after: Any):
        self.turn, self.after = turn, after

    def __call__(self, conversation: Any) -> Any:
        from langchain_core.messages import AIMessage

        if any(isinstance(m, AIMessage) for m in conversation):
            return self.after(conversation)
        return self.turn.model_copy(deep=True)


def measure_fanout(names: list[str], sizes: Sizes) -> dict[str, Any]:
    return {
        f"{kind}/{mode}/{calls}": _fanout(names, sizes, kind, mode, calls)
        for kind in ("sync", "async")
        for mode in ("invoke", "ainvoke")
        for calls in sizes.fanout
    }


def _fanout(names: list[str], sizes: Sizes, kind: str, mode: str, calls: int) -> dict[str, Any]:
    agents = {n: build(n, fan_model(calls), nap_tools(kind)) for n in names}

    def one(name: str) -> float:
        agent = agents[name]
        started = time.perf_counter()
        if mode == "invoke":
            state = agent.invoke({"messages": [("user", "nap")]}, new_thread())
        else:
            state = asyncio.run(agent.ainvoke({"messages": [("user", "nap")]}, new_thread()))
        wall = time.perf_counter() - started
        naps = [m for m in state["messages"] if getattr(m, "type", "") == "tool"]
        if len(naps) != calls or state["messages"][-1].content != "done":
            raise RuntimeError(f"{name}: fan-out of {calls} did not finish")
        return wall / NAP_S

    before = load()
    times = interleaved(names, max(3, sizes.rounds // 3), one)
    return {"wall_over_ideal": _rounded(times, 2), "load": [before, load()]}


# -- calls per turn ------------------------------------------------------------------------------------------------


def counting_saver() -> Any:
    from langgraph.checkpoint.memory import InMemorySaver

    class CountingSaver(InMemorySaver):
        """An in-memory checkpointer that counts the bytes it is handed (checkpoints and pending writes)."""

        written = 0

        def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
            values = checkpoint["channel_values"]
            self.written += sum(len(self.serde.dumps_typed(values[k])[1]) for k in new_versions if k in values)
            return super().put(config, checkpoint, metadata, new_versions)

        def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
            self.written += sum(len(self.serde.dumps_typed(value)[1]) for _, value in writes)
            super().put_writes(config, writes, task_id, task_path)

    return CountingSaver()


def echo_tools() -> list[Any]:
    from langchain_core.tools import StructuredTool

    def nap(x: int) -> str:
        """Echo a number."""
        return str(x)

    async def anap(x: int) -> str:
        """Echo a number."""
        return str(x)

    return [StructuredTool.from_function(func=nap, coroutine=anap, name="nap")]


def measure_calls_per_turn(names: list[str], sizes: Sizes) -> dict[str, Any]:
    return {str(calls): _calls_per_turn(names, sizes, calls) for calls in sizes.calls_per_turn}


def _calls_per_turn(names: list[str], sizes: Sizes, calls: int) -> dict[str, Any]:
    savers = {n: counting_saver() for n in names}
    options: dict[str, Any] = {"max_calls_per_turn": None}  # the cap is measured elsewhere; here every call runs
    agents = {
        n: build(n, fan_model(calls), echo_tools(), savers[n], **(options if n == "ironloop" else {})) for n in names
    }
    bytes_per_call: dict[str, float] = {}

    def one(name: str) -> float:
        saver = savers[name]
        saver.written = 0
        started = time.perf_counter()
        state = asyncio.run(agents[name].ainvoke({"messages": [("user", "nap")]}, new_thread()))
        wall = time.perf_counter() - started
        if sum(getattr(m, "type", "") == "tool" for m in state["messages"]) != calls:
            raise RuntimeError(f"{name}: a turn of {calls} calls did not finish")
        bytes_per_call[name] = saver.written / calls
        return wall / calls * 1000

    before = load()
    ms = interleaved(names, 1 if calls >= 1000 else max(3, sizes.rounds // 3), one)
    return {"ms_per_call": _rounded(ms, 3), "bytes_per_call": _rounded(bytes_per_call, 0), "load": [before, load()]}


# -- overload ------------------------------------------------------------------------------------------------------


def measure_overload(names: list[str], sizes: Sizes) -> dict[str, Any]:
    from ironloop.demo.services.server import start_search_service
    from ironloop.tools.builtin import calc, make_search_tool
    from langchain_core.tools import StructuredTool

    expected = expected_answer()
    service, _ = start_search_service(profile="none")
    results: dict[str, Any] = {}
    try:
        for tasks in sizes.overload:
            row: dict[str, Any] = {}
            before = load()
            for name in names:  # one run each: a run of 1,000 tasks is long, and the order alternates by size
                tools = [make_search_tool(service.url), StructuredTool.from_function(calc)]
                agent = build(name, demo_model(), tools)
                latencies, correct = asyncio.run(_latencies(agent, tasks, tasks, expected))
                wall = latencies.pop()
                row[name] = {
                    "correct": correct,
                    "tasks": tasks,
                    "tasks_per_s": round(tasks / wall, 1),
                    "p50_ms": round(1000 * _percentile(latencies, 50)),
                    "p95_ms": round(1000 * _percentile(latencies, 95)),
                }
            names = names[::-1]
            results[str(tasks)] = {**row, "load": [before, load()]}
    finally:
        service.stop()
    return results


def _percentile(values: list[float], q: float) -> float:
    from ironloop.demo.tasks import percentile

    return percentile(values, q)


# -- memory --------------------------------------------------------------------------------------------------------


def measure_memory(names: list[str], sizes: Sizes) -> dict[str, Any]:
    results: dict[str, Any] = {"load": [load()]}
    for name in names:
        child = subprocess.run(
            [sys.executable, "-m", "ironloop.benchmarks.overhead", "--memory-child", name, str(sizes.memory_tasks)],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if child.returncode != 0:
            raise RuntimeError(f"memory measure of {name} failed: {child.stderr.strip()[-500:]}")
        results[name] = json.loads(child.stdout.strip().splitlines()[-1])
    results["load"].append(load())
    return results


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_rss() -> Iterator[list[int]]:
    """Samples the RSS every 10 ms while the block runs; the list holds the peak seen."""
    peak = [rss_bytes()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            peak[0] = max(peak[0], rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join()
        peak[0] = max(peak[0], rss_bytes())


def memory_child(name: str, tasks: int) -> dict[str, Any]:
    """In a fresh process: RSS per idle thread, per task in flight, and the peak of ``tasks`` tasks at once."""
    import gc

    from langchain_core.tools import StructuredTool
    from langgraph.checkpoint.memory import InMemorySaver

    expected = expected_answer()
    saver = InMemorySaver()
    agent = build(name, demo_model(), instant_tools(), saver)
    for _ in range(20):  # warm up: imports, caches, the event loop
        agent.invoke(question(), new_thread())
    gc.collect()
    base = rss_bytes()
    for _ in range(tasks):
        agent.invoke(question(), new_thread())
    gc.collect()
    per_idle_thread = (rss_bytes() - base) / tasks

    async def slow_search(query: str) -> str:
        """Search the web for a short factual answer, e.g. "Paris population"."""
        await asyncio.sleep(0.5)
        return search_text(query)

    from ironloop.tools.builtin import calc

    tools = [StructuredTool.from_function(coroutine=slow_search, name="search"), StructuredTool.from_function(calc)]
    slow = build(name, demo_model(), tools)
    asyncio.run(_latencies(slow, 20, 20, expected))  # warm up
    gc.collect()
    base = rss_bytes()
    with peak_rss() as peak:
        _, correct = asyncio.run(_latencies(slow, tasks, tasks, expected))
    if correct != tasks:
        raise RuntimeError(f"{tasks - correct} of {tasks} tasks answered wrongly")
    return {
        "kib_per_idle_thread": round(per_idle_thread / 1024, 1),
        "kib_per_task_in_flight": round((peak[0] - base) / tasks / 1024, 1),
        "peak_rss_mib": round(peak[0] / 2**20, 1),
        "tasks": tasks,
    }


# -- report --------------------------------------------------------------------------------------------------------


def _rounded(values: dict[str, float], digits: int = 2) -> dict[str, float]:
    return {k: round(v, digits) for k, v in values.items()}


def _ratios(values: dict[str, float]) -> dict[str, float]:
    """ironloop ÷ each contender."""
    ours = values.get("ironloop")
    return {k: round(ours / v, 2) for k, v in values.items() if ours is not None and v}


def format_markdown(results: dict[str, Any], names: list[str]) -> str:
    head = "| measure | " + " | ".join(CONTENDERS[n] for n in names) + " | ironloop ÷ create_agent | load (1 min) |"
    lines = [head, "|---|" + "---:|" * (len(names) + 2)]

    def row(label: str, values: dict[str, Any], fmt: str, ratio: str, at: list[list[float]]) -> None:
        cells = " | ".join(format(values[n], fmt) if n in values else "—" for n in names)
        lines.append(f"| {label} | {cells} | {ratio} | {at[0][0]:.1f}–{at[-1][0]:.1f} |")

    def vs(values: dict[str, Any], lower_is_better: bool = True) -> str:
        if "ironloop" not in values or not values.get("create_agent"):
            return "—"
        return f"{values['ironloop'] / values['create_agent']:.2f}×"

    for mode, label in (("invoke", "invoke"), ("ainvoke", "ainvoke"), ("invoke_sqlite", "invoke, SQLite checkpointer")):
        if mode in results.get("cpu", {}):
            r = results["cpu"][mode]
            row(f"CPU ms per seed task, {label}", r["cpu_ms_per_task"], ".2f", vs(r["cpu_ms_per_task"]), r["load"])
    for in_flight, r in results.get("throughput", {}).items():
        row(f"tasks/s, {in_flight} in flight (ainvoke)", r["tasks_per_s"], ".1f", vs(r["tasks_per_s"]), r["load"])
        cpu_s = r["tasks_per_cpu_s"]
        row(f"tasks per CPU-second, {in_flight} in flight (ainvoke)", cpu_s, ".1f", vs(cpu_s), r["load"])
    for key, r in results.get("fanout", {}).items():
        kind, mode, calls = key.split("/")
        label = f"fan-out {calls} × {NAP_S * 1000:.0f} ms {kind} calls, {mode}: wall ÷ ideal"
        row(label, r["wall_over_ideal"], ".2f", vs(r["wall_over_ideal"]), r["load"])
    for calls, r in results.get("calls_per_turn", {}).items():
        row(
            f"{calls} calls in one turn: bytes checkpointed per call",
            r["bytes_per_call"],
            ".0f",
            vs(r["bytes_per_call"]),
            r["load"],
        )
        row(f"{calls} calls in one turn: ms per call", r["ms_per_call"], ".3f", vs(r["ms_per_call"]), r["load"])
    for tasks, r in results.get("overload", {}).items():
        at = r["load"]
        correct = {n: f"{r[n]['correct']}/{r[n]['tasks']}" for n in names if n in r}
        row(f"{tasks} tasks at once: correct", correct, "s", "—", at)
        for key, label in (("tasks_per_s", "tasks/s"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms")):
            values = {n: r[n][key] for n in names if n in r}
            row(f"{tasks} tasks at once: {label}", values, ".1f" if key == "tasks_per_s" else ".0f", vs(values), at)
    memory = results.get("memory")
    if memory:
        for key, label in (
            ("kib_per_idle_thread", "KiB per idle thread (in-memory checkpointer)"),
            ("kib_per_task_in_flight", "KiB per task in flight"),
            ("peak_rss_mib", f"peak RSS MiB, {memory[names[0]]['tasks']} tasks at once"),
        ):
            values = {n: memory[n][key] for n in names if n in memory}
            row(label, values, ".1f", vs(values), memory["load"])
    return "\n".join(lines)


def plot(results: dict[str, Any], names: list[str], path: Path) -> None:
    plt = pyplot()
    figure, (cpu, fan, turn) = plt.subplots(1, 3, figsize=(15, 4.5))
    modes = [m for m in ("invoke", "ainvoke", "invoke_sqlite") if m in results.get("cpu", {})]
    width = 0.8 / len(names)
    for index, name in enumerate(names):
        cpu.bar(
            [i + index * width for i in range(len(modes))],
            [results["cpu"][m]["cpu_ms_per_task"][name] for m in modes],
            width,
            label=CONTENDERS[name],
        )
    cpu.set_xticks([i + width for i in range(len(modes))], modes)
    cpu.set_ylabel("CPU ms per seed task")
    cpu.set_title("CPU per task (lower is better)")
    cpu.legend(fontsize=7)
    fanout = results.get("fanout", {})
    for name in names:
        for kind, mode, style in (("sync", "invoke", "-"), ("async", "ainvoke", "--")):
            points = sorted(
                (int(k.split("/")[2]), v["wall_over_ideal"][name])
                for k, v in fanout.items()
                if k.startswith(f"{kind}/{mode}/")
            )
            if points:
                fan.plot(*zip(*points, strict=True), style, marker="o", label=f"{name}, {kind} {mode}")
    fan.axhline(1.0, color="grey", linewidth=0.8)
    fan.set_xlabel("parallel calls in one turn")
    fan.set_ylabel("wall ÷ ideal (100 ms)")
    fan.set_title("Fan-out (1.0 is ideal)")
    fan.legend(fontsize=6)
    per_turn = results.get("calls_per_turn", {})
    for name in names:
        points = sorted((int(k), v["bytes_per_call"][name]) for k, v in per_turn.items())
        if points:
            turn.plot(*zip(*points, strict=True), marker="o", label=CONTENDERS[name])
    turn.set_xscale("log")
    turn.set_yscale("log")
    turn.set_xlabel("calls in one turn")
    turn.set_ylabel("bytes checkpointed per call")
    turn.set_title("Checkpoint bytes per call (flat is better)")
    turn.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- command line --------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--measures", default=",".join(MEASURES), help=f"some of {', '.join(MEASURES)}")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help=", ".join(CONTENDERS))
    parser.add_argument("--rounds", type=int, default=None, help="rounds per measure (default 15; 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="every measure small: a smoke run, not figures")
    parser.add_argument("--no-plot", action="store_true", help="write no plot (matplotlib not needed)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where the JSON, table and PNG go")
    parser.add_argument("--memory-child", nargs=2, metavar=("CONTENDER", "TASKS"), help=argparse.SUPPRESS)


RUNNERS: dict[str, Callable[[list[str], Sizes], dict[str, Any]]] = {
    "cpu": measure_cpu,
    "throughput": measure_throughput,
    "fanout": measure_fanout,
    "calls_per_turn": measure_calls_per_turn,
    "overload": measure_overload,
    "memory": measure_memory,
}


def _earlier_report(path: Path, names: list[str]) -> dict[str, Any]:
    """The report of an earlier run with the same contenders, whose other measures are kept (a run of some
    measures replaces only those); else an empty one."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = None
    if not isinstance(earlier, dict) or earlier.get("contenders") != names or "commands" not in earlier:
        return {"results": {}, "commands": {}}
    return earlier


def run(args: argparse.Namespace) -> int:
    if args.memory_child:
        name, tasks = args.memory_child
        print(json.dumps(memory_child(name, int(tasks))))
        return 0
    measures = [m.strip() for m in args.measures.split(",") if m.strip()]
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if unknown := [m for m in measures if m not in RUNNERS] + [c for c in names if c not in CONTENDERS]:
        print(f"ironloop bench overhead: unknown measure or contender: {', '.join(unknown)}", file=sys.stderr)
        return 2
    if args.rounds is not None and args.rounds < 1:
        print("ironloop bench overhead: --rounds must be at least 1", file=sys.stderr)
        return 2
    if not args.no_plot and (missing := missing_matplotlib()):
        print(f"ironloop bench overhead: {missing}", file=sys.stderr)
        return 2
    sizes = QUICK if args.quick else FULL
    if args.rounds is not None:
        sizes = dataclasses.replace(sizes, rounds=args.rounds)
    from ironloop.benchmarks.chaos import machine_facts

    argv = sys.argv[1:]
    argv = argv[2:] if argv[:2] == ["bench", "overhead"] else argv
    command = ("ironloop bench overhead " + " ".join(shlex.quote(a) for a in argv)).strip()
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    stem = "overhead-quick" if args.quick else "overhead"
    report = _earlier_report(out / f"{stem}.json", names)
    report.update({"benchmark": "overhead", "machine": machine_facts(), "contenders": names})
    for measure in measures:
        print(f"{measure} ... (load {load()[0]})", flush=True)
        started = time.perf_counter()
        report["results"][measure] = RUNNERS[measure](names, sizes)
        report["commands"][measure] = command
        print(f"{measure}: {time.perf_counter() - started:.0f} s", flush=True)
        (out / f"{stem}.json").write_text(
            json.dumps(report, indent=2) + "\n", encoding="utf-8"
        )  # kept if a later one fails
    results = report["results"]
    table = format_markdown(results, names)
    print(table)
    commands = sorted(set(report["commands"].values()))
    header = (
        f"{'; '.join(f'`{c}`' for c in commands)} — {report['machine']['date']}, {report['machine']['cores']} cores"
    )
    (out / f"{stem}.md").write_text(f"{header}\n\n{table}\n", encoding="utf-8")
    written = [out / f"{stem}.json", out / f"{stem}.md"]
    if not args.no_plot:
        plot(results, names, out / f"{stem}.png")
        written.append(out / f"{stem}.png")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m ironloop.benchmarks.overhead")
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
