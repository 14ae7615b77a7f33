"""Crash kills across a fleet: Celery workers on a real broker and a shared database, SIGKILLed at random moments.

Payment tasks ("Charge cus_… $12.50 and cus_… $7.25.") are submitted to worker processes started here (``ironloop
worker``); the payments service runs in this process, so its ledger is the truth about what was charged. While
tasks run, seeded kills land on worker processes busy with a thread (found through the thread leases), right after
the payments service committed a charge (before its answer left), and now and then on a whole worker (its
processes die with it; it is started again); once, every worker's broker connection is closed (RabbitMQ). Every
task must still finish, on some worker, from its last checkpoint: then each is checked for the right answer,
exactly one charge per logical call, one observation per tool call, a writer record showing one runner at a time,
and no task lost.

``ironloop bench crash --distributed --kills 200`` prints the figures and writes ``benchmarks/results/crash-
distributed.json``; ``tests/test_distributed.py`` runs the same harness with fewer kills.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ironloop.benchmarks.processes import children, stop_group
from ironloop.terminal import ProgressBar

DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
CUSTOMERS = ("ada", "bob", "cyd")
P_COMMIT_KILL = 0.25
"""Chance of killing the worker process that just got a charge committed, before the answer leaves the service."""
KILL_GAP_S = (0.05, 0.6)
"""Pause between two timed kills."""
WORKER_READY_TIMEOUT_S = 120.0
CHECK_EVERY_S = 0.25
"""How often the threads of tasks in flight are read, to see which finished."""


@dataclass(frozen=True)
class FleetCrashPlan:
    db_url: str
    kills: int = 200
    seed: int = 0
    broker_url: str = DEFAULT_BROKER
    workers: int = 2
    """Worker commands (``ironloop worker``) running at once."""
    concurrency: int = 2
    """Processes per worker."""
    in_flight: int = 8
    """Tasks submitted and not yet finished, at most."""
    max_kills_per_thread: int = 3
    """Kills of worker processes running one thread, at most (whole-worker kills not counted)."""
    whole_worker_share: float = 0.1
    """Share of timed kills that take a whole worker (its main process) instead of one of its processes."""
    broker_drops: int = 1
    """Times every worker's broker connection is closed (RabbitMQ only)."""
    visibility_s: float = 10.0
    """Redis only: how long an unacknowledged message waits before it is delivered again."""
    drain_timeout_s: float = 240.0
    """After the last kill, how long unfinished tasks may take before they count as lost or wedged."""

    def __post_init__(self) -> None:
        if self.kills < 1 or self.workers < 1 or self.concurrency < 1 or self.in_flight < 1:
            raise ValueError("kills, workers, concurrency and in_flight must be at least 1")
        if self.db_url.startswith("sqlite"):
            raise ValueError("a fleet shares a server database: pass --db postgresql://... or mariadb://...")


@dataclass
class FleetCrashFigures:
    database: str = ""
    broker: str = ""
    tasks: int = 0
    charges_asked: int = 0
    kills: int = 0
    kills_by_target: dict[str, int] = field(
        default_factory=lambda: {"worker process": 0, "whole worker": 0, "after commit": 0}
    )
    broker_drops: int = 0
    redeliveries: int = 0
    """Deliveries the broker marked as redelivered (a task whose worker died before acknowledging it)."""
    runs: int = 0
    """Leases that wrote to the tasks' threads: one per task plus one per run interrupted and taken up again."""
    completed: int = 0
    lost: int = 0
    """Tasks whose thread never saw their message."""
    wrong_answers: int = 0
    duplicate_charges: int = 0
    orphaned_calls: int = 0
    overlapping_runners: int = 0
    wedged_threads: int = 0
    """Tasks whose thread started but did not finish by the end."""
    service_charges: int = 0
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        bad = self.lost + self.wrong_answers + self.duplicate_charges + self.orphaned_calls
        return bad + self.overlapping_runners + self.wedged_threads == 0 and not self.problems

    def format(self) -> str:
        k = self.kills_by_target
        rows = [
            ("database", self.database),
            ("broker", self.broker),
            ("tasks", f"{self.tasks}  ({self.charges_asked} charges asked for)"),
            (
                "kills",
                f"{self.kills}  (worker process {k['worker process']}, after a charge committed {k['after commit']}, "
                f"whole worker {k['whole worker']})",
            ),
            ("broker connection drops", str(self.broker_drops)),
            ("redeliveries", str(self.redeliveries)),
            ("runs (leases written)", str(self.runs)),
            ("completed", f"{self.completed}/{self.tasks}"),
            ("lost", str(self.lost)),
            ("wrong answers", str(self.wrong_answers)),
            ("duplicate charges", f"{self.duplicate_charges}  ({self.service_charges} charges in the service ledger)"),
            ("orphaned calls", str(self.orphaned_calls)),
            ("overlapping runners", str(self.overlapping_runners)),
            ("wedged threads", str(self.wedged_threads)),
            ("wall time", f"{self.wall_s:.1f} s"),
        ]
        lines = [f"{name:<25}{value}" for name, value in rows]
        lines += [f"problem: {p}" for p in self.problems[:20]]
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass(eq=False)
class _Task:
    index: int
    thread_id: str
    question: str
    charges: list[tuple[str, int]]
    message_id: str = ""
    done: bool = False


class _Worker:
    """One ``ironloop worker`` command, in a process group of its own (so nothing it starts outlives the run)."""

    def __init__(self, harness: FleetCrash, index: int):
        self.harness = harness
        self.index = index
        self.generation = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def log(self) -> Path:
        return self.harness.workdir / f"worker-{self.index}.{self.generation}.log"

    def start(self) -> None:
        self.generation += 1
        plan = self.harness.plan
        command = [sys.executable, "-m", "ironloop", "worker", "--concurrency", str(plan.concurrency)]
        command += ["--db", plan.db_url, "--broker", plan.broker_url, "--queue", self.harness.queue]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.harness.worker_env, start_new_session=True
            )
        self.ready_at: float | None = None

    def ready(self) -> bool:
        if self.ready_at is None and " ready." in self.log.read_text(errors="replace"):
            self.ready_at = time.monotonic()
        return self.ready_at is not None

    def processes(self) -> list[int]:
        """The worker's pool processes (children of its main process)."""
        if self.process is None:
            return []
        return children(self.process.pid)

    def kill_whole(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        with contextlib.suppress(ProcessLookupError):  # its pool processes get SIGKILL from the kernel anyway
            os.killpg(self.process.pid, signal.SIGKILL)
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)


class FleetCrash:
    def __init__(self, plan: FleetCrashPlan, workdir: Path):
        self.plan = plan
        self.workdir = workdir
        self.rng = random.Random(plan.seed)
        self.tag = f"{plan.seed}{secrets.token_hex(3)}"
        self.queue = f"ironloop-crash-{self.tag}"
        self.figures = FleetCrashFigures()
        self.lock = threading.Lock()
        self.tasks: list[_Task] = []
        self.by_customer: dict[str, _Task] = {}
        self.pending_commit_kill: list[str] = []
        self.kills_by_thread: Counter[str] = Counter()

    # -- the run

    def run(self) -> FleetCrashFigures:
        from ironloop.checkpoints import SQLAlchemySaver
        from ironloop.checkpoints.database import describe
        from ironloop.checkpoints.leases import ThreadLeases
        from ironloop.checkpoints.migrate import upgrade
        from ironloop.demo.services.server import start_tool_services
        from ironloop.graph.status import state_reader

        started = time.monotonic()
        self.figures.broker = re.sub(r"//[^@/]*@", "//", self.plan.broker_url)
        services = start_tool_services(profile="none", seed=self.plan.seed, on_commit=self._on_commit)
        self.services = services
        self.worker_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("IRONLOOP_")},
            "IRONLOOP_SEARCH_URL": services.url,
            "IRONLOOP_VISIBILITY_S": str(self.plan.visibility_s),
        }
        workers: list[_Worker] = []
        try:
            with SQLAlchemySaver.from_url(self.plan.db_url, migrate=False) as saver:
                upgrade(saver.engine)  # once, before the workers race to do it
                self.figures.database = describe(saver.engine.url)
                self.saver, self.agent, self.leases = saver, state_reader(saver), ThreadLeases(saver.engine)
                workers = [_Worker(self, i) for i in range(self.plan.workers)]
                self.workers = workers
                self._wait_ready(workers)
                with ProgressBar(self.plan.kills, "kills") as bar:
                    self._loop(bar)
                self._verify_all()
        finally:
            for worker in workers:
                worker.stop()
            services.stop()
        self.figures.redeliveries = sum(
            log.read_text(errors="replace").count(": redelivered task") for log in self.workdir.glob("worker-*.log")
        )
        self.figures.wall_s = time.monotonic() - started
        return self.figures

    def _wait_ready(self, workers: list[_Worker]) -> None:
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        while not all(w.ready() for w in workers):
            for worker in workers:
                if worker.process is not None and worker.process.poll() is not None:
                    raise RuntimeError(f"worker {worker.index} exited: {worker.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not become ready in time")
            time.sleep(0.2)

    def _loop(self, bar: ProgressBar) -> None:
        from ironloop.distributed.submission import submit

        active: list[_Task] = []
        next_kill = time.monotonic() + self.rng.uniform(*KILL_GAP_S)
        drops_at = sorted(self.rng.randint(1, max(1, self.plan.kills - 1)) for _ in range(self.plan.broker_drops))
        drain_deadline: float | None = None
        next_check = 0.0
        while True:
            killing = self.figures.kills < self.plan.kills
            while killing and len(active) < self.plan.in_flight:
                task = self._new_task()
                handle = submit(task.question, task.thread_id, queue=self.queue, broker_url=self.plan.broker_url)
                task.message_id = handle.message_id or ""
                active.append(task)
            if time.monotonic() >= next_check:
                active = [t for t in active if not self._finished(t)]
                next_check = time.monotonic() + CHECK_EVERY_S
            if not killing:
                drain_deadline = drain_deadline or time.monotonic() + self.plan.drain_timeout_s
                if not active or time.monotonic() > drain_deadline:
                    return
            self._commit_kills()
            bar.update(self.figures.kills)
            if killing and time.monotonic() >= next_kill:
                self._timed_kill()
                next_kill = time.monotonic() + self.rng.uniform(*KILL_GAP_S)
                if drops_at and self.figures.kills >= drops_at[0] and self.plan.broker_url.startswith("amqp"):
                    drops_at.pop(0)
                    mains = [w.process.pid for w in self.workers if w.process is not None]
                    self.figures.broker_drops += _close_broker_connections(mains)
            time.sleep(0.05)

    def _new_task(self) -> _Task:
        from ironloop.demo.scenario import charges_in

        index = len(self.tasks)
        rng = random.Random(f"{self.plan.seed}:{index}")
        names = CUSTOMERS[: rng.choice((1, 2, 2, 3))]
        charges = [(f"cus_{self.tag}_{index}_{name}", rng.randint(100, 99_999)) for name in names]
        asks = [f"{customer} ${cents // 100}.{cents % 100:02d}" for customer, cents in charges]
        question = f"Charge {_join(asks)}."
        assert charges_in(question) == charges, question
        task = _Task(index, f"fleet-{self.tag}-{index}", question, charges)
        with self.lock:
            self.tasks.append(task)
            for customer, _ in charges:
                self.by_customer[customer] = task
        self.figures.tasks += 1
        self.figures.charges_asked += len(charges)
        return task

    def _finished(self, task: _Task) -> bool:
        from ironloop.graph.status import FINISHED, status_of

        snapshot = self.agent.get_state({"configurable": {"thread_id": task.thread_id}})
        if snapshot.created_at is None or status_of(snapshot) != FINISHED:
            return False
        messages = snapshot.values.get("messages", [])
        task.done = any(getattr(m, "id", None) == task.message_id for m in messages)
        return task.done

    def _busy(self) -> dict[int, str]:
        """Worker processes running a thread now (pid → thread), from the leases."""
        held = self.leases.holders([t.thread_id for t in self.tasks if not t.done])
        return {h.runner.pid: h.thread_id for h in held.values() if h.runner is not None}

    def _timed_kill(self) -> None:
        ready = [w for w in self.workers if w.ready()]
        if not ready:
            return
        if self.rng.random() < self.plan.whole_worker_share and len(ready) == len(self.workers):
            self.rng.choice(ready).kill_whole()
            self.figures.kills += 1
            self.figures.kills_by_target["whole worker"] += 1
            return
        ours = {pid for w in ready for pid in w.processes()}
        busy = sorted((pid, thread) for pid, thread in self._busy().items() if pid in ours and self._may_kill(thread))
        if busy:
            pid, thread = self.rng.choice(busy)
            if self._kill(pid, thread):
                self.figures.kills_by_target["worker process"] += 1

    def _may_kill(self, thread: str) -> bool:
        """Each thread is killed at most ``max_kills_per_thread`` times, so kills spread over many tasks."""
        return self.kills_by_thread[thread] < self.plan.max_kills_per_thread

    def _on_commit(self, charge: Any) -> None:
        """The payments service just committed a charge (its answer not sent yet): perhaps kill the worker process
        that asked for it, right now (from the service's thread; the kill itself is cheap)."""
        with self.lock:
            task = self.by_customer.get(charge.customer_id)
            chosen = task is not None and self._may_kill(task.thread_id) and self.rng.random() < P_COMMIT_KILL
            if task is not None and chosen and self.figures.kills < self.plan.kills:
                self.pending_commit_kill.append(task.thread_id)
        self._commit_kills()

    def _commit_kills(self) -> None:
        with self.lock:
            threads, self.pending_commit_kill = self.pending_commit_kill, []
        if not threads:
            return
        held = self.leases.holders(threads)
        ours = {pid for w in self.workers for pid in w.processes()}
        for thread in threads:
            holder = held.get(thread)
            pid = holder.runner.pid if holder is not None and holder.runner is not None else None
            if pid is not None and pid in ours and self._kill(pid, thread):
                self.figures.kills_by_target["after commit"] += 1

    def _kill(self, pid: int, thread: str) -> bool:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        with self.lock:
            self.figures.kills += 1
            self.kills_by_thread[thread] += 1
        return True

    # -- the checks

    def _verify_all(self) -> None:
        from ironloop.checkpoints.leases import writer_record
        from langchain_core.messages import AIMessage, ToolMessage

        f = self.figures
        charges = self.services.ledger.snapshot()
        f.service_charges = len(charges)
        made = Counter((c.customer_id, c.amount_cents) for c in charges)
        for task in self.tasks:
            snapshot = self.agent.get_state({"configurable": {"thread_id": task.thread_id}})
            messages = snapshot.values.get("messages", []) if snapshot.created_at is not None else []
            if not any(getattr(m, "id", None) == task.message_id for m in messages):
                f.lost += 1
                f.problems.append(f"{task.thread_id}: lost (its message never reached the thread)")
                continue
            if not task.done:
                f.wedged_threads += 1
                f.problems.append(f"{task.thread_id}: not finished")
                continue
            f.completed += 1
            record = writer_record(self.saver.engine, task.thread_id)
            f.runs += record.runs
            if record.problems or 0 in record.tokens:
                f.overlapping_runners += 1
                f.problems.extend(record.problems or [f"{task.thread_id}: a checkpoint written without a lease"])
            calls = [c for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
            answers = Counter(m.tool_call_id for m in messages if isinstance(m, ToolMessage))
            for call in calls:
                seen = answers[str(call["id"])]
                if seen != 1:
                    f.orphaned_calls += 1
                    f.problems.append(f"{task.thread_id}: call {call['id']} has {seen} observations")
            for asked in task.charges:
                if made[asked] != 1:
                    f.duplicate_charges += max(0, made[asked] - 1)
                    f.problems.append(f"{task.thread_id}: {made[asked]} charges for {asked}")
            asked_calls = [(c["args"].get("customer_id"), c["args"].get("amount_cents")) for c in calls]
            answer = str(messages[-1].content)
            if (
                asked_calls != task.charges
                or not answer.startswith("Charged ")
                or any(c not in answer for c, _ in task.charges)
            ):
                f.wrong_answers += 1
                f.problems.append(f"{task.thread_id}: calls {asked_calls}, answer {answer!r}")
        owners = {c for t in self.tasks for c, _ in t.charges}
        for charge in charges:
            if charge.customer_id not in owners:
                f.problems.append(f"charge {charge} belongs to no task")


def run_fleet_crash(plan: FleetCrashPlan, workdir: Path) -> FleetCrashFigures:
    workdir.mkdir(parents=True, exist_ok=True)
    figures = FleetCrash(plan, workdir).run()
    if not figures.ok:
        figures.problems.append(f"workers' logs are in {workdir}")
    return figures


def _close_broker_connections(pids: list[int]) -> int:
    """Close the RabbitMQ connections of these processes (found by their local ports); 1 if any was closed."""
    ports = _local_ports_to(5672, pids)
    if not ports:
        return 0
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "name", "peer_port"], capture_output=True, text=True, timeout=60
    )
    closed = 0
    for line in listed.stdout.splitlines():
        name, _, port = line.rpartition("\t")
        if port.strip().isdigit() and int(port) in ports:
            subprocess.run(
                ["rabbitmqctl", "-q", "close_connection", name, "ironloop crash test: connection dropped"],
                capture_output=True,
                timeout=60,
            )
            closed += 1
    return 1 if closed else 0


def _local_ports_to(remote_port: int, pids: list[int]) -> set[int]:
    inodes: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# -- the command line (``ironloop bench crash --distributed``) ----------------------------------------------------


def run(args: Any) -> int:
    import json
    import tempfile

    from ironloop.benchmarks import RESULTS_DIR
    from ironloop.commands import EXIT_USAGE, CommandError

    db = args.db or os.environ.get("IRONLOOP_DB_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    try:
        plan = FleetCrashPlan(
            db_url=db,
            kills=args.kills,
            seed=args.seed,
            broker_url=args.broker or os.environ.get("IRONLOOP_BROKER_URL") or DEFAULT_BROKER,
            workers=args.workers,
            concurrency=args.worker_concurrency,
        )
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    print(
        f"fleet crash kills: {plan.kills} kills, {plan.workers} workers x {plan.concurrency} processes, "
        f"seed {plan.seed}; 2 shared cores: expect minutes"
    )
    workdir = Path(tempfile.mkdtemp(prefix="ironloop-fleet-crash-"))
    figures = run_fleet_crash(plan, workdir)
    print(figures.format())
    default = args.json_out == str(RESULTS_DIR / "crash.json")
    out = RESULTS_DIR / "crash-distributed.json" if default else Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plan_out = {**asdict(plan), "db_url": figures.database, "broker_url": figures.broker}
    out.write_text(json.dumps({"plan": plan_out, "figures": figures.summary()}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if figures.ok else 1
