"""Crash kills: SIGKILL the agent at random moments of payment tasks, resume it, prove every charge happened once.

Each task asks the offline demo agent to charge a few customers ("Charge cus_… $12.50 and cus_… $7.25."). The
agent runs in a worker process with SQL checkpoints (``durability="sync"``); the payments service runs in this
process, so its ledger is the truth about what was charged. Workers are killed with SIGKILL at seeded random
moments (anywhere in the run: inside a side-effect call, during checkpoint writes, between steps), right after
the payments service committed a charge but before the answer left it (`on_commit`), and while an attempt waits
on a service that committed and then hung. After each kill the task is resumed in a new process, again and
again, until its thread is finished. Then every task is checked: the right answer, exactly one charge per
logical call, one observation per tool call, and an idempotency ledger that agrees with both.

Forking a fresh interpreter costs ~1.5 s of imports, so a *zygote* (``python -m benchmarks.crash --zygote``)
imports everything once, starts no thread, and forks one worker per process lifetime on request. It reports
each worker's pid and its end, and reaps a worker only when told to, so a pid this process may still signal is
never reused.

``ironloop bench crash --kills 500`` prints the figures and writes ``benchmarks/results/crash.json``;
``tests/test_crash_kills.py`` runs the same harness with fewer kills.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import queue
import random
import secrets
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ironloop.benchmarks import RESULTS_DIR
from ironloop.commands import positive_int
from ironloop.terminal import ProgressBar

if TYPE_CHECKING:
    from ironloop.checkpoints import SQLAlchemySaver
    from ironloop.demo.services.payments import Charge
    from ironloop.demo.services.server import ToolServices
    from ironloop.tools.idempotency import KeyStatus
    from langgraph.graph.state import CompiledStateGraph

"""The project root: the zygote imports the same code as this process."""

MIXED = "mixed"
"""The default profile: each task gets ``lost-responses`` or ``none`` (no faults) at random."""

CUSTOMERS = ("ada", "bob", "cyd")

P_LOADING_KILL = 0.15
"""Chance of a kill timer while a worker loads (a seeded delay within a typical loading time, from the fork)."""
P_TIMED_KILL = 0.65
"""Chance of a kill timer once a worker reached the graph (a seeded delay within its typical run)."""
P_CALL_KILL = 0.25
"""Chance of a kill soon after a worker says it is about to send a charge (inside the side-effect call)."""
CALL_KILL_S = (0.0, 0.012)
"""Delay of that kill: a charge takes a few milliseconds, from the request to the ledger's *completed*."""
P_WRITE_KILL = 0.06
"""Chance of a kill as soon as a worker says it is writing a checkpoint (or a task's writes)."""
P_COMMIT_KILL = 0.3
"""Chance of a kill from the payments service, right after a charge committed and before its answer is sent."""
P_HANG_KILL = 0.8
"""Chance of a kill while a charge whose service committed and then hung is still waited on."""
HANG_KILL_S = (0.02, 0.6)
"""Delay of that kill: well inside charge_card's 2 s attempt timeout."""
TIMED_SPREAD = 1.25
"""Timed kills land uniformly in [0, spread × the median run of an undisturbed worker]."""

MOMENTS = ("side_effect_call", "hang_in_flight", "after_commit", "checkpoint_write", "startup", "other")
"""Where a kill landed: inside a charge_card call (between its ledger *started* and its end), in a charge whose
service committed and hung, right after the service committed a charge (before the answer left it), inside a
checkpoint write, before the worker reached the graph (loading), anywhere else (model step, between steps)."""

WARM_MODULES = (
    "ironloop.demo.agent",
    "ironloop.commands",
    "ironloop.graph.status",
    "ironloop.checkpoints.idempotency",
    "ironloop.checkpoints.migrate",
    "sqlite3",
    "psycopg",
    "pymysql",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "sqlalchemy.dialects.postgresql.psycopg",
    "httpcore",
    "h11",
    "anyio._backends._asyncio",
)
"""What a worker would otherwise import on its own, each time (none of it starts a thread)."""

EXIT_WORKER_ERROR = 3
ZYGOTE_READY_TIMEOUT_S = 120.0


# -- what to run, and what came out -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashPlan:
    kills: int = 500
    """Run tasks until at least this many workers were killed."""
    seed: int = 0
    db_url: str | None = None
    """Checkpoint database; ``None``: a SQLite file in the work directory."""
    profile: str = MIXED
    """A fault profile of the tool services (`tools.services.faults.PROFILES`), or ``mixed``."""
    concurrency: int = 3
    """Tasks in flight at once (one worker process each)."""
    max_kills_per_task: int = 4
    max_cycles: int = 12
    """Workers a task may lose to kills; after that it runs undisturbed."""
    extra_cycles: int = 4
    """Undisturbed workers a task may use after ``max_cycles`` before it counts as wedged."""
    cycle_timeout_s: float = 60.0
    """A worker alive this long is stuck: it is killed and counted as a problem."""

    def __post_init__(self) -> None:
        from ironloop.demo.services.faults import PROFILES

        if self.profile != MIXED and self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose one of: {', '.join([MIXED, *PROFILES])}")
        if self.kills < 1 or self.concurrency < 1 or self.max_kills_per_task < 1:
            raise ValueError("kills, concurrency and max_kills_per_task must be at least 1")


@dataclass
class CrashFigures:
    database: str = ""
    tasks: int = 0
    charges_asked: int = 0
    kills: int = 0
    kills_by_moment: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MOMENTS, 0))
    workers: int = 0
    """Worker processes run (each task's first one, then one per resume)."""
    resumes: int = 0
    restarts: int = 0
    """Resumes that found no checkpoint yet and started the task's input again."""
    correct_answers: int = 0
    honest_answers: int = 0
    """Tasks answered "not every charge went through" because injected faults defeated every attempt of a call
    within one process (not a crash; rare under ``lost-responses``), told truthfully."""
    gave_up: int = 0
    """The calls of those tasks: "outcome unknown" (at most one charge made) or "failed" (none made)."""
    wrong_answers: int = 0
    duplicate_charges: int = 0
    orphaned_calls: int = 0
    ledger_inconsistencies: int = 0
    unaccounted_charges: int = 0
    wedged_threads: int = 0
    worker_errors: int = 0
    service_charges: int = 0
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def in_side_effect_call(self) -> int:
        return self.kills_by_moment["side_effect_call"] + self.kills_by_moment["hang_in_flight"]

    @property
    def failures(self) -> int:
        """Everything that breaks the promise (or the harness's ability to check it)."""
        return (
            self.wrong_answers
            + self.duplicate_charges
            + self.orphaned_calls
            + self.ledger_inconsistencies
            + self.unaccounted_charges
            + self.wedged_threads
            + self.worker_errors
        )

    @property
    def ok(self) -> bool:
        return self.failures == 0 and not self.problems

    def format(self) -> str:
        m = self.kills_by_moment
        rows = [
            ("database", self.database),
            ("tasks", f"{self.tasks}  ({self.charges_asked} charges asked for)"),
            (
                "kills",
                f"{self.kills}  in side-effect call {self.in_side_effect_call} (of which hang after commit "
                f"{m['hang_in_flight']}), after commit {m['after_commit']}, other "
                f"{m['checkpoint_write'] + m['startup'] + m['other']} (checkpoint write {m['checkpoint_write']}, "
                f"loading {m['startup']}, model step or between steps {m['other']})",
            ),
            ("worker processes", f"{self.workers}  ({self.resumes} resumes, {self.restarts} before a 1st checkpoint)"),
            ("correct answers", f"{self.correct_answers}/{self.tasks}"),
            (
                "honest 'not charged'",
                f"{self.honest_answers}  ({self.gave_up} calls whose every attempt met an injected fault)",
            ),
            ("wrong answers", str(self.wrong_answers)),
            ("duplicate charges", f"{self.duplicate_charges}  ({self.service_charges} charges in the service ledger)"),
            ("orphaned calls", str(self.orphaned_calls)),
            ("ledger inconsistencies", str(self.ledger_inconsistencies)),
            ("unaccounted charges", str(self.unaccounted_charges)),
            ("wedged threads", str(self.wedged_threads)),
            ("worker errors", str(self.worker_errors)),
            ("wall time", f"{self.wall_s:.1f} s"),
        ]
        lines = [f"{name:<23}{value}" for name, value in rows]
        lines += [f"problem: {p}" for p in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"... and {len(self.problems) - 20} more problems")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data["in_side_effect_call"] = self.in_side_effect_call
        data["ok"] = self.ok
        return data


def run_crash(plan: CrashPlan, workdir: Path | None = None) -> CrashFigures:
    """Run the plan and check every task; the work directory keeps the workers' logs (and the SQLite file)."""
    own = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="ironloop-crash-")) if workdir is None else workdir
    directory.mkdir(parents=True, exist_ok=True)
    figures = _Harness(plan, directory).run()
    if own and figures.ok:
        shutil.rmtree(directory, ignore_errors=True)
    elif not figures.ok:
        figures.problems.append(f"workers' logs are in {directory}")
    return figures


# -- the command line -------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kills", type=positive_int, default=500, help="kill workers this many times (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tasks, kill moments and faults")
    parser.add_argument("--db", default=None, help="checkpoint database URL (default: a temporary SQLite file)")
    parser.add_argument(
        "--profile", default=MIXED, help="fault profile of the payments service, or mixed: lost-responses and none"
    )
    parser.add_argument("--concurrency", type=positive_int, default=3, help="tasks in flight at once (default 3)")
    parser.add_argument(
        "--out",
        dest="json_out",
        metavar="FILE",
        default=str(RESULTS_DIR / "crash.json"),
        help="write the figures as JSON to FILE (default: %(default)s; with --distributed: crash-distributed.json)",
    )
    fleet = parser.add_argument_group("--distributed: Celery workers on a broker (benchmarks/crash_distributed.py)")
    fleet.add_argument("--distributed", action="store_true", help="kill Celery workers instead of single processes")
    fleet.add_argument("--broker", default=None, help="broker URL (default: $IRONLOOP_BROKER_URL or local RabbitMQ)")
    fleet.add_argument("--workers", type=positive_int, default=2, help="worker commands at once (default 2)")
    fleet.add_argument("--worker-concurrency", type=positive_int, default=2, help="processes per worker (default 2)")


def run(args: argparse.Namespace) -> int:
    from ironloop.commands import EXIT_USAGE, CommandError

    if args.distributed:
        from ironloop.benchmarks.crash_distributed import run as run_distributed

        return run_distributed(args)

    try:
        plan = CrashPlan(
            kills=args.kills, seed=args.seed, db_url=args.db, profile=args.profile, concurrency=args.concurrency
        )
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    print(
        f"crash kills: {plan.kills} kills, payments profile {plan.profile}, seed {plan.seed}, "
        f"{plan.concurrency} tasks at once"
    )
    figures = run_crash(plan)
    print(figures.format())
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"plan": asdict(plan), "figures": figures.summary()}, indent=2) + "\n")
        print(f"wrote {out}")
    return 0 if figures.ok else 1


# -- the zygote and its workers (child processes) ---------------------------------------------------------------


def zygote_main() -> int:
    """Import the runtime once, then fork one worker per ``run`` line on stdin; report on stdout (JSON lines)."""
    import importlib

    for module in WARM_MODULES:  # imported once here, so that workers start warm
        with contextlib.suppress(ImportError):
            importlib.import_module(module)

    if threading.active_count() != 1:  # forking a process with threads can deadlock its children
        print(f"zygote: imports started threads: {threading.enumerate()}", file=sys.stderr)
        return 2
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    _emit({"event": "zygote_ready", "pid": os.getpid()})
    running: set[int] = set()  # forked; end not reported yet
    unreaped: set[int] = set()  # forked; not reaped yet (the parent says when)
    pending = b""
    while True:
        readable, _, _ = select.select([0, wake_r], [], [], 1.0)
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_r, 512):
                    pass
        for pid in sorted(running):
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is None or info.si_pid == 0:
                continue
            running.discard(pid)
            exited = info.si_code == os.CLD_EXITED
            _emit(
                {
                    "event": "exited",
                    "pid": pid,
                    "code": info.si_status if exited else None,
                    "signal": None if exited else info.si_status,
                }
            )
        if 0 not in readable:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            command = json.loads(line)
            if command["op"] == "reap":
                os.waitpid(command["pid"], 0)
                unreaped.discard(command["pid"])
            elif command["op"] == "run":
                pid = os.fork()
                if pid == 0:
                    code = EXIT_WORKER_ERROR
                    try:
                        signal.set_wakeup_fd(-1)
                        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                        os.close(wake_r)
                        os.close(wake_w)
                        code = _worker(command)
                    finally:
                        os._exit(code)
                running.add(pid)
                unreaped.add(pid)
                _emit({"event": "started", "id": command["id"], "pid": pid})
    for pid in unreaped:  # stdin closed: the parent is done (or gone)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return 0


def _emit(event: dict[str, Any]) -> None:
    os.write(1, (json.dumps(event) + "\n").encode())


def _worker(command: dict[str, Any]) -> int:
    """A worker's life: start the task's thread (no checkpoint yet) or resume it, until done or killed."""
    null = os.open(os.devnull, os.O_RDWR)
    report = os.dup(1)  # the zygote's channel to the parent; a worker writes whole lines (atomic) or nothing
    os.dup2(null, 0)
    os.dup2(null, 1)  # keep stray prints out of that channel
    os.dup2(os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), 2)
    print(f"--- {command['id']} pid {os.getpid()}", file=sys.stderr, flush=True)
    markers = os.open(command["markers"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def mark(code: bytes) -> None:
        os.write(markers, code)

    try:
        _run_step(command, mark, report)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return EXIT_WORKER_ERROR
    return 0


def _run_step(command: dict[str, Any], mark: Callable[[bytes], None], report: int) -> None:
    from ironloop.commands import AGENT_KEY
    from ironloop.demo.agent import build_demo_agent

    attempt = (json.dumps({"event": "attempt", "id": command["id"]}) + "\n").encode()
    write = (json.dumps({"event": "write", "id": command["id"]}) + "\n").encode()
    ready = (json.dumps({"event": "ready", "id": command["id"]}) + "\n").encode()
    saver = _tracing_saver_class(mark, lambda: os.write(report, write)).from_url(command["db"])
    url = command["url"]

    def services_url() -> str:  # resolved by charge_card right before each attempt's request
        mark(b"A")
        os.write(report, attempt)
        return url

    agent = build_demo_agent(services_url, checkpointer=saver)
    config: Any = {"configurable": {"thread_id": command["thread"]}, "metadata": {AGENT_KEY: "demo"}}
    if agent.get_state(config).created_at is None:  # not even the input was checkpointed: start again
        mark(b"F")
        os.write(report, ready)
        agent.invoke({"messages": [("user", command["question"])]}, config, durability="sync")
    else:
        mark(b"R")
        os.write(report, ready)
        agent.invoke(None, config, durability="sync")
    mark(b"E")


def _tracing_saver_class(mark: Callable[[bytes], None], announce: Callable[[], object]) -> type[SQLAlchemySaver]:
    """`SQLAlchemySaver` marking the start and end of each write (so a kill can be placed after the fact), and
    announcing each write to the parent (which may kill right then)."""
    from ironloop.checkpoints import SQLAlchemySaver

    class TracingSaver(SQLAlchemySaver):
        def put(self, *args: Any, **kwargs: Any) -> Any:
            mark(b"P")
            announce()
            result = super().put(*args, **kwargs)
            mark(b"p")
            return result

        def put_writes(self, *args: Any, **kwargs: Any) -> None:
            mark(b"W")
            announce()
            super().put_writes(*args, **kwargs)
            mark(b"w")

    return TracingSaver


# -- the parent: tasks, kills, resumes --------------------------------------------------------------------------


@dataclass(eq=False)
class _Task:
    index: int
    thread_id: str
    question: str
    charges: list[tuple[str, int]]
    profile: str
    rng: random.Random
    kills_planned: int
    markers: Path
    log: Path
    kills: int = 0
    cycles: int = 0
    pid: int | None = None
    started_at: float = 0.0
    ready_at: float | None = None
    kill_cause: str | None = None
    done: bool = False

    @property
    def config(self) -> Any:
        return {"configurable": {"thread_id": self.thread_id}}


class _Zygote:
    """The zygote process, seen from the parent: send it commands; its reports arrive on ``events``."""

    def __init__(self, workdir: Path, events: queue.Queue[dict[str, Any]]):
        self.events = events
        self.log_path = workdir / "zygote.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ironloop.benchmarks.crash", "--zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=workdir,
        )
        self._lock = threading.Lock()
        self._ready: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, name="crash-zygote-reader", daemon=True).start()
        try:
            first = self._ready.get(timeout=ZYGOTE_READY_TIMEOUT_S)
        except queue.Empty:
            first = {"event": "timeout"}
        if first.get("event") != "zygote_ready":
            self.close()
            raise RuntimeError(f"the crash zygote did not start: {self.log_tail()}")

    def _read(self) -> None:
        stdout: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        first = True
        for line in stdout:
            try:
                event = json.loads(line)
            except ValueError:  # cannot happen (whole lines, each one write); say so rather than stop reading
                event = {"event": "garbled", "line": line.decode(errors="replace")}
            (self._ready if first else self.events).put(event)
            first = False
        (self._ready if first else self.events).put({"event": "zygote_exit"})

    def send(self, command: dict[str, Any]) -> None:
        stdin: IO[bytes] = self.process.stdin  # type: ignore[assignment]
        with self._lock:
            stdin.write((json.dumps(command) + "\n").encode())
            stdin.flush()

    def log_tail(self) -> str:
        self._log.flush()
        return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-5:])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


class _Payments:
    """One payments service (one fault profile) with the kill hooks: its faults and its commits are watched."""

    def __init__(self, harness: _Harness, profile: str, seed: int):
        from ironloop.demo.services.faults import Fault
        from ironloop.demo.services.server import start_tool_services

        self.harness = harness
        self.hang = Fault.HANG_AFTER_COMMIT
        self.last_fault: Any = None
        self.services: ToolServices = start_tool_services(profile=profile, seed=seed, on_commit=self._on_commit)
        draw = self.services.payments.draw

        def watched_draw(key: str) -> Any:
            # The service draws a request's fault, charges and calls on_commit with no await in between, on
            # its one event-loop thread: at on_commit, the last fault drawn is the committing request's.
            self.last_fault = draw(key)
            return self.last_fault

        self.services.payments.draw = watched_draw  # type: ignore[method-assign]

    def _on_commit(self, charge: Charge) -> None:
        self.harness.on_commit(charge, hung=self.last_fault is self.hang)

    def stop(self) -> None:
        self.services.stop()


class _Harness:
    def __init__(self, plan: CrashPlan, workdir: Path):
        self.plan = plan
        self.workdir = workdir
        self.db_url = plan.db_url or f"sqlite:///{workdir / 'crash.db'}"
        self.run_tag = f"{plan.seed}{secrets.token_hex(2)}"  # thread ids and customers unique in a shared database
        self.figures = CrashFigures()
        self.lock = threading.Lock()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.timers: list[tuple[float, int, int, int, str]] = []  # (when, seq, task, cycle, cause)
        self._seq = 0
        self.tasks: list[_Task] = []
        self.by_customer: dict[str, _Task] = {}
        self.by_pid: dict[int, _Task] = {}
        self.loading_s: deque[float] = deque([0.05], maxlen=50)
        """Recent times from fork to reaching the graph: their median spans the kills while loading."""
        self.run_s: deque[float] = deque([0.15], maxlen=50)
        """Recent runs (graph reached to exit) of undisturbed workers: their median spans the timed kills."""
        self.bar = ProgressBar(0, "kills")
        """Kills done, on a terminal (set up by `run`)."""

    # -- the run

    def run(self) -> CrashFigures:
        from ironloop.checkpoints import SQLAlchemySaver
        from ironloop.checkpoints.database import describe
        from ironloop.checkpoints.idempotency import SQLIdempotencyStore
        from ironloop.demo.agent import build_demo_agent

        started = time.monotonic()
        for name in ("markers", "logs"):
            (self.workdir / name).mkdir(exist_ok=True)
        with SQLAlchemySaver.from_url(self.db_url) as saver:
            saver.setup()  # migrate once, before workers race to do it
            self.figures.database = describe(saver.engine.url)
            self.saver = saver
            self.store = SQLIdempotencyStore(saver.engine)
            self.agent: CompiledStateGraph = build_demo_agent("http://127.0.0.1:9", checkpointer=saver)
            profiles = ("lost-responses", "none") if self.plan.profile == MIXED else (self.plan.profile,)
            self.payments = {p: _Payments(self, p, self.plan.seed) for p in profiles}
            try:
                self.zygote = _Zygote(self.workdir, self.events)
                try:
                    with ProgressBar(self.plan.kills, "kills") as self.bar:
                        self._loop()
                finally:
                    self.zygote.close()
                self._verify_all()
            finally:
                for service in self.payments.values():
                    service.stop()
        self.figures.wall_s = time.monotonic() - started
        return self.figures

    def _loop(self) -> None:
        active: set[_Task] = set()
        max_tasks = self.plan.kills * 5 + 10  # a safety net should kills stop landing at all
        starting = True
        while True:
            while starting and len(active) < self.plan.concurrency and self._kills_in_sight(active) < self.plan.kills:
                if len(self.tasks) >= max_tasks:
                    self.figures.problems.append(f"stopped starting tasks after {max_tasks}: kills did not land")
                    starting = False
                    break
                task = self._new_task(len(self.tasks))
                active.add(task)
                self._start_worker(task)
            if not active:
                return
            wait = self._fire_timers()
            self._watchdog(active)
            self.bar.update(self.figures.kills)
            try:
                event = self.events.get(timeout=wait)
            except queue.Empty:
                continue
            if event["event"] == "started":
                self._on_started(event)
            elif event["event"] == "ready":
                self._on_ready(event)
            elif event["event"] == "attempt":
                self._on_announced(event, P_CALL_KILL, CALL_KILL_S, "in_call")
            elif event["event"] == "write":
                self._on_announced(event, P_WRITE_KILL, (0.0, 0.0), "in_write")
            elif event["event"] == "exited":
                self._on_exited(event, active)
            elif event["event"] == "garbled":
                self.figures.problems.append(f"garbled report from the zygote: {event['line']!r}")
            elif event["event"] == "zygote_exit":
                raise RuntimeError(f"the crash zygote died: {self.zygote.log_tail()}")

    def _kills_in_sight(self, active: set[_Task]) -> int:
        return self.figures.kills + sum(max(0, t.kills_planned - t.kills) for t in active)

    def _new_task(self, index: int) -> _Task:
        from ironloop.demo.scenario import charges_in

        rng = random.Random(f"{self.plan.seed}:{index}")
        names = CUSTOMERS[: rng.choice((1, 2, 2, 2, 3))]
        charges = [(f"cus_{self.run_tag}_{index}_{name}", rng.randint(100, 99_999)) for name in names]
        asks = [f"{customer} ${cents // 100}.{cents % 100:02d}" for customer, cents in charges]
        question = f"Charge {_join(asks)}."
        assert charges_in(question) == charges, question
        if self.plan.profile == MIXED:
            profile = "lost-responses" if rng.random() < 0.5 else "none"
        else:
            profile = self.plan.profile
        task = _Task(
            index=index,
            thread_id=f"crash-{self.run_tag}-{index}",
            question=question,
            charges=charges,
            profile=profile,
            rng=rng,
            kills_planned=rng.randint(1, self.plan.max_kills_per_task),
            markers=self.workdir / "markers" / f"{index}.txt",
            log=self.workdir / "logs" / f"{index}.log",
        )
        with self.lock:
            self.tasks.append(task)
            for customer, _ in charges:
                self.by_customer[customer] = task
        self.figures.tasks += 1
        self.figures.charges_asked += len(charges)
        return task

    def _start_worker(self, task: _Task) -> None:
        task.cycles += 1
        self.figures.workers += 1
        if task.cycles > 1:
            self.figures.resumes += 1
        self.zygote.send(
            {
                "op": "run",
                "id": f"{task.index}.{task.cycles}",
                "thread": task.thread_id,
                "question": task.question,
                "db": self.db_url,
                "url": self.payments[task.profile].services.url,
                "markers": str(task.markers),
                "log": str(task.log),
            }
        )

    def _may_kill(self, task: _Task) -> bool:
        return (
            task.pid is not None
            and task.kill_cause is None
            and task.kills < task.kills_planned
            and task.cycles <= self.plan.max_cycles
        )

    def _kill(self, task: _Task, cause: str) -> None:
        """SIGKILL the task's worker (under the lock). Its pid cannot be reused: the zygote reaps only when told."""
        assert task.pid is not None
        task.kill_cause = cause
        with contextlib.suppress(ProcessLookupError):
            os.kill(task.pid, signal.SIGKILL)

    def _schedule(self, delay_s: float, task: _Task, cause: str) -> None:
        self._seq += 1
        heapq.heappush(self.timers, (time.monotonic() + delay_s, self._seq, task.index, task.cycles, cause))

    def _fire_timers(self) -> float:
        """Kill the workers whose timers are due; the time until the next timer (at most 0.5 s)."""
        with self.lock:
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, index, cycle, cause = heapq.heappop(self.timers)
                task = self.tasks[index]
                if task.cycles == cycle and self._may_kill(task):
                    self._kill(task, cause)
            return min(0.5, max(0.0, self.timers[0][0] - now)) if self.timers else 0.5

    def _watchdog(self, active: set[_Task]) -> None:
        now = time.monotonic()
        with self.lock:
            for task in active:
                stuck = now - task.started_at > self.plan.cycle_timeout_s
                if task.pid is not None and task.kill_cause is None and stuck:
                    self._kill(task, "watchdog")

    def on_commit(self, charge: Charge, *, hung: bool) -> None:
        """Called by a payments service right after a new charge is committed, before any answer is sent."""
        with self.lock:
            task = self.by_customer.get(charge.customer_id)
            if task is None or not self._may_kill(task):
                return
            if hung and task.rng.random() < P_HANG_KILL:
                self._schedule(task.rng.uniform(*HANG_KILL_S), task, "hang_in_flight")
                self.events.put({"event": "wake"})
            elif task.rng.random() < P_COMMIT_KILL:
                self._kill(task, "after_commit")

    def _on_started(self, event: dict[str, Any]) -> None:
        task = self.tasks[int(event["id"].split(".")[0])]
        with self.lock:
            task.pid = event["pid"]
            task.started_at, task.ready_at = time.monotonic(), None
            self.by_pid[task.pid] = task
            if self._may_kill(task) and task.rng.random() < P_LOADING_KILL:
                self._schedule(task.rng.uniform(0.0, statistics.median(self.loading_s)), task, "timed")

    def _on_ready(self, event: dict[str, Any]) -> None:
        index, cycle = (int(part) for part in event["id"].split("."))
        task = self.tasks[index]
        with self.lock:
            if task.cycles != cycle or task.pid is None:
                return
            task.ready_at = time.monotonic()
            self.loading_s.append(task.ready_at - task.started_at)
            if self._may_kill(task) and task.rng.random() < P_TIMED_KILL:
                span = statistics.median(self.run_s) * TIMED_SPREAD
                self._schedule(task.rng.uniform(0.0, span), task, "timed")

    def _on_announced(self, event: dict[str, Any], chance: float, delay_s: tuple[float, float], cause: str) -> None:
        """A worker is about to send a charge or write a checkpoint: perhaps kill it a moment later."""
        index, cycle = (int(part) for part in event["id"].split("."))
        task = self.tasks[index]
        with self.lock:
            if task.cycles == cycle and self._may_kill(task) and task.rng.random() < chance:
                delay = task.rng.uniform(*delay_s)
                if delay > 0:
                    self._schedule(delay, task, cause)
                else:
                    self._kill(task, cause)

    def _on_exited(self, event: dict[str, Any], active: set[_Task]) -> None:
        from ironloop.graph.status import FINISHED, status_of

        with self.lock:
            task = self.by_pid.pop(event["pid"])
            now = time.monotonic()
            lifetime, ran = now - task.started_at, None if task.ready_at is None else now - task.ready_at
            cause, task.kill_cause, task.pid = task.kill_cause, None, None
        self.zygote.send({"op": "reap", "pid": event["pid"]})
        markers = task.markers.read_text() if task.markers.exists() else ""
        if "F" in markers and task.cycles > 1:
            self.figures.restarts += 1
        if event["signal"] == signal.SIGKILL:
            if cause == "watchdog":
                self.figures.wedged_threads += 1
                self.figures.problems.append(f"{task.thread_id}: worker stuck for {lifetime:.0f} s, killed")
                active.discard(task)
                return
            moment = self._moment(task, cause, markers)
            task.kills += 1
            self.figures.kills += 1
            self.figures.kills_by_moment[moment] += 1
        elif event["code"] == 0:
            if ran is not None:
                self.run_s.append(ran)
        else:
            self.figures.worker_errors += 1
            self.figures.problems.append(f"{task.thread_id}: worker ended with {event}; see {task.log}")
        snapshot = self.agent.get_state(task.config)
        if snapshot.created_at is not None and status_of(snapshot) == FINISHED:
            task.done = True
            active.discard(task)
        elif task.cycles >= self.plan.max_cycles + self.plan.extra_cycles:
            self.figures.wedged_threads += 1
            self.figures.problems.append(f"{task.thread_id}: not finished after {task.cycles} workers")
            active.discard(task)
        else:
            self._start_worker(task)

    def _moment(self, task: _Task, cause: str | None, markers: str) -> str:
        """Where a kill landed, from its cause, the worker's markers and what the ledger holds now it is dead."""
        if cause in ("after_commit", "hang_in_flight"):
            return cause
        if cause is None:
            self.figures.problems.append(f"{task.thread_id}: worker killed by someone else")
        depth = 0
        for code in markers:
            depth += {"P": 1, "W": 1, "p": -1, "w": -1}.get(code, 0)
        if depth > 0:
            return "checkpoint_write"
        if not ({"F", "R"} & set(markers)):
            return "startup"
        from ironloop.tools.idempotency import KeyStatus

        if "A" in markers and any(e.status is KeyStatus.STARTED for e in self.store.entries(task.thread_id)):
            return "side_effect_call"
        return "other"

    # -- the checks

    def _verify_all(self) -> None:
        charges = [c for p in self.payments.values() for c in p.services.ledger.snapshot()]
        self.figures.service_charges = len(charges)
        accounted: dict[str, _Task] = {}
        for task in self.tasks:
            if task.done:
                own = [c for c in charges if self.by_customer.get(c.customer_id) is task]
                for key in self._verify(task, own):
                    accounted[key] = task
        for charge in charges:
            owner = self.by_customer.get(charge.customer_id)
            if owner is not None and not owner.done:
                continue  # a wedged task: already counted
            if charge.idempotency_key is None or accounted.get(charge.idempotency_key) is not owner:
                self.figures.unaccounted_charges += 1
                self.figures.problems.append(f"charge {charge} belongs to no recorded call")

    def _verify(self, task: _Task, charges: list[Charge]) -> list[str]:
        """Check one finished task; returns the idempotency keys its calls own."""
        from ironloop.tools.idempotency import KeyStatus, idempotency_key_for
        from langchain_core.messages import AIMessage, ToolMessage

        f = self.figures
        problem = f.problems.append
        messages = self.agent.get_state(task.config).values.get("messages", [])
        calls = [c for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
        answers: dict[str, list[ToolMessage]] = {}
        for m in messages:
            if isinstance(m, ToolMessage):
                answers.setdefault(m.tool_call_id, []).append(m)
        call_ids = {c["id"] for c in calls}
        for call in calls:
            if (seen_times := len(answers.get(call["id"] or "", []))) != 1:
                f.orphaned_calls += 1
                problem(f"{task.thread_id}: call {call['id']} has {seen_times} observations")
        for call_id in set(answers) - call_ids:
            f.orphaned_calls += 1
            problem(f"{task.thread_id}: observation for unknown call {call_id}")

        entries = {e.tool_call_id: e for e in self.store.entries(task.thread_id)}
        for stray in set(entries) - call_ids:
            f.ledger_inconsistencies += 1
            problem(f"{task.thread_id}: ledger entry for a call not in the thread: {entries[stray]}")
        made = Counter((c.customer_id, c.amount_cents) for c in charges)
        for asked in task.charges:
            if made[asked] > 1:
                f.duplicate_charges += made[asked] - 1
                problem(f"{task.thread_id}: {made[asked]} charges for {asked}")
        for key, n in Counter(c.idempotency_key for c in charges).items():
            if n > 1:
                f.ledger_inconsistencies += 1
                problem(f"{task.thread_id}: {n} charges under one idempotency key {key}")
        asked_calls = [(c["args"].get("customer_id"), c["args"].get("amount_cents")) for c in calls]
        if asked_calls != task.charges or any(c["name"] != "charge_card" for c in calls):
            f.wrong_answers += 1
            problem(f"{task.thread_id}: the model called {asked_calls}, the question asked {task.charges}")
            return [e.key for e in entries.values()]

        done: list[str] = []
        gave_up: list[str] = []
        for call in calls:
            customer, cents = call["args"]["customer_id"], call["args"]["amount_cents"]
            call_id = call["id"] or ""
            entry = entries.get(call_id)
            seen = next(iter(answers.get(call_id, [])), None)
            if entry is None or seen is None:
                f.ledger_inconsistencies += 1
                problem(f"{task.thread_id}: call {call['id']} has no ledger entry or observation")
                continue
            if entry.key != idempotency_key_for(task.thread_id, "tools", call_id):
                f.ledger_inconsistencies += 1
                problem(f"{task.thread_id}: call {call['id']} is recorded under an unexpected key {entry.key}")
            if entry.result != seen.content:
                f.ledger_inconsistencies += 1
                problem(f"{task.thread_id}: ledger has {entry.result!r}, the thread saw {seen.content!r}")
            own = [c for c in charges if c.idempotency_key == entry.key]
            if entry.status is KeyStatus.COMPLETED and len(own) == 1:
                text = f"Charged {customer} {cents} cents: charge {own[0].id} succeeded."
                if (own[0].customer_id, own[0].amount_cents) != (customer, cents) or seen.content != text:
                    f.ledger_inconsistencies += 1
                    problem(f"{task.thread_id}: observation {seen.content!r}, service charged {own[0]}")
                done.append(f"{customer} ${cents / 100:.2f} (charge {own[0].id})")
            elif _honest_give_up(seen, entry.status, len(own)):
                gave_up.append(customer)
            else:
                f.ledger_inconsistencies += 1
                problem(f"{task.thread_id}: call {call['id']} is {entry.status} with {len(own)} charge(s): {seen}")
        answer = str(messages[-1].content) if messages else ""
        if gave_up:
            f.gave_up += len(gave_up)
            right = answer.startswith("Not every charge went through.") and all(c in answer for c in gave_up)
        else:
            right = len(done) == len(calls) > 0 and answer == f"Charged {_join(done)}."
        if right and gave_up:
            f.honest_answers += 1
        elif right:
            f.correct_answers += 1
        else:
            f.wrong_answers += 1
            problem(f"{task.thread_id}: answer {answer!r} (charges made: {done}, unknown: {gave_up})")
        return [e.key for e in entries.values()]


def _honest_give_up(seen: Any, status: KeyStatus, charges: int) -> bool:
    """A call the fault profile defeated (every attempt of the policy failed, in one process), told truthfully:
    "outcome unknown" (at most one charge made), or "failed" with no charge made at all."""
    from ironloop.tools.builtin import CHARGE_POLICY
    from ironloop.tools.idempotency import KeyStatus

    attempts = (seen.response_metadata or {}).get("ironloop", {}).get("attempts", [])
    exhausted = len(attempts) >= CHARGE_POLICY.max_attempts and all(a.get("outcome") != "ok" for a in attempts)
    if status is KeyStatus.UNKNOWN:
        return exhausted and charges <= 1 and str(seen.content).startswith("Outcome unknown")
    return status is KeyStatus.FAILED and exhausted and charges == 0 and seen.status == "error"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


if __name__ == "__main__":
    if sys.argv[1:] == ["--zygote"]:
        sys.exit(zygote_main())
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crash", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
