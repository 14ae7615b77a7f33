"""``ironloop worker``, ``ironloop submit`` and ``ironloop resume --enqueue``: the commands of a fleet of workers.

``worker`` runs a Celery worker (`distributed.celery_app`) after checking its configuration (`distributed.checks`).
``submit`` queues a question and prints the thread id (with ``--wait``, the run's trajectory and answer once it
is over). ``resume THREAD --enqueue`` records the decision (``--approve``/``--reject``/``--edit``; the first
process to decide wins) and queues the continuation for any worker, instead of running it here;
``$IRONLOOP_ENQUEUE=1`` makes that the default.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ironloop.commands import EXIT_FAILED, EXIT_PAUSED, EXIT_USAGE, CommandError, positive_int

ENQUEUE_ENV = "IRONLOOP_ENQUEUE"


def register(commands: Any, database: argparse.ArgumentParser) -> None:
    """Add ``worker`` and ``submit`` to the command line."""
    broker = argparse.ArgumentParser(add_help=False)
    broker.add_argument("--broker", default=None, help="broker URL (default: $IRONLOOP_BROKER_URL or local RabbitMQ)")
    broker.add_argument("--queue", default=None, help="queue name (default: $IRONLOOP_QUEUE or ironloop)")

    worker = commands.add_parser("worker", parents=[database, broker], help="run a Celery worker for queued threads")
    worker.add_argument("-c", "--concurrency", type=positive_int, default=1, help="worker processes (default 1)")
    worker.add_argument("--agent", default=None, help="MODULE:FACTORY building the agent from a checkpointer")
    worker.add_argument("--traffic", default=None, help="redis://... sharing rate limits and circuits (default: none)")
    worker.add_argument("--loglevel", default="INFO", help="Celery's log level: DEBUG, INFO, WARNING, ERROR")
    worker.set_defaults(handler=run_worker)

    submit = commands.add_parser("submit", parents=[database, broker], help="queue a question for the workers")
    submit.add_argument("question", help="what to ask the agent")
    submit.add_argument("--thread", default=None, help="thread id (default: a new one)")
    submit.add_argument("--wait", action="store_true", help="wait for the run; print its trajectory and answer")
    submit.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
    submit.set_defaults(handler=submit_question)


def add_resume_options(resume: argparse.ArgumentParser) -> None:
    """``resume --enqueue`` (continue on a worker) and its options."""
    resume.add_argument(
        "--enqueue",
        action="store_true",
        default=os.environ.get(ENQUEUE_ENV, "") not in ("", "0"),
        help=f"continue the thread on a worker instead of here (default when ${ENQUEUE_ENV}=1)",
    )
    resume.add_argument("--broker", default=None, help="with --enqueue: broker URL (default: $IRONLOOP_BROKER_URL)")
    resume.add_argument("--queue", default=None, help="with --enqueue: queue name (default: $IRONLOOP_QUEUE)")
    resume.add_argument("--wait", action="store_true", help="with --enqueue: wait for the run and print its answer")
    resume.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")


def _fleet_environment(args: argparse.Namespace) -> None:
    """The options become the environment the Celery app reads (and its worker processes inherit)."""
    from ironloop.checkpoints.database import DB_URL_ENV
    from ironloop.distributed.settings import AGENT_ENV, BROKER_ENV, QUEUE_ENV
    from ironloop.tools.rate_limit import TRAFFIC_URL_ENV

    for value, name in (
        (args.db, DB_URL_ENV),
        (args.broker, BROKER_ENV),
        (args.queue, QUEUE_ENV),
        (getattr(args, "agent", None), AGENT_ENV),
        (getattr(args, "traffic", None), TRAFFIC_URL_ENV),
    ):
        if value:
            os.environ[name] = value


def run_worker(args: argparse.Namespace) -> int:
    _fleet_environment(args)
    from ironloop.distributed.checks import FleetConfigError, check_fleet
    from ironloop.distributed.settings import Settings

    try:
        settings = Settings.from_env()
        check_fleet(settings, concurrency=args.concurrency)
    except (FleetConfigError, ValueError) as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    from ironloop.distributed.celery_app import app

    argv = ["worker", "--concurrency", str(args.concurrency), "--queues", settings.queue]
    argv += ["--loglevel", args.loglevel, "--hostname", f"ironloop-{os.getpid()}@%h", "--without-gossip"]
    app.worker_main(argv=argv)
    return 0


def submit_question(args: argparse.Namespace) -> int:
    _fleet_environment(args)
    from ironloop.distributed.submission import submit

    try:
        handle = submit(args.question, args.thread)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    except Exception as exc:  # the broker refused or could not be reached
        raise CommandError(f"could not queue the question: {type(exc).__name__}: {exc}", EXIT_FAILED) from None
    print(f"thread {handle.thread_id}  (task {handle.task_id})", flush=True)
    return _wait(handle, args) if args.wait else 0


def enqueue_resume(args: argparse.Namespace) -> int:
    """Record the decision given (if any) for the calls waiting now, and queue the continuation for a worker."""
    _fleet_environment(args)
    from ironloop.checkpoints import SQLAlchemySaver
    from ironloop.checkpoints.decisions import AlreadyDecidedError, DecisionBook, WaitingCall
    from ironloop.cli.approver import approver_for
    from ironloop.cli.decisions import checkpoint_of
    from ironloop.distributed.submission import enqueue_continuation
    from ironloop.graph.status import FINISHED, pending_approvals, state_reader, status_of

    if args.checkpoint:
        raise CommandError("--checkpoint (a fork) runs here only: drop --enqueue to fork", EXIT_USAGE)
    approver = approver_for(args)
    decision = getattr(approver, "decision", None)
    with SQLAlchemySaver.from_url(args.db) as saver:
        saver.setup()
        snapshot = state_reader(saver).get_state({"configurable": {"thread_id": args.thread}})
        if snapshot.created_at is None:
            raise CommandError(f"no thread {args.thread!r}", EXIT_USAGE)
        book = DecisionBook(saver.engine)
        if status_of(snapshot) == FINISHED:
            print(f"thread {args.thread} is finished; nothing to resume")
            if decision is not None and (last := book.last(args.thread, limit=1)):
                raise CommandError(f"{AlreadyDecidedError(last)}; nothing waits for a decision", EXIT_FAILED)
            return 0
        waiting = [WaitingCall.of(request) for request in pending_approvals(snapshot)]
        decided: tuple[str, ...] = ()
        if waiting:
            checkpoint = checkpoint_of(snapshot)
            if decision is not None:
                try:
                    book.claim(args.thread, checkpoint, waiting, decision)
                except AlreadyDecidedError as exc:
                    raise CommandError(f"{exc}; not queued again", EXIT_FAILED) from None
            elif len(book.decided(args.thread, checkpoint, [c.tool_call_id for c in waiting])) < len(waiting):
                calls = ", ".join(f"{c.tool} [{c.tool_call_id}]" for c in waiting)
                raise CommandError(
                    f"thread {args.thread} waits for a decision on {calls}: add --approve, --reject REASON or "
                    "--edit JSON",
                    EXIT_PAUSED,
                )
            decided = tuple(c.tool_call_id for c in waiting)
    try:
        handle = enqueue_continuation(args.thread, decided=decided, db_url=args.db)
    except Exception as exc:
        raise CommandError(f"could not queue the continuation: {type(exc).__name__}: {exc}", EXIT_FAILED) from None
    print(f"thread {args.thread}: continuation queued for a worker (task {handle.task_id})", flush=True)
    return _wait(handle, args) if args.wait else 0


def _wait(handle: Any, args: argparse.Namespace) -> int:
    from ironloop.checkpoints import SQLAlchemySaver
    from ironloop.distributed.submission import WaitTimeoutError
    from ironloop.graph.state import current_run
    from ironloop.graph.status import FAILED, WAITING_FOR_APPROVAL, state_reader

    try:
        outcome = handle.wait(args.timeout)
    except WaitTimeoutError as exc:
        raise CommandError(f"{exc}; `ironloop threads` shows where it is", EXIT_FAILED) from None
    with SQLAlchemySaver.from_url(handle.db_url) as saver:
        snapshot = state_reader(saver).get_state({"configurable": {"thread_id": handle.thread_id}})
    from ironloop.cli.trajectory import TrajectoryPrinter

    printer = TrajectoryPrinter()
    for message in current_run(list(snapshot.values.get("messages", []))):
        printer.feed("updates", {"run": {"messages": [message]}})
    printer.finish()
    if outcome.status == WAITING_FOR_APPROVAL:
        raise CommandError(
            f"thread {handle.thread_id} is waiting for approval: `ironloop resume {handle.thread_id} --approve "
            "--enqueue` (or --reject REASON) decides",
            EXIT_PAUSED,
        )
    if outcome.status == FAILED:
        raise CommandError(f"thread {handle.thread_id} failed; `ironloop threads` says why", EXIT_FAILED)
    if outcome.answer is None:
        print(f"thread {handle.thread_id}: {outcome.status}")
    sys.stdout.flush()
    return 0
