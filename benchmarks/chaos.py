"""Chaos: ironloop versus stock LangGraph and a hand-written loop, under the same seeded tool faults.

``ironloop bench chaos --tasks N --profile NAME`` runs N tasks of the reference scenario against the local tool
services for each contender (`benchmarks.chaos_contenders`): most tasks ask the population question
(`graph.scenario.DEMO_QUESTION`: two parallel searches, a calc, an answer), a share (``--side-effect-share``)
charge two customers of their own ("Charge cus_00012 $41.07 and cus_00013 $9.90."), so a duplicate charge can
be read off the payments ledger.

Fairness:

- Same model, tools and task sequence for every contender; each gets a fresh ``start_tool_services(profile,
  seed)``, whose fault draw is a pure function of (seed, request key, that key's request count), so every
  contender meets the same fault sequence for each query. (Charges are keyed by idempotency key when one is
  sent, by customer otherwise: the same fault probabilities per request, not the same draws.)
- ``--concurrency`` tasks in flight for each contender; each task is abandoned at ``--task-deadline`` (a hang),
  and the worker moves on, so a stuck task never stalls the run.
- Success means the right answer from real results, no fallback. Population: the final answer begins with the
  sentence built from the corpus (`graph.scenario.expected_answer`) after exactly 3 model calls; for ironloop
  also every observation's recorded outcome is ``ok`` (`graph.demo_tasks.judge`; the stock contenders record
  no outcomes). Since the scripted model answers "could not find ..." when an observation is an error or a
  fallback, the answer text alone tells a real result from a covered-up failure. Payments: the answer lists
  both charges and the ledger holds exactly one charge per requested charge.
- Duplicates: charges in the ledger beyond one per requested (customer, amount).
- Latency: wall time of each task, from its start to its answer, exception or deadline (a hang counts as the
  deadline: a lower bound).

ironloop runs first, alone, so its latency is measured on an otherwise idle machine. With ``--parallel`` (the
default) the stock contenders then run at once, each in its own process with its own services: they spend
their time in back-off sleeps (seconds per task), so sharing the cores barely moves their figures and the run
takes the time of the slowest instead of the sum. ``--no-parallel`` runs every contender one after another.

Writes ``benchmarks/results/chaos-<profile>.json`` (figures, goals, machine, command), ``chaos-<profile>.md``
(the table, for BENCHMARKS.md) and ``chaos-<profile>.png`` (latency per contender, log scale, successful and
failed tasks apart).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import platform
import random
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ironloop.benchmarks import RESULTS_DIR
from ironloop.benchmarks.chaos_contenders import (
    BUILDERS,
    CONTENDERS,
    DEFAULT_CONTENDERS,
    MCP_CONTENDERS,
    STOCK_CONTENDERS,
    Progress,
)
from ironloop.benchmarks.plots import missing_matplotlib, pyplot
from ironloop.commands import positive_int

DEFAULT_SEED = 7
EXPECTED_CALLS = {"population": 3, "payment": 2}
"""Model calls a task takes when everything works: search, calc, answer; or charge, answer."""


# -- tasks ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChaosTask:
    index: int
    question: str
    charges: tuple[tuple[str, int], ...] = ()
    """(customer, amount in cents) requested by a payment task; empty for a population task."""

    @property
    def kind(self) -> str:
        return "payment" if self.charges else "population"


def make_tasks(count: int, side_effect_share: float, seed: int) -> list[ChaosTask]:
    """The task sequence, a pure function of its arguments: every contender gets the same one.

    Payment task ``i`` charges customers ``cus_<2i>`` and ``cus_<2i+1>``, used by no other task, so each charge
    in the ledger belongs to exactly one requested charge.
    """
    from ironloop.demo.scenario import DEMO_QUESTION

    rng = random.Random(f"chaos-tasks-{seed}")
    tasks = []
    for index in range(count):
        if rng.random() < side_effect_share:
            charges = tuple((f"cus_{2 * index + k:05d}", rng.randint(100, 99_999)) for k in range(2))
            question = (
                f"Charge {charges[0][0]} {_dollars(charges[0][1])} and {charges[1][0]} {_dollars(charges[1][1])}."
            )
            tasks.append(ChaosTask(index, question, charges))
        else:
            tasks.append(ChaosTask(index, DEMO_QUESTION))
    return tasks


def _dollars(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"


# -- one contender's run -------------------------------------------------------------------------------------------


@dataclass
class TaskRecord:
    index: int
    kind: str
    seconds: float
    end: str
    """``answer`` (the run ended with a final model message), ``error`` (it raised) or ``hang`` (deadline)."""
    model_calls: int
    answer: str = ""
    error: str = ""
    success: bool = False
    observations_ok: bool | None = None
    """ironloop only: every observation's recorded outcome was ``ok`` (``None`` where nothing is recorded)."""


@dataclass
class ContenderRun:
    name: str
    records: list[TaskRecord]
    wall_s: float
    faults: dict[str, dict[str, int]]
    cpu_s: float = 0.0
    """CPU time of the contender's process (every thread) while its tasks ran."""
    service_cpu_s: float = 0.0
    """CPU time of its tool services' process while it served (its start-up left out)."""
    duplicates: int = 0
    tasks_with_duplicates: int = 0
    missing_charges: int = 0
    stray_charges: int = 0


def run_contender(
    name: str,
    tasks: Sequence[ChaosTask],
    *,
    profile: str,
    seed: int = DEFAULT_SEED,
    concurrency: int = 8,
    deadline_s: float = 15.0,
    on_task: Callable[[], None] | None = None,
) -> ContenderRun:
    """Run every task under one contender against its own fresh tool services, then judge the results.

    The contender is built once against a dead address first, so that imports and graph compilation happen
    before its services start: the ``outage`` profile's outage (1 s to 3 s after the start) then hits every
    contender at the same point of its run.
    """
    from ironloop.benchmarks.chaos_service import RemoteServices

    BUILDERS[name]("http://127.0.0.1:9")  # warm-up: imports and compilation, never run
    with RemoteServices(profile, seed, mcp=name in MCP_CONTENDERS) as services:
        contender = BUILDERS[name](services.url)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(contender.start())
            started, cpu_started = time.perf_counter(), time.process_time()
            records = loop.run_until_complete(_run_tasks(contender, tasks, concurrency, deadline_s, on_task))
            wall_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
            _drain(loop)
            loop.run_until_complete(contender.aclose())
        finally:
            loop.close()
        served = services.stop()
    run = ContenderRun(
        name,
        records,
        wall_s,
        served["faults"],
        cpu_s=cpu_s,
        service_cpu_s=served.get("cpu_s", 0.0) - services.cpu_at_start_s,
    )
    judge_run(run, tasks, [(customer, amount) for customer, amount in served["charges"]])
    return run


async def _run_tasks(
    contender: Any,
    tasks: Sequence[ChaosTask],
    concurrency: int,
    deadline_s: float,
    on_task: Callable[[], None] | None = None,
) -> list:
    """``concurrency`` workers take tasks in order; a task past its deadline is cancelled and left behind.
    ``on_task`` is called as each task ends (a progress bar)."""
    records: list[TaskRecord | None] = [None] * len(tasks)
    pending = iter(tasks)
    abandoned: set[asyncio.Task] = set()

    async def worker() -> None:
        for task in pending:
            progress = Progress()
            started = time.perf_counter()
            job = asyncio.ensure_future(contender.run(task.question, f"chaos-{contender.name}-{task.index}", progress))
            done, _ = await asyncio.wait({job}, timeout=deadline_s)
            seconds = time.perf_counter() - started
            error = ""
            if job in done:
                exc = job.exception()
                end = "answer" if exc is None else "error"
                error = "" if exc is None else f"{type(exc).__name__}: {exc}"[:300]
            else:
                end = "hang"
                job.cancel()  # not awaited: a task that ignores cancellation must not hold this worker
                abandoned.add(job)
                job.add_done_callback(_forget(abandoned))
            records[task.index - tasks[0].index] = _record(task, progress, seconds, end, error, contender.name)
            if on_task is not None:
                on_task()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [r for r in records if r is not None]


def _forget(abandoned: set[asyncio.Task]) -> Any:
    def done(job: asyncio.Task) -> None:
        abandoned.discard(job)
        if not job.cancelled():
            job.exception()  # retrieved, so asyncio does not log it as never retrieved

    return done


def _drain(loop: asyncio.AbstractEventLoop, timeout_s: float = 5.0) -> None:
    """Cancel what abandoned tasks left running and give them a moment to unwind, never more."""
    leftovers = asyncio.all_tasks(loop)
    for job in leftovers:
        job.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.wait(leftovers, timeout=timeout_s))


def _record(task: ChaosTask, progress: Progress, seconds: float, end: str, error: str, contender: str) -> TaskRecord:
    from ironloop.graph.state import current_run
    from langchain_core.messages import AIMessage

    run = current_run(list(progress.messages))
    model_calls = sum(isinstance(m, AIMessage) for m in run)
    last = run[-1] if run else None
    if end == "answer" and not (isinstance(last, AIMessage) and not last.tool_calls):
        end, error = "error", error or "the run ended without a final answer"
    answer = str(last.content) if end == "answer" and last is not None else ""
    record = TaskRecord(task.index, task.kind, seconds, end, model_calls, answer, error)
    if contender.startswith("ironloop") and end == "answer":
        from ironloop.demo.tasks import judge

        record.observations_ok = all(o == "ok" for o in judge(progress.messages, "", seconds).outcomes.elements())
    return record


def judge_run(run: ContenderRun, tasks: Sequence[ChaosTask], charges: Sequence[tuple[str, int]]) -> None:
    """Mark each task's success and count duplicate, missing and stray charges from the payments ledger."""
    from ironloop.demo.scenario import expected_answer, places_in
    from ironloop.demo.tasks import corpus_population

    by_task = {t.index: t for t in tasks}
    charged: Counter[tuple[str, int]] = Counter(charges)
    customers: Counter[str] = Counter(customer for customer, _ in charges)
    expected_cache: dict[str, str] = {}
    for record in run.records:
        task = by_task[record.index]
        if task.kind == "population":
            if task.question not in expected_cache:
                places = places_in(task.question)
                expected_cache[task.question] = expected_answer(places, [corpus_population(p) for p in places])
            record.success = (
                record.end == "answer"
                and record.answer.startswith(expected_cache[task.question])
                and record.model_calls == EXPECTED_CALLS["population"]
                and record.observations_ok is not False
            )
            continue
        counts = [charged[charge] for charge in task.charges]
        extra = sum(max(0, n - 1) for n in counts)
        stray = sum(customers[c] for c, _ in task.charges) - sum(counts)
        run.duplicates += extra
        run.tasks_with_duplicates += extra > 0
        run.missing_charges += sum(n == 0 for n in counts)
        run.stray_charges += stray
        listed = record.answer.startswith("Charged ") and all(
            f"{customer} ${amount / 100:.2f} (charge " in record.answer for customer, amount in task.charges
        )
        record.success = record.end == "answer" and listed and all(n == 1 for n in counts) and stray == 0


# -- figures -------------------------------------------------------------------------------------------------------


def summarize(run: ContenderRun, deadline_s: float) -> dict[str, Any]:
    from ironloop.checkpoints.stats import percentile

    records = run.records
    n = len(records)
    seconds = [r.seconds for r in records]
    calls = Counter(r.model_calls for r in records)
    population = [r for r in records if r.kind == "population"]
    payments = [r for r in records if r.kind == "payment"]
    ends = Counter(r.end for r in records)
    errors = Counter(r.error.split(":")[0] for r in records if r.end == "error")
    return {
        "label": CONTENDERS[run.name],
        "tasks": n,
        "population_tasks": len(population),
        "payment_tasks": len(payments),
        "success_rate": _share(sum(r.success for r in records), n),
        "population_success_rate": _share(sum(r.success for r in population), len(population)),
        "payment_success_rate": _share(sum(r.success for r in payments), len(payments)),
        "model_calls_mean": round(sum(r.model_calls for r in records) / n, 4) if n else 0.0,
        "model_calls_distribution": {str(k): v for k, v in sorted(calls.items())},
        "expected_model_calls_rate": _share(sum(r.model_calls == EXPECTED_CALLS[r.kind] for r in records), n),
        "exactly_3_model_calls_population": _share(sum(r.model_calls == 3 for r in population), len(population)),
        "latency_ms": {
            "mean": round(1000 * sum(seconds) / n, 1),
            **{f"p{q}": round(1000 * percentile(seconds, q), 1) for q in (50, 95, 99)},
            "max": round(1000 * max(seconds), 1),
        }
        if n
        else {},
        "latency_ms_quantiles": [round(1000 * percentile(seconds, q), 2) for q in range(1, 101)] if n else [],
        "answered": ends["answer"],
        "errors": ends["error"],
        "hangs": ends["hang"],
        "ended_within_deadline": sum(r.end == "answer" and r.seconds <= deadline_s for r in records),
        "error_kinds": dict(errors.most_common(5)),
        "duplicates": run.duplicates,
        "tasks_with_duplicates": run.tasks_with_duplicates,
        "missing_charges": run.missing_charges,
        "stray_charges": run.stray_charges,
        "faults_served": run.faults,
        "requests_per_task": round(sum(sum(f.values()) for f in run.faults.values()) / n, 3) if n else 0.0,
        "cpu_ms_per_task": round(1000 * run.cpu_s / n, 2) if n else 0.0,
        "service_cpu_ms_per_task": round(1000 * run.service_cpu_s / n, 2) if n else 0.0,
        "wall_s": round(run.wall_s, 1),
        "sample_failures": [
            {"index": r.index, "kind": r.kind, "end": r.end, "answer": r.answer[:200], "error": r.error[:200]}
            for r in records
            if not r.success
        ][:5],
    }


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def ironloop_goals(profile: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals for ironloop under a profile, each with the measured value and whether it is met."""
    goals: list[tuple[str, str, Any, bool]] = [
        ("no hangs", "0", summary["hangs"], summary["hangs"] == 0),
        ("no duplicate side effects", "0", summary["duplicates"], summary["duplicates"] == 0),
    ]
    if profile == "reference":
        latency = summary["latency_ms"]
        goals = [
            ("success", ">= 99.9 %", f"{summary['success_rate']:.2%}", summary["success_rate"] >= 0.999),
            (
                "expected model calls (3, or 2 for payments)",
                ">= 99.9 %",
                f"{summary['expected_model_calls_rate']:.2%}",
                summary["expected_model_calls_rate"] >= 0.999,
            ),
            ("p50 latency", "<= 30 ms", f"{latency['p50']} ms", latency["p50"] <= 30),
            ("p99 latency", "<= 300 ms", f"{latency['p99']} ms", latency["p99"] <= 300),
            *goals,
        ]
    else:
        ended = summary["ended_within_deadline"]
        every = summary["tasks"]
        goals.append(("every task ends with an answer within its deadline", f"{every}", ended, ended == every))
    return [{"goal": g, "target": t, "measured": m, "met": ok} for g, t, m, ok in goals]


COLUMNS = (
    "contender",
    "success",
    "model calls mean",
    "= expected",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "hangs",
    "errors",
    "duplicates",
    "wall s",
)


def table_rows(summaries: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = []
    for summary in summaries.values():
        latency = summary["latency_ms"]
        rows.append(
            [
                summary["label"],
                f"{summary['success_rate']:.2%}",
                f"{summary['model_calls_mean']:.3f}",
                f"{summary['expected_model_calls_rate']:.2%}",
                f"{latency['p50']:.1f}",
                f"{latency['p95']:.1f}",
                f"{latency['p99']:.1f}",
                str(summary["hangs"]),
                str(summary["errors"]),
                f"{summary['duplicates']} ({summary['tasks_with_duplicates']} tasks)",
                f"{summary['wall_s']:.0f}",
            ]
        )
    return rows


def format_table(summaries: dict[str, dict[str, Any]]) -> str:
    rows = [list(COLUMNS), *table_rows(summaries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(_pad(row, widths)) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _pad(row: list[str], widths: list[int]) -> list[str]:
    """The first column left-aligned, the figures right-aligned."""
    return [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))]


def format_markdown(summaries: dict[str, dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" + "---:|" * (len(COLUMNS) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(summaries)]
    return "\n".join(lines)


def format_distributions(summaries: dict[str, dict[str, Any]]) -> str:
    return "\n".join(
        f"{s['label']}: model calls {s['model_calls_distribution']}; ends answer/error/hang "
        f"{s['answered']}/{s['errors']}/{s['hangs']}; errors {s['error_kinds'] or '-'}; "
        f"{s['requests_per_task']} requests/task; CPU {s['cpu_ms_per_task']} ms/task agent, "
        f"{s['service_cpu_ms_per_task']} ms/task services"
        for s in summaries.values()
    )


def format_goals(goals: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  [{'met' if g['met'] else 'MISSED'}] {g['goal']}: {g['measured']} (goal {g['target']})" for g in goals
    )


def plot_latencies(runs: Sequence[ContenderRun], path: Path, *, profile: str, deadline_s: float) -> None:
    """Write `latency_figure` as a PNG."""
    plt = pyplot()
    figure = latency_figure(runs, profile=profile, deadline_s=deadline_s)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def latency_figure(runs: Sequence[ContenderRun], *, profile: str, deadline_s: float) -> Any:
    """Task latency per contender in two panels on one log time axis: successful tasks, and failed ones
    (errors, hangs, wrong or covered-up answers). Each curve counts tasks over the contender's *all* tasks, so
    the success curve ends at the success rate: a contender that fails fast climbs the right panel, never the
    left one. The legend sits below the panels, over no data."""
    plt = pyplot()
    figure, panels = plt.subplots(1, 2, figsize=(11, 5.6), dpi=110, sharex=True, sharey=True)
    lines = []
    for index, run in enumerate(runs):
        if not run.records:
            continue
        colour = f"C{index}"
        total = len(run.records)
        for axes, chosen in zip(panels, (True, False), strict=True):
            values = sorted(max(r.seconds, 1e-4) * 1000 for r in run.records if r.success is chosen)
            ys = [(i + 1) / total for i in range(len(values))]
            (line,) = axes.step(
                [values[0], *values] if values else [], [0.0, *ys] if values else [], where="post", color=colour
            )
        share = sum(r.success for r in run.records) / total
        line.set_label(f"{CONTENDERS[run.name]}: {share:.1%} succeeded (n={total})")
        lines.append(line)
    titles = ("successful tasks", "failed tasks (error, hang, wrong or covered-up answer)")
    for axes, title in zip(panels, titles, strict=True):
        axes.axvline(deadline_s * 1000, color="grey", linestyle="--", linewidth=1)
        axes.text(deadline_s * 1000, 1.0, "deadline ", color="grey", fontsize=8, ha="right", va="top")
        axes.set_xscale("log")
        axes.set_xlabel("task latency (ms, log scale)")
        axes.set_ylim(0, 1.02)
        axes.grid(True, which="both", alpha=0.3)
        axes.set_title(title, fontsize=10)
    panels[0].set_ylabel("share of all tasks finished by then")
    figure.suptitle(f"ironloop bench chaos: task latency, profile {profile!r}")
    figure.legend(handles=lines, loc="lower center", ncol=2, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.04 + 0.035 * math.ceil(len(lines) / 2), 1, 1))
    return figure


# -- the command ---------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=positive_int, default=1000, help="tasks per contender (default 1000)")
    parser.add_argument("--profile", default="reference", help="fault profile: reference, harsh, outage, ...")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="fault and task seed")
    parser.add_argument("--concurrency", type=positive_int, default=8, help="tasks in flight per contender")
    parser.add_argument("--task-deadline", type=float, default=15.0, help="seconds before a task counts as a hang")
    parser.add_argument("--side-effect-share", type=float, default=0.1, help="share of payment tasks (0..1)")
    parser.add_argument(
        "--contenders",
        default=",".join(DEFAULT_CONTENDERS),
        help=f"comma-separated subset of {', '.join(CONTENDERS)} (default: {', '.join(DEFAULT_CONTENDERS)})",
    )
    parser.add_argument(
        "--parallel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the stock contenders at once in their own processes, after ironloop ran alone (default on)",
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where the JSON, table and PNG go")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")


@dataclass
class Settings:
    tasks: int
    profile: str
    seed: int
    concurrency: int
    deadline_s: float
    side_effect_share: float
    contenders: list[str] = field(default_factory=list)


def _run_one(name: str, settings: Settings, on_task: Callable[[], None] | None = None) -> ContenderRun:
    """One contender, start to end (module level, so a spawned process can run it)."""
    tasks = make_tasks(settings.tasks, settings.side_effect_share, settings.seed)
    return run_contender(
        name,
        tasks,
        profile=settings.profile,
        seed=settings.seed,
        concurrency=settings.concurrency,
        deadline_s=settings.deadline_s,
        on_task=on_task,
    )


def run_all(settings: Settings, *, parallel: bool, say: Any = print) -> list[ContenderRun]:
    """ironloop first, alone (each ironloop variant in turn); then the stock contenders, at once in their own
    processes when ``parallel``. A progress bar (on a terminal) counts the tasks of a contender run here, or the
    contenders run at once in other processes."""
    from ironloop.terminal import ProgressBar

    runs: dict[str, ContenderRun] = {}
    stock = [c for c in settings.contenders if c in STOCK_CONTENDERS]
    at_once = stock if parallel and len(stock) > 1 else []
    alone = [c for c in settings.contenders if c not in STOCK_CONTENDERS] + [c for c in stock if c not in at_once]
    for name in alone:
        say(f"running {name} ...")
        with ProgressBar(settings.tasks, f"{name} tasks") as bar:
            runs[name] = _run_one(name, settings, bar.advance)
        say(f"  {name} done in {runs[name].wall_s:.1f} s")
    if at_once:
        say(f"running {', '.join(at_once)} at once, one process each ...")
        context = multiprocessing.get_context("spawn")  # never fork a process that has service threads
        with (
            ProcessPoolExecutor(max_workers=len(at_once), mp_context=context) as pool,
            ProgressBar(len(at_once), "contenders done") as bar,
        ):
            futures = {pool.submit(_run_one, name, settings): name for name in at_once}
            for future in as_completed(futures):
                runs[futures[future]] = future.result()
                bar.advance()
        for name in at_once:
            say(f"  {name} done in {runs[name].wall_s:.1f} s")
    return [runs[name] for name in settings.contenders if name in runs]


def _bench_argv() -> list[str]:
    """The arguments after ``bench chaos`` (or after ``python -m benchmarks.chaos``), for the record."""
    argv = sys.argv[1:]
    return argv[2:] if argv[:2] == ["bench", "chaos"] else argv


def machine_facts() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def run(args: argparse.Namespace) -> int:
    from ironloop.demo.services.faults import profile_named

    profile_named(args.profile)  # an unknown profile fails before any work
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if unknown := [c for c in contenders if c not in CONTENDERS]:
        print(f"ironloop bench chaos: unknown contender(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    if not 0.0 <= args.side_effect_share <= 1.0:
        print("ironloop bench chaos: --side-effect-share must be within 0..1", file=sys.stderr)
        return 2
    if not args.no_plot and (missing := missing_matplotlib()):
        print(f"ironloop bench chaos: {missing}", file=sys.stderr)
        return 2
    settings = Settings(
        args.tasks, args.profile, args.seed, args.concurrency, args.task_deadline, args.side_effect_share, contenders
    )
    command = "ironloop bench chaos " + " ".join(shlex.quote(a) for a in _bench_argv())
    print(
        f"chaos: {args.tasks} tasks per contender, profile {args.profile}, seed {args.seed}, concurrency "
        f"{args.concurrency}, deadline {args.task_deadline:g} s, side-effect share {args.side_effect_share:g}"
    )
    started = time.perf_counter()
    runs = run_all(settings, parallel=args.parallel)
    total_s = time.perf_counter() - started
    summaries = {r.name: summarize(r, args.task_deadline) for r in runs}
    goals_of = {n: ironloop_goals(args.profile, s) for n, s in summaries.items() if n.startswith("ironloop")}
    goals = next(iter(goals_of.values()), [])

    print()
    print(format_table(summaries))
    print()
    print(format_distributions(summaries))
    for name, its_goals in goals_of.items():
        print(f"\n{name} goals under {args.profile!r}:")
        print(format_goals(its_goals))
    print(f"\nwall time {total_s:.0f} s")

    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    stem = f"chaos-{args.profile}"
    report: dict[str, Any] = {
        "benchmark": "chaos",
        "command": command,
        "settings": {
            "tasks": args.tasks,
            "profile": args.profile,
            "seed": args.seed,
            "concurrency": args.concurrency,
            "task_deadline_s": args.task_deadline,
            "side_effect_share": args.side_effect_share,
            "parallel_stock_contenders": args.parallel,
        },
        "machine": machine_facts(),
        "wall_s": round(total_s, 1),
        "contenders": summaries,
        "ironloop_goals": goals,
        "goals_by_contender": goals_of,
    }
    import json

    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = [
        f"`{command}` — {report['machine']['date']}, {report['machine']['cores']} cores, wall {total_s:.0f} s",
        "",
        format_markdown(summaries),
    ]
    for name, its_goals in goals_of.items():
        goal_lines = [f"- {line.strip()}" for line in format_goals(its_goals).splitlines()]
        markdown += ["", f"{name} goals under `{args.profile}`:", "", *goal_lines]
    (out / f"{stem}.md").write_text("\n".join(markdown) + "\n", encoding="utf-8")
    written = [out / f"{stem}.json", out / f"{stem}.md"]
    if not args.no_plot:
        plot_latencies(runs, out / f"{stem}.png", profile=args.profile, deadline_s=args.task_deadline)
        written.append(out / f"{stem}.png")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":  # python -m benchmarks.chaos ...
    _parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos")
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
