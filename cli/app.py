"""The ``ironloop`` command: a thin layer over the graph and the checkpoint store.

Exit codes: 0 done, 1 the run failed (it can be resumed) or a decision came second ("already decided: ..."), 2
bad usage or configuration, 3 paused: a tool call waits for a human's approval (``ironloop resume THREAD
--approve`` or ``--reject REASON`` decides, from any process; the first decision wins), 130 interrupted. Errors
are one line on stderr, never a traceback. A thread has one runner at a time (`cli.decisions`): a command that
finds it running waits for the other to finish.

Approval: a run whose calls need approval (`tools.approval`) asks at the terminal when stdin is one; with
``--approve-all`` / ``--deny-all`` it answers every request itself; otherwise (stdin not a TTY, no flag) it
stops with the thread paused rather than guess or hang (`graph.approver`).

Credentials: commands that run tools read the tools' secrets once (`tools.credentials`: ``IRONLOOP_TOOL_*``
variables and ``ironloop.toml``), then remove those variables from the process environment, so no child
process inherits them; each tool is handed only its own. The bundled payments service started for ``demo``
(and for ``run`` without ``--search-url``) requires the configured ``charge_card`` key, if there is one.

Durability: ``run``, ``resume`` and single ``demo`` runs use ``durability="sync"``: each step's checkpoint is
written before the next step starts, so a crash never loses a tool result that was already produced (tools
may have side effects). ``demo --tasks`` uses LangGraph's default ``"async"`` (checkpoints written in the
background while the next step runs): its tools are read-only and it measures throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ironloop.benchmarks import BENCHMARKS
from ironloop.cli import mcp as mcp_cli
from ironloop.cli.text import printable
from ironloop.version import __version__

if TYPE_CHECKING:  # imported where used: `ironloop --help` does not load LangChain
    from ironloop.cli.trajectory import TrajectoryPrinter

from ironloop.commands import AGENT_KEY, EXIT_FAILED, EXIT_PAUSED, EXIT_USAGE, CommandError, positive_int

REAL_MODEL_PROMPT = (
    "You are a careful assistant with tools. Use search to look facts up and calc for arithmetic; call "
    "independent tools in parallel. If a tool reports an error or a fallback, say what is missing rather than "
    "guessing. End with a short, direct answer."
)


def main(argv: Sequence[str] | None = None) -> int:
    from ironloop.checkpoints.errors import CheckpointStoreError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure(args)
        return int(args.handler(args) or 0)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, and let Python not complain either
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except CommandError as exc:
        label = {0: "note", EXIT_PAUSED: "paused"}.get(exc.code, "error")
        print(f"ironloop: {label}: {printable(exc)}", file=sys.stderr)
        return exc.code
    except CheckpointStoreError as exc:
        print(f"ironloop: error: {printable(exc)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_FAILED
    except KeyboardInterrupt:
        print("ironloop: interrupted", file=sys.stderr)
        return 130


def configure(args: argparse.Namespace) -> None:
    """The configuration file's settings under the environment's (`ironloop.settings`); ``--otel`` on top."""
    if os.environ.get("IRONLOOP_CONFIG") or os.path.isfile("ironloop.toml"):  # else nothing to read or import
        from ironloop.settings import SettingsError, apply_config_file

        try:
            apply_config_file()
        except SettingsError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    if getattr(args, "enqueue", None) is False:  # its default was read before the file's settings were applied
        args.enqueue = os.environ.get("IRONLOOP_ENQUEUE", "") not in ("", "0")
    from ironloop.observability import check_installed, enable, wanted

    if getattr(args, "otel", None):
        enable()
    if wanted():
        try:
            check_installed()
        except ImportError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ironloop", description="A ReAct agent whose tool calls are reliable RPCs.")
    parser.add_argument("--version", action="version", version=f"ironloop {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--db", default=None, help="database URL (default: $IRONLOOP_DB_URL or ./ironloop.db)")

    approval = argparse.ArgumentParser(add_help=False)
    answer_all = approval.add_mutually_exclusive_group()
    answer_all.add_argument("--approve-all", action="store_true", help="approve every call that asks for approval")
    answer_all.add_argument("--deny-all", action="store_true", help="reject every call that asks for approval")

    telemetry = argparse.ArgumentParser(add_help=False)
    telemetry.add_argument(
        "--otel",
        action="store_true",
        default=None,
        help="send OpenTelemetry traces and metrics over OTLP/HTTP "
        "(default: on when $OTEL_EXPORTER_OTLP_ENDPOINT or $IRONLOOP_OTEL is set; docs/observability.md)",
    )

    demo = commands.add_parser(
        "demo", parents=[database, approval, telemetry], help="run the offline demo (scripted model)"
    )
    demo.add_argument("--tasks", type=positive_int, default=None, help="run N seeded tasks and print figures")
    demo.add_argument("--concurrency", type=positive_int, default=1, help="tasks run at once with --tasks")
    demo.add_argument("--profile", default="reference", help="fault profile of the search service")
    demo.add_argument("--seed", type=int, default=7, help="fault seed of the search service")
    demo.add_argument("--question", default=None, help="the question (default: the demo's population question)")
    demo.add_argument("--thread", default=None, help="thread id (default: a new one)")
    demo.add_argument(
        "--json", dest="json_out", action="store_true", help="print the run (or with --tasks the figures) as JSON"
    )
    demo.add_argument(
        "--out", metavar="FILE", default=None, help="with --tasks: also write the figures as JSON to FILE"
    )
    demo.set_defaults(handler=run_demo)

    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", default=None, help="model name (default: $IRONLOOP_MODEL)")
    model.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)")
    model.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY)")
    model.add_argument("--fallback-model", default=None, help="model asked when the primary keeps failing")
    model.add_argument("--model-attempts", type=positive_int, default=4, help="attempts per model call (429, 5xx)")
    model.add_argument("--search-url", default=None, help="search service (default: $IRONLOOP_SEARCH_URL or bundled)")
    model.add_argument("--profile", default="none", help="fault profile of the bundled search service")
    model.add_argument("--stream", action="store_true", help="print tokens and tool events as they happen")
    mcp_cli.add_config_option(model)

    run = commands.add_parser(
        "run", parents=[database, model, approval, telemetry], help="answer a question with a real model"
    )
    run.add_argument("question", help="what to ask the model")
    run.add_argument("--thread", default=None, help="thread id (default: a new one)")
    run.add_argument("--max-turns", type=positive_int, default=10, help="model calls allowed before giving up")
    run.set_defaults(handler=run_real_model)

    resume = commands.add_parser(
        "resume", parents=[database, model, telemetry], help="continue a thread, or fork a checkpoint"
    )
    resume.add_argument("thread", help="the thread's id (`ironloop threads` lists them)")
    resume.add_argument("--checkpoint", default=None, help="fork from this checkpoint instead of the latest")
    decide = resume.add_mutually_exclusive_group()
    decide.add_argument("--approve", action="store_true", help="approve the calls waiting for approval")
    decide.add_argument("--reject", metavar="REASON", default=None, help="reject them; the model is told REASON")
    decide.add_argument("--edit", metavar="JSON", default=None, help="run the waiting call with these arguments")
    resume.set_defaults(handler=resume_thread)

    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", dest="json_out", action="store_true", help="print JSON instead of a table")

    threads = commands.add_parser("threads", parents=[database, as_json], help="list threads and their status")
    threads.add_argument("--limit", type=positive_int, default=50, help="most recently active threads to list")
    threads.set_defaults(handler=list_threads)

    history = commands.add_parser("history", parents=[database, as_json], help="list a thread's checkpoints")
    history.add_argument("thread", help="the thread's id (`ironloop threads` lists them)")
    history.set_defaults(handler=show_history)

    report = commands.add_parser("report", parents=[database], help="which tools are flaky: per-tool figures")
    report.add_argument("--since", default=None, help="ISO time, or an age such as 30m, 24h, 7d (default: all)")
    report.add_argument("--thread", default=None, help="only this thread's calls (default: all threads)")
    report.add_argument("--json", dest="json_out", action="store_true", help="print the report as JSON")
    report.add_argument("--html", metavar="FILE", default=None, help="write the report as one HTML page to FILE")
    report.add_argument("--approvals", action="store_true", help="list approval decisions instead of tool figures")
    report.set_defaults(handler=show_report)

    db = commands.add_parser("db", help="manage the checkpoint database")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser("upgrade", parents=[database], help="apply schema migrations")
    upgrade.set_defaults(handler=upgrade_db)

    bench = commands.add_parser(
        "bench",
        help="benchmarks; results are written under benchmarks/results/",
        description="Run a benchmark: `ironloop bench NAME --help` shows its options.",
    )
    bench.add_argument("benchmark", choices=BENCHMARKS, metavar="NAME", help=" | ".join(BENCHMARKS))
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options")
    bench.set_defaults(handler=run_benchmark)

    serve = commands.add_parser("serve-tools", help="run the local tool services on 127.0.0.1 until Ctrl-C or SIGTERM")
    serve.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: one the OS picks)")
    serve.add_argument("--profile", default="reference", help="fault profile of the search service")
    serve.add_argument("--seed", type=int, default=0, help="fault seed of the search service")
    serve.set_defaults(handler=serve_tools)

    from ironloop.cli.distributed import add_resume_options, register

    register(commands, database)
    add_resume_options(resume)
    mcp_cli.add_commands(commands)
    from ironloop.cli.help import apply

    return apply(parser)


def run_benchmark(args: argparse.Namespace) -> int:
    """Import the benchmark only now (each pulls in heavy packages) and let it parse its own options. With
    ``--json`` its messages go to standard error and the JSON results it wrote are printed on standard output."""
    import importlib

    module = importlib.import_module(f"ironloop.benchmarks.{args.benchmark}")
    parser = argparse.ArgumentParser(
        prog=f"ironloop bench {args.benchmark}", description=(module.__doc__ or "").strip().splitlines()[0]
    )
    module.add_arguments(parser)
    from ironloop.cli.help import apply

    apply(parser)
    parser.add_argument("--json", dest="print_json", action="store_true", help="print the results as JSON")
    options = parser.parse_args(args.options)
    if not options.print_json:
        return int(module.run(options) or 0)
    from ironloop.benchmarks import RESULTS_DIR
    from ironloop.cli.output import NewJsonFiles, print_json

    written = NewJsonFiles([RESULTS_DIR, *(Path(v) for v in vars(options).values() if isinstance(v, str | Path))])
    with contextlib.redirect_stdout(sys.stderr):
        code = int(module.run(options) or 0)
    print_json(written.contents())
    return code


# -- the store: checkpoints and the attempt ledger, in one database --------------------------------------------


@dataclass
class Store:
    saver: Any
    ledger: Any
    where: str


@contextlib.contextmanager
def open_store(url: str | None, *, create: bool = True) -> Iterator[Store]:
    """The store at ``url``; with ``create=False`` (commands that only read) a SQLite file that is not there is
    an error, never created."""
    from ironloop.checkpoints.database import describe
    from ironloop.checkpoints.leases import LeasedSaver
    from ironloop.checkpoints.ledger import AttemptLedger

    with LeasedSaver.from_url(url, create=create) as saver:
        saver.setup()  # migrate now: a bad URL or an unreachable database fails before any work
        ledger = AttemptLedger(saver.engine)
        try:
            yield Store(saver, ledger, describe(saver.engine.url))
        finally:
            ledger.close()


# -- running ----------------------------------------------------------------------------------------------------


def _credentials() -> Any:
    """The tools' secrets, read once; their variables are then removed from the environment."""
    from ironloop.tools.credentials import Credentials, CredentialsConfigError

    try:
        return Credentials.load(scrub_environ=True)
    except CredentialsConfigError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def _start_search(profile: str, seed: int, port: int = 0, credentials: Any = None) -> Any:
    from ironloop.demo.services.server import start_search_service

    key = credentials.get("charge_card", "api_key") if credentials is not None else None
    try:
        service, _ = start_search_service(profile=profile, seed=seed, port=port, payments_api_key=key)
    except (ValueError, OSError, RuntimeError) as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    return service


def run_demo(args: argparse.Namespace) -> int:
    from ironloop.demo.agent import build_demo_agent
    from ironloop.demo.scenario import DEMO_QUESTION

    args.question = args.question or DEMO_QUESTION
    credentials = _credentials()
    service = _start_search(args.profile, args.seed, credentials=credentials)
    try:
        with open_store(args.db) as store:
            agent = build_demo_agent(
                service.url, checkpointer=store.saver, listeners=[store.ledger], credentials=credentials
            )
            if args.tasks:
                return _demo_tasks(args, agent, store.where)
            thread = args.thread or f"demo-{uuid.uuid4().hex[:8]}"
            with contextlib.redirect_stdout(sys.stderr) if args.json_out else contextlib.nullcontext():
                print(
                    f"thread {thread}  ({store.where}; search {service.url}, profile {args.profile}, seed {args.seed})"
                )
                print(f"user: {args.question}")
                config = _config(thread, {AGENT_KEY: "demo"})
                with _one_runner(store, agent, config, args, "ironloop demo") as approver:
                    answer = _drive(agent, {"messages": [("user", args.question)]}, config, approver)
            if args.json_out:
                from ironloop.cli.output import print_json

                print_json({"thread": thread, "question": args.question, "answer": answer, "database": store.where})
            return 0
    finally:
        service.stop()


def _demo_tasks(args: argparse.Namespace, agent: Any, where: str) -> int:
    """``demo --tasks N``: run them under a progress bar (on a terminal), then print the figures."""
    from ironloop.cli.output import dumps, note, print_json, write_out
    from ironloop.demo.tasks import run_demo_tasks
    from ironloop.terminal import ProgressBar

    say = note if args.json_out else print
    say(f"running {args.tasks} tasks (search profile {args.profile}, seed {args.seed}; {where})")
    with ProgressBar(args.tasks, "tasks") as bar:
        stats = asyncio.run(
            run_demo_tasks(
                agent, args.tasks, question=args.question, concurrency=args.concurrency, on_done=lambda _: bar.advance()
            )
        )
    if args.out:
        note(f"wrote {write_out(args.out, dumps(stats.summary()))}")
    if args.json_out:
        print_json(stats.summary())
    else:
        print(stats.format())
    return 0


def run_real_model(args: argparse.Namespace) -> int:
    spec = {
        AGENT_KEY: "openai",
        "ironloop_model": args.model or os.environ.get("IRONLOOP_MODEL") or "",
        "ironloop_base_url": args.base_url or os.environ.get("OPENAI_BASE_URL") or "",
        "ironloop_fallback_model": args.fallback_model or "",
        "ironloop_max_turns": args.max_turns,
    }
    thread = args.thread or f"run-{uuid.uuid4().hex[:8]}"
    _endpoint(args)  # no key, no model: refused before a database is created or a service started
    if not spec["ironloop_model"]:
        raise CommandError("no model: pass --model NAME or set IRONLOOP_MODEL", EXIT_USAGE)
    credentials = _credentials()
    with (
        _search_url(args, credentials) as search_url,
        open_store(args.db) as store,
        mcp_cli.agent_servers(args, spec) as mcp,
    ):
        agent = _agent_from_spec(spec, args, search_url, store, credentials, mcp)
        print(f"thread {thread}  ({store.where}; model {spec['ironloop_model']})")
        state_in = {"messages": [("user", args.question)]}
        config = _config(thread, spec)
        with _one_runner(store, agent, config, args, "ironloop run") as approver:
            answer = _drive(agent, state_in, config, approver, tokens=args.stream)
        _bare_answer(answer)
    return 0


def _bare_answer(answer: str | None) -> None:
    """The answer alone as the last line, for a script reading standard output; a person at a terminal has
    already seen it (streamed, or after ``answer:``)."""
    from ironloop.cli.output import is_terminal

    if not is_terminal(sys.stdout):
        print(printable(answer or "", newlines=True))


def resume_thread(args: argparse.Namespace) -> int:
    from ironloop.graph.status import FINISHED, status_of

    if getattr(args, "enqueue", False):
        from ironloop.cli.distributed import enqueue_resume

        return enqueue_resume(args)
    credentials = _credentials()
    with (
        _search_url(args, credentials) as search_url,
        open_store(args.db, create=False) as store,
        contextlib.ExitStack() as stack,
    ):
        latest = store.saver.get_tuple({"configurable": {"thread_id": args.thread}})
        if latest is None:
            raise CommandError(f"no thread {args.thread!r} in {store.where}", EXIT_USAGE)
        spec = {k: v for k, v in latest.metadata.items() if k.startswith("ironloop_")}
        spec.setdefault(AGENT_KEY, "demo")
        mcp = stack.enter_context(mcp_cli.agent_servers(args, spec)) if spec[AGENT_KEY] != "demo" else None
        agent = _agent_from_spec(spec, args, search_url, store, credentials, mcp)
        config = _config(args.thread, spec)
        if args.checkpoint:
            config["configurable"]["checkpoint_id"] = args.checkpoint
            if store.saver.get_tuple(config) is None:
                raise CommandError(f"thread {args.thread!r} has no checkpoint {args.checkpoint!r}", EXIT_USAGE)
            print(f"thread {args.thread}: forking from checkpoint {args.checkpoint}")
        elif status_of(agent.get_state(config)) == FINISHED:
            print(f"thread {args.thread} is finished; nothing to resume (use --checkpoint ID to fork a past step)")
            return _already_decided(store, args)
        else:
            print(f"thread {args.thread}: resuming from checkpoint {latest.config['configurable']['checkpoint_id']}")
        with _one_runner(store, agent, config, args, "ironloop resume") as approver:
            answer = _drive(agent, None, config, approver, tokens=getattr(args, "stream", False))
        if spec[AGENT_KEY] != "demo":
            _bare_answer(answer)
    return 0


@contextlib.contextmanager
def _one_runner(
    store: Store, agent: Any, config: dict[str, Any], args: argparse.Namespace, command: str
) -> Iterator[Any]:
    """Claim the command's decision for the calls waiting now, then run the thread as its one runner
    (`cli.decisions`); a decision someone else made first is a one-line error."""
    from ironloop.checkpoints.decisions import AlreadyDecidedError
    from ironloop.cli.approver import approver_for
    from ironloop.cli.decisions import ContinuedElsewhere, NothingToDecide, one_runner

    approver = approver_for(args)
    decision = getattr(approver, "decision", None) if args.command == "resume" else None
    try:
        with one_runner(store.saver.engine, agent, config, approver, decision, command=command) as recorded:
            yield recorded
    except AlreadyDecidedError as exc:
        raise CommandError(f"{exc}; not run again", EXIT_FAILED) from None
    except NothingToDecide as exc:
        raise CommandError(str(exc), EXIT_FAILED) from None
    except ContinuedElsewhere as exc:
        raise CommandError(str(exc), 0) from None


def _already_decided(store: Store, args: argparse.Namespace) -> int:
    """A decision given for a thread that waits for none: say who decided last, if anyone did."""
    from ironloop.checkpoints.decisions import AlreadyDecidedError, DecisionBook

    if not (args.approve or args.reject is not None or args.edit is not None):
        return 0
    last = DecisionBook(store.saver.engine).last(args.thread, limit=1)
    if last:
        raise CommandError(f"{AlreadyDecidedError(last)}; nothing waits for a decision", EXIT_FAILED)
    return 0


def _config(thread: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "metadata": dict(spec)}


def _drive(agent: Any, state_in: Any, config: dict[str, Any], approver: Any, *, tokens: bool = False) -> str | None:
    """Run to the end, answering approval requests with ``approver``; if it answers none, stop with the thread
    paused (`EXIT_PAUSED`) and say how to decide from any process. Traced, it is one ``invoke_agent`` span."""
    from ironloop.observability import traced_run

    with traced_run(agent, config, expected=lambda error: isinstance(error, CommandError) and error.code != 1):
        return _drive_traced(agent, state_in, config, approver, tokens=tokens)


def _drive_traced(agent: Any, state_in: Any, config: dict[str, Any], approver: Any, *, tokens: bool) -> str | None:
    from ironloop.cli.trajectory import TrajectoryPrinter
    from ironloop.graph.status import pending_approvals

    printer = TrajectoryPrinter(tokens=tokens)
    if state_in is None and (waiting := pending_approvals(agent.get_state(config))):
        state_in = _decisions(approver, waiting, config, printer)
    while True:
        _stream(agent, state_in, config, printer)
        waiting = pending_approvals(agent.get_state(config))
        if not waiting:
            printer.finish()
            return printer.answer
        state_in = _decisions(approver, waiting, config, printer)


def _decisions(approver: Any, waiting: list[Any], config: dict[str, Any], printer: TrajectoryPrinter) -> Any:
    from ironloop.cli.approver import describe_request
    from langgraph.types import Command

    printer.finish_line()
    answers = approver.decide(waiting)
    if answers is None:
        printer.finish()
        thread = config["configurable"]["thread_id"]
        calls = "; ".join(
            f"{describe_request(i.value)}: {i.value.get('reason')}"
            + (f" (refused: {i.value['problem']})" if i.value.get("problem") else "")
            for i in waiting
        )
        raise CommandError(
            f"thread {thread} is waiting for approval of {calls} Decide from any process: "
            f"`ironloop resume {thread} --approve` or `ironloop resume {thread} --reject REASON`",
            EXIT_PAUSED,
        )
    return Command(resume=answers)


def _stream(agent: Any, state_in: Any, config: dict[str, Any], printer: TrajectoryPrinter) -> None:
    """One pass of the graph, printing the trajectory; failures become one-line errors that say how to resume."""
    from ironloop.checkpoints.errors import CheckpointStoreError
    from ironloop.graph.model_call import ModelUnavailableError

    thread = config["configurable"]["thread_id"]
    modes = ["updates", "custom", "messages"] if printer.tokens else ["updates", "custom"]
    try:
        for mode, chunk in agent.stream(state_in, config, stream_mode=modes, durability="sync"):
            printer.feed(mode, chunk)
    except (ModelUnavailableError, CheckpointStoreError) as exc:
        printer.finish()
        raise CommandError(f"{exc}. The thread is saved: `ironloop resume {thread}` continues it") from exc
    except KeyboardInterrupt:
        printer.finish()
        raise CommandError(f"interrupted; `ironloop resume {thread}` continues the thread", 130) from None


@contextlib.contextmanager
def _search_url(args: argparse.Namespace, credentials: Any) -> Iterator[str]:
    """The search service for real-model runs: the given URL, or the bundled one for the command's duration."""
    configured = getattr(args, "search_url", None) or os.environ.get("IRONLOOP_SEARCH_URL")
    if configured:
        yield configured
        return
    service = _start_search(getattr(args, "profile", "none"), 0, credentials=credentials)
    try:
        yield service.url
    finally:
        service.stop()


def _agent_from_spec(
    spec: dict[str, Any], args: argparse.Namespace, search_url: str, store: Store, credentials: Any, mcp: Any = None
) -> Any:
    from ironloop.demo.agent import build_demo_agent
    from ironloop.graph.agent import build_agent
    from ironloop.graph.model_call import ModelPolicy
    from ironloop.tools.builtin import BUILTIN_POLICIES, builtin_tools

    if spec[AGENT_KEY] == "demo":
        return build_demo_agent(search_url, checkpointer=store.saver, listeners=[store.ledger], credentials=credentials)
    if str(spec[AGENT_KEY]).startswith("factory:"):  # a thread a worker ran with `--agent MODULE:FACTORY`
        from ironloop.distributed.agents import AgentSpecError, load_factory

        try:
            return load_factory(str(spec[AGENT_KEY]).removeprefix("factory:"))(store.saver)
        except AgentSpecError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    endpoint = _endpoint(args, spec.get("ironloop_base_url") or None)
    model = _chat_openai(args.model or spec.get("ironloop_model") or os.environ.get("IRONLOOP_MODEL"), endpoint)
    fallback = args.fallback_model or spec.get("ironloop_fallback_model")
    tools, policies = builtin_tools(search_url), dict(BUILTIN_POLICIES)
    if mcp is not None:  # the MCP servers' tools (`cli.mcp`), under their policies
        if clash := sorted({t.name for t in tools} & {t.name for t in mcp.tools}):
            raise CommandError(
                f"MCP tool(s) {', '.join(clash)} clash with built-in tools: set a 'prefix' on the server", EXIT_USAGE
            )
        tools, policies = [*tools, *mcp.tools], {**policies, **mcp.policies}
    return build_agent(
        model,
        tools,
        policies=policies,
        checkpointer=store.saver,
        listeners=[store.ledger],
        max_turns=int(spec.get("ironloop_max_turns") or 10),
        system_prompt=REAL_MODEL_PROMPT,
        model_policy=ModelPolicy(max_attempts=args.model_attempts),
        fallback_models=[_chat_openai(fallback, endpoint)] if fallback else [],
        credentials=credentials,
    )


@dataclass(frozen=True)
class Endpoint:
    base_url: str | None
    api_key: str


def _endpoint(args: argparse.Namespace, stored_base_url: str | None = None) -> Endpoint:
    api_key = args.api_key or os.environ.get("OPENAI_API_KEY")
    if not api_key:
        raise CommandError(
            "no API key: pass --api-key KEY or set OPENAI_API_KEY (any non-empty value for a local server "
            "that ignores keys)",
            EXIT_USAGE,
        )
    return Endpoint(args.base_url or stored_base_url or os.environ.get("OPENAI_BASE_URL"), api_key)


def _chat_openai(model_name: str | None, endpoint: Endpoint) -> Any:
    if not model_name:
        raise CommandError("no model: pass --model NAME or set IRONLOOP_MODEL", EXIT_USAGE)
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    # max_retries=0: the agent's ModelPolicy is the one retry layer (it honours Retry-After and falls back).
    key = SecretStr(endpoint.api_key)
    return ChatOpenAI(model=model_name, api_key=key, base_url=endpoint.base_url, timeout=60, max_retries=0)


# -- inspecting -------------------------------------------------------------------------------------------------


def list_threads(args: argparse.Namespace) -> int:
    from ironloop.checkpoints.errors import CorruptCheckpointError
    from ironloop.checkpoints.leases import ThreadLeases
    from ironloop.checkpoints.threads import recent_threads
    from ironloop.cli.approver import describe_request
    from ironloop.cli.listing import threads_table
    from ironloop.cli.output import print_json
    from ironloop.graph.status import CORRUPT, failure_of, pending_approvals, state_reader, status_of

    with open_store(args.db, create=False) as store:
        agent = state_reader(store.saver)
        rows = recent_threads(store.saver.engine, limit=args.limit)
        held = ThreadLeases(store.saver.engine).holders([row.thread_id for row in rows])
        listed = []
        for row in rows:
            try:
                snapshot = agent.get_state({"configurable": {"thread_id": row.thread_id}})
            except CorruptCheckpointError as error:  # one unreadable thread must not hide the others
                status, failure, step = CORRUPT, error.detail, None
            else:
                status = status_of(snapshot)
                failure = failure_of(snapshot) or "; ".join(
                    describe_request(i.value) for i in pending_approvals(snapshot)
                )
                step = (snapshot.metadata or {}).get("step")
            running = held[row.thread_id].describe() if row.thread_id in held else None
            listed.append(
                {"thread": row.thread_id, "created_at": row.created_at, "updated_at": row.updated_at, "step": step,
                 "status": status, "detail": failure or None, "running": running}
            )  # fmt: skip
    if args.json_out:
        print_json({"database": store.where, "threads": listed})
    elif not listed:
        print(f"no threads in {store.where}")
    else:
        print(threads_table(listed))
    return 0


def show_history(args: argparse.Namespace) -> int:
    from ironloop.cli.listing import history_table
    from ironloop.cli.output import print_json
    from ironloop.graph.status import history, state_reader

    with open_store(args.db, create=False) as store:
        rows = history(state_reader(store.saver), args.thread)
        if not rows:
            raise CommandError(f"no thread {args.thread!r} in {store.where}", EXIT_USAGE)
    if args.json_out:
        print_json({"database": store.where, "thread": args.thread, "checkpoints": [vars(row) for row in rows]})
    else:
        print(history_table(rows))
    if corrupt := [row for row in rows if row.problem]:
        raise CommandError(
            f"{len(corrupt)} of the {len(rows)} checkpoints of thread {args.thread!r} cannot be read (marked "
            f"CORRUPT above); the first: {corrupt[0].problem}"
        )
    return 0


def show_report(args: argparse.Namespace) -> int:
    from ironloop.cli.report import show

    since = _parse_since(args.since) if args.since else None
    with open_store(args.db, create=False) as store:
        return show(args, store, since)


def _parse_since(text: str) -> datetime:
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        try:
            return datetime.now(UTC) - timedelta(**{units[text[-1]]: float(text[:-1])})
        except OverflowError:
            raise CommandError(
                f"--since {text} reaches back before the year 1; give a smaller age", EXIT_USAGE
            ) from None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--since takes an ISO time or an age like 30m, 24h, 7d; got {text!r}", EXIT_USAGE) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def upgrade_db(args: argparse.Namespace) -> int:
    from ironloop.checkpoints.database import describe, make_engine
    from ironloop.checkpoints.migrate import current_revision, upgrade

    engine = make_engine(args.db)
    try:
        before = current_revision(engine)
        after = upgrade(engine)
    finally:
        engine.dispose()
    where = describe(engine.url)
    print(f"{where}: schema {before or 'empty'} → {after}" if before != after else f"{where}: schema at {after}")
    return 0


class _Stopped(Exception):
    """SIGTERM arrived: stop serving."""


def serve_tools(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (SIGINT) or SIGTERM, then stop the server and exit 0. SIGTERM counts because a
    process a shell starts in the background ignores SIGINT."""
    import signal

    def on_sigterm(signum: int, frame: object) -> None:
        raise _Stopped

    service = _start_search(args.profile, args.seed, args.port, credentials=_credentials())
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    print(
        f"tool services on {service.url}: GET /search?q=..., POST /charges, GET /charges "
        f"(profile {args.profile}, seed {args.seed}); Ctrl-C or SIGTERM stops",
        flush=True,
    )
    try:
        threading.Event().wait()
    except (_Stopped, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
