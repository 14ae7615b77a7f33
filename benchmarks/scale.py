"""Scale out: throughput, latency and CPU per task of 1, 2, 4... Celery worker processes against one process.

Each contender runs the same batch of demo tasks (the reference population question, search under the chosen fault
profile) on the same tool services (run by this process) and the same database: a worker command (``ironloop
worker --concurrency N``) per worker count, each on a queue of its own, and a single-process baseline that runs
the same per-task code (`distributed.runs.WorkerRuntime`: lease, checkpoints written synchronously) from a pool of
threads, without a broker. All contenders are started first and stay up; the batches are interleaved, round after
round, so a change in the machine's load hits them alike.

Per batch: all tasks are submitted at once; a task's latency runs from its submission to its last checkpoint;
throughput is tasks over the time from the first submission to the last checkpoint; CPU per task is the CPU time
the contender's processes used during the batch over the tasks (the broker's, the database's and this process's
are not counted). Writes ``benchmarks/results/scale.json`` and a plot of throughput against workers
(``scale.png``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ironloop.benchmarks import RESULTS_DIR
from ironloop.benchmarks.plots import missing_matplotlib, pyplot
from ironloop.benchmarks.processes import cpu_s, stop_group
from ironloop.checkpoints.stats import percentile
from ironloop.terminal import ProgressBar

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
BASELINE = "1 process"
READY_TIMEOUT_S = 180.0


@dataclass
class Batch:
    contender: str
    tasks: int
    wall_s: float
    latencies_s: list[float]
    cpu_s: float
    correct: int

    @property
    def throughput(self) -> float:
        return self.tasks / self.wall_s

    def row(self) -> dict[str, Any]:
        return {
            "contender": self.contender,
            "tasks": self.tasks,
            "tasks_per_s": round(self.throughput, 2),
            "p50_ms": round(percentile(self.latencies_s, 50) * 1000, 1),
            "p99_ms": round(percentile(self.latencies_s, 99) * 1000, 1),
            "cpu_ms_per_task": round(self.cpu_s / self.tasks * 1000, 1),
            "correct": self.correct,
        }


@dataclass
class ScaleResults:
    machine: str
    database: str
    broker: str
    profile: str
    tasks: int
    rounds: int
    batches: list[Batch] = field(default_factory=list)

    def table(self) -> list[dict[str, Any]]:
        """Per contender: the median over rounds of each figure."""
        rows = []
        for contender in dict.fromkeys(b.contender for b in self.batches):
            mine = [b.row() for b in self.batches if b.contender == contender]
            row: dict[str, Any] = {"contender": contender, "rounds": len(mine)}
            for key in ("tasks_per_s", "p50_ms", "p99_ms", "cpu_ms_per_task"):
                row[key] = round(statistics.median(r[key] for r in mine), 2)
            row["correct"] = f"{sum(r['correct'] for r in mine)}/{sum(r['tasks'] for r in mine)}"
            rows.append(row)
        return rows

    def format(self) -> str:
        lines = [
            f"{'contender':<12} {'tasks/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'CPU ms/task':>12} {'correct':>9}",
        ]
        for r in self.table():
            lines.append(
                f"{r['contender']:<12} {r['tasks_per_s']:>8.1f} {r['p50_ms']:>9.0f} {r['p99_ms']:>9.0f} "
                f"{r['cpu_ms_per_task']:>12.1f} {r['correct']:>9}"
            )
        return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", default="1,2,4", help="worker process counts to compare (default 1,2,4)")
    parser.add_argument("--tasks", type=int, default=200, help="tasks per batch (default 200)")
    parser.add_argument("--rounds", type=int, default=2, help="batches per contender, interleaved (default 2)")
    parser.add_argument("--profile", default="reference", help="fault profile of the search service")
    parser.add_argument("--seed", type=int, default=0, help="fault seed of the search service")
    parser.add_argument(
        "--db", default=None, help=f"a PostgreSQL or MariaDB URL (default $IRONLOOP_DB_URL or {DEFAULT_DB})"
    )
    parser.add_argument("--broker", default=None, help="broker URL (default $IRONLOOP_BROKER_URL or local RabbitMQ)")
    parser.add_argument("--baseline-threads", type=int, default=4, help="threads of the single-process baseline")
    parser.add_argument(
        "--out",
        dest="json_out",
        metavar="FILE",
        default=str(RESULTS_DIR / "scale.json"),
        help="write the figures as JSON to FILE, the plot beside it (default: %(default)s)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG of throughput against workers")


def run(args: argparse.Namespace) -> int:
    from ironloop.commands import EXIT_USAGE, CommandError
    from ironloop.demo.services.faults import PROFILES

    try:
        counts = [int(part) for part in args.workers.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--workers takes counts like 1,2,4; got {args.workers!r}", EXIT_USAGE) from None
    if not counts or min(counts) < 1 or args.tasks < 1 or args.rounds < 1:
        raise CommandError("--workers counts, --tasks and --rounds must be at least 1", EXIT_USAGE)
    if args.profile not in PROFILES:
        raise CommandError(f"unknown profile {args.profile!r}; choose one of: {', '.join(PROFILES)}", EXIT_USAGE)
    if not args.no_plot and (missing := missing_matplotlib()):
        raise CommandError(missing, EXIT_USAGE)
    db = args.db or os.environ.get("IRONLOOP_DB_URL") or DEFAULT_DB
    if db.startswith("sqlite"):
        raise CommandError("scale needs a server database (PostgreSQL or MariaDB): pass --db", EXIT_USAGE)
    broker = args.broker or os.environ.get("IRONLOOP_BROKER_URL") or DEFAULT_BROKER
    results = measure(counts, args.tasks, args.rounds, args.profile, args.seed, db, broker, args.baseline_threads)
    print(results.format())
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {**asdict(results), "table": results.table()}
    for batch in payload["batches"]:
        batch.pop("latencies_s")
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")
    if not args.no_plot:
        print(f"wrote {plot_throughput(results.table(), results.machine, out.with_suffix('.png'))}")
    return 0


def measure(
    counts: list[int], tasks: int, rounds: int, profile: str, seed: int, db: str, broker: str, baseline_threads: int
) -> ScaleResults:
    from ironloop.checkpoints import SQLAlchemySaver
    from ironloop.checkpoints.database import describe
    from ironloop.checkpoints.migrate import upgrade
    from ironloop.demo.services.server import start_tool_services

    tag = secrets.token_hex(3)
    services = start_tool_services(profile=profile, seed=seed)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IRONLOOP_")},
        "IRONLOOP_SEARCH_URL": services.url,
        "IRONLOOP_DB_URL": db,
        "IRONLOOP_BROKER_URL": broker,
    }
    contenders: dict[str, _Contender] = {}
    try:
        with SQLAlchemySaver.from_url(db, migrate=False) as saver:
            upgrade(saver.engine)
            results = ScaleResults(
                machine=f"{os.cpu_count()} cores, shared with other work", database=describe(saver.engine.url),
                broker=broker.split("@")[-1], profile=profile, tasks=tasks, rounds=rounds,
            )  # fmt: skip
            contenders[BASELINE] = _Baseline(env, baseline_threads)
            for n in counts:
                contenders[f"{n} worker{'s' if n > 1 else ''}"] = _Workers(env, n, f"ironloop-scale-{tag}-{n}")
            for contender in contenders.values():
                contender.wait_ready()
            print(f"contenders ready: {', '.join(contenders)}; {tasks} tasks per batch, {rounds} rounds", flush=True)
            order = list(contenders)
            for name in order:  # warm-up: every worker process builds its runtime before anything is timed
                contenders[name].batch(saver, f"warm-{tag}-{_slug(name)}", min(tasks, 2 * max(counts) + 2))
            with ProgressBar(rounds * len(order), "batches") as bar:
                for round_ in range(rounds):
                    for name in order if round_ % 2 == 0 else order[::-1]:
                        prefix = f"scale-{tag}-{round_}-{_slug(name)}"
                        wall, latencies, cpu, correct = contenders[name].batch(saver, prefix, tasks)
                        batch = Batch(name, tasks, wall, latencies, cpu, correct)
                        results.batches.append(batch)
                        bar.advance()
                        bar.print(f"round {round_ + 1} {name:<10} {batch.row()}")
    finally:
        for contender in contenders.values():
            contender.stop()
        services.stop()
    return results


class _Contender:
    def wait_ready(self) -> None: ...

    def batch(self, saver: Any, prefix: str, tasks: int) -> tuple[float, list[float], float, int]:
        raise NotImplementedError

    def stop(self) -> None: ...


class _Workers(_Contender):
    """``ironloop worker --concurrency N`` on a queue of its own."""

    def __init__(self, env: dict[str, str], processes: int, queue: str):
        self.queue = queue
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"{queue}.log"
        with self.log.open("wb") as log:
            command = ["worker", "-c", str(processes), "--queue", queue, "--loglevel=ERROR"]
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ironloop", *command],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        self.env = env

    def wait_ready(self) -> None:
        from ironloop.distributed.submission import submit

        deadline = time.monotonic() + READY_TIMEOUT_S
        probe = submit("What is the population of Paris?", queue=self.queue, broker_url=self.env["IRONLOOP_BROKER_URL"],
                       db_url=self.env["IRONLOOP_DB_URL"])  # fmt: skip
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"a worker exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(TimeoutError):
                probe.wait(timeout_s=2)
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready in {READY_TIMEOUT_S:.0f} s: {self.log.read_text()[-2000:]}")

    def batch(self, saver: Any, prefix: str, tasks: int) -> tuple[float, list[float], float, int]:
        from ironloop.distributed.submission import submit

        cpu_before = cpu_s(self.process.pid)
        submitted: dict[str, float] = {}
        for index in range(tasks):
            thread = f"{prefix}-{index}"
            submitted[thread] = time.time()
            submit(_question(), thread, queue=self.queue, broker_url=self.env["IRONLOOP_BROKER_URL"],
                   db_url=self.env["IRONLOOP_DB_URL"])  # fmt: skip
        _wait_released(saver, list(submitted))
        cpu = cpu_s(self.process.pid) - cpu_before
        return _figures(saver, submitted, cpu)

    def stop(self) -> None:
        stop_group(self.process)


class _Baseline(_Contender):
    """One process running the tasks from a pool of threads (``python -m ironloop.benchmarks.scale --baseline``)."""

    def __init__(self, env: dict[str, str], threads: int):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ironloop.benchmarks.scale", "--baseline", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, start_new_session=True,
        )  # fmt: skip

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the baseline process died")
        return json.loads(line)

    def wait_ready(self) -> None:
        self._ask({"op": "ping"})

    def batch(self, saver: Any, prefix: str, tasks: int) -> tuple[float, list[float], float, int]:
        answer = self._ask({"op": "batch", "prefix": prefix, "tasks": tasks})
        submitted = {f"{prefix}-{i}": answer["started"] for i in range(tasks)}
        return _figures(saver, submitted, answer["cpu_s"])

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def baseline_main(threads: int) -> int:
    """The single-process contender: read batch commands on stdin, run them, answer on stdout."""
    import resource

    from ironloop.distributed.runs import WorkerRuntime
    from ironloop.distributed.settings import Settings

    runtime = WorkerRuntime(Settings.from_env())
    pool = ThreadPoolExecutor(threads, thread_name_prefix="baseline")
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "batch":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            started = time.time()
            threads_ = [f"{command['prefix']}-{i}" for i in range(command["tasks"])]
            jobs = [pool.submit(runtime.run, t, _question(), f"msg-{t}", lease_wait_s=60) for t in threads_]
            for job in jobs:
                job.result()
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
            print(json.dumps({"started": started, "cpu_s": cpu}), flush=True)
        else:
            print(json.dumps({"ok": True}), flush=True)
    runtime.close()
    return 0


def _slug(name: str) -> str:
    return name.replace(" ", "_")


def _question() -> str:
    from ironloop.demo.scenario import DEMO_QUESTION

    return DEMO_QUESTION


def _wait_released(saver: Any, threads: list[str], timeout_s: float = 1800.0) -> None:
    """Until every thread's lease was taken and released (its run is over)."""
    from ironloop.checkpoints.schema import thread_leases
    from sqlalchemy import func, select

    c = thread_leases.c
    query = select(func.count()).where(c.thread_id.in_(threads), c.holder.is_(None))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with saver.engine.connect() as connection:
            if connection.execute(query).scalar_one() >= len(threads):
                return
        time.sleep(0.05)
    raise RuntimeError(f"{len(threads)} tasks not done in {timeout_s:.0f} s")


def _figures(saver: Any, submitted: dict[str, float], cpu_s: float) -> tuple[float, list[float], float, int]:
    """Wall time, latencies (submission to last checkpoint) and right answers of a finished batch."""
    from ironloop.checkpoints.schema import checkpoints
    from ironloop.demo.scenario import expected_answer, places_in
    from ironloop.demo.tasks import corpus_population
    from ironloop.distributed.runs import final_answer
    from ironloop.graph.status import state_reader
    from sqlalchemy import func, select

    c = checkpoints.c
    query = (
        select(c.thread_id, func.max(c.created_at))
        .where(c.thread_id.in_(list(submitted)), c.checkpoint_ns == "")
        .group_by(c.thread_id)
    )
    with saver.engine.connect() as connection:
        finished = {thread: when.timestamp() for thread, when in connection.execute(query)}
    latencies = [finished[t] - submitted[t] for t in submitted]
    wall = max(finished.values()) - min(submitted.values())
    places = places_in(_question())
    expected = expected_answer(places, [corpus_population(p) for p in places])
    agent = state_reader(saver)
    correct = sum(
        (final_answer(agent.get_state({"configurable": {"thread_id": t}})) or "").startswith(expected)
        for t in submitted
    )
    return wall, latencies, cpu_s, correct


def plot_throughput(table: list[dict[str, Any]], machine: str, path: Path) -> Path:
    """Throughput against worker processes, the baseline as a line (from `ScaleResults.table` rows)."""
    plt = pyplot()
    workers = [(int(r["contender"].split()[0]), r["tasks_per_s"]) for r in table if r["contender"] != BASELINE]
    baseline = next((r["tasks_per_s"] for r in table if r["contender"] == BASELINE), None)
    figure, axes = plt.subplots(figsize=(5, 3.5))
    axes.plot([w for w, _ in workers], [t for _, t in workers], marker="o", label="Celery worker processes")
    if baseline is not None:
        axes.axhline(baseline, linestyle="--", color="grey", label="one process (baseline)")
    axes.set_xlabel("worker processes")
    axes.set_ylabel("tasks / s")
    axes.set_xticks([w for w, _ in workers])
    axes.set_ylim(bottom=0)
    axes.set_title(f"throughput ({machine})", fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


if __name__ == "__main__":
    if sys.argv[1:2] == ["--baseline"]:
        sys.exit(baseline_main(int(sys.argv[2])))
    parser = argparse.ArgumentParser(prog="python -m ironloop.benchmarks.scale", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
