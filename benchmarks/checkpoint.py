"""Checkpoint savers: ironloop's SQLAlchemySaver against LangGraph's SqliteSaver and PostgresSaver, side by side.

``ironloop bench checkpoint`` measures put, put_writes, get_tuple and list throughput on checkpoints shaped like the
agent's (a growing message list of AI and tool messages), and whole demo tasks with each saver as checkpointer, on
the same databases (our tables are prefixed ``ironloop_``, so they sit beside the official savers' own). It also
measures what the attempt ledger costs a task. Contenders alternate within each round and every figure is the
median over rounds, so a shared, noisy machine moves both sides alike; the ratios (ironloop ÷ official, higher is
better) are what to read. Writes ``benchmarks/results/checkpoint.json`` and ``checkpoint.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ironloop.benchmarks import RESULTS_DIR
from ironloop.terminal import ProgressBar

if TYPE_CHECKING:  # LangGraph and LangChain are imported where used: `ironloop bench checkpoint --help` stays quick
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import BaseCheckpointSaver, ChannelVersions, Checkpoint, CheckpointMetadata

POSTGRES = "127.0.0.1:5432"
MEASURES = ("put", "put_writes", "get_tuple", "list", "demo_task")


@dataclass
class Contender:
    name: str
    saver: BaseCheckpointSaver
    close: Callable[[], None]


# -- data shaped like the agent's --------------------------------------------------------------------------------


def agent_steps(
    saver: BaseCheckpointSaver, steps: int
) -> Iterator[tuple[Checkpoint, CheckpointMetadata, ChannelVersions]]:
    """(checkpoint, metadata, new_versions) for a thread whose message list grows by a model turn and its
    observations each step, with versions made by ``saver`` itself."""
    from langchain_core.messages import AIMessage, ToolMessage
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.base.id import uuid6

    messages: list[Any] = []
    versions: dict[str, Any] = {}
    for step in range(steps):
        call_id = f"call_{step:04d}"
        messages = [
            *messages,
            AIMessage(content="", tool_calls=[{"name": "search", "args": {"query": f"q{step}"}, "id": call_id}]),
            ToolMessage(content=f"result {step}: " + "lorem ipsum " * 20, tool_call_id=call_id, name="search"),
        ]
        new_versions: ChannelVersions = {}
        for channel in ("messages", "branch:to:model"):
            versions[channel] = new_versions[channel] = saver.get_next_version(versions.get(channel), None)
        checkpoint = empty_checkpoint()
        checkpoint["id"] = str(uuid6(clock_seq=step))
        checkpoint["channel_values"] = {"messages": messages, "branch:to:model": None}
        checkpoint["channel_versions"] = dict(versions)
        checkpoint["versions_seen"] = {"model": dict(versions)}
        yield checkpoint, {"source": "loop", "step": step, "parents": {}}, new_versions


def fill_thread(saver: BaseCheckpointSaver, thread_id: str, steps: int) -> RunnableConfig:
    """Write ``steps`` checkpoints; returns the config of the last one."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    for checkpoint, meta, new_versions in agent_steps(saver, steps):
        config = saver.put(config, checkpoint, meta, new_versions)
    return config


# -- the measures: each returns operations per second ------------------------------------------------------------


def measure_put(saver: BaseCheckpointSaver, ops: int) -> float:
    steps = list(agent_steps(saver, ops))
    config: RunnableConfig = {"configurable": {"thread_id": f"put-{secrets.token_hex(4)}", "checkpoint_ns": ""}}
    started = time.perf_counter()
    for checkpoint, meta, new_versions in steps:
        config = saver.put(config, checkpoint, meta, new_versions)
    return ops / (time.perf_counter() - started)


def measure_put_writes(saver: BaseCheckpointSaver, ops: int) -> float:
    from langchain_core.messages import ToolMessage

    config = fill_thread(saver, f"writes-{secrets.token_hex(4)}", 1)
    writes = [
        ("messages", [ToolMessage(content="result " * 30, tool_call_id=f"c{i}", name="search")]) for i in range(3)
    ]
    started = time.perf_counter()
    for op in range(ops):
        saver.put_writes(config, writes, task_id=f"task-{op}")
    return ops / (time.perf_counter() - started)


def measure_get_tuple(saver: BaseCheckpointSaver, ops: int, thread: str) -> float:
    config: RunnableConfig = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    started = time.perf_counter()
    for _ in range(ops):
        assert saver.get_tuple(config) is not None
    return ops / (time.perf_counter() - started)


def measure_list(saver: BaseCheckpointSaver, ops: int, thread: str) -> float:
    config: RunnableConfig = {"configurable": {"thread_id": thread}}
    started = time.perf_counter()
    for _ in range(ops):
        assert len(list(saver.list(config, limit=10))) == 10
    return ops / (time.perf_counter() - started)


def measure_demo_tasks(saver: BaseCheckpointSaver | None, tasks: int, url: str, listeners: list[Any]) -> float:
    """Whole population tasks (3 model turns, 3 tool calls, sync durability) per second."""
    from ironloop.demo.agent import build_demo_agent
    from ironloop.demo.scenario import DEMO_QUESTION

    agent = build_demo_agent(url, checkpointer=saver, listeners=listeners)
    durability: dict[str, Any] = {} if saver is None else {"durability": "sync"}  # 1.2 fails on it without a saver
    started = time.perf_counter()
    for _ in range(tasks):
        config: RunnableConfig = {"configurable": {"thread_id": f"demo-{secrets.token_hex(6)}"}}
        agent.invoke({"messages": [("user", DEMO_QUESTION)]}, config, **durability)
    return tasks / (time.perf_counter() - started)


# -- contenders -----------------------------------------------------------------------------------------------


def sqlite_pair(directory: Path) -> tuple[Contender, Contender]:
    from ironloop.checkpoints import SQLAlchemySaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = directory / "bench.db"
    ours = SQLAlchemySaver.from_url(f"sqlite:///{path}")
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    official = SqliteSaver(connection)
    official.setup()
    return Contender("ironloop", ours, ours.close), Contender("official", official, connection.close)


@contextlib.contextmanager
def postgres_database(url: str | None) -> Iterator[str]:
    """The given PostgreSQL URL, or a scratch database on 127.0.0.1:5432 dropped afterwards."""
    if url:
        yield url
        return
    import psycopg

    name = f"ironloop_bench_{secrets.token_hex(4)}"
    with psycopg.connect(f"postgresql://postgres@{POSTGRES}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@{POSTGRES}/{name}"
    finally:
        with psycopg.connect(f"postgresql://postgres@{POSTGRES}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_pair(url: str) -> tuple[Contender, Contender]:
    import psycopg
    from ironloop.checkpoints import SQLAlchemySaver
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    ours = SQLAlchemySaver.from_url(url)
    connection = psycopg.connect(
        url.replace("+psycopg", ""), autocommit=True, prepare_threshold=0, row_factory=dict_row
    )
    official = PostgresSaver(connection)
    official.setup()
    return Contender("ironloop", ours, ours.close), Contender("official", official, connection.close)


def compare(pair: tuple[Contender, Contender], *, rounds: int, ops: int, tasks: int, url: str) -> dict[str, Any]:
    """Median ops/s per measure and contender, alternating who goes first each round."""
    threads = {c.name: f"read-{c.name}-{secrets.token_hex(4)}" for c in pair}
    for contender in pair:
        fill_thread(contender.saver, threads[contender.name], 50)
    samples: dict[str, dict[str, list[float]]] = {m: {c.name: [] for c in pair} for m in MEASURES}
    with ProgressBar(rounds * len(pair), "rounds × savers") as bar:
        for round_index in range(rounds):
            order = pair if round_index % 2 == 0 else pair[::-1]
            for contender in order:
                saver, thread = contender.saver, threads[contender.name]
                samples["put"][contender.name].append(measure_put(saver, ops))
                samples["put_writes"][contender.name].append(measure_put_writes(saver, ops))
                samples["get_tuple"][contender.name].append(measure_get_tuple(saver, ops, thread))
                samples["list"][contender.name].append(measure_list(saver, ops, thread))
                samples["demo_task"][contender.name].append(measure_demo_tasks(saver, tasks, url, []))
                bar.advance()
    result: dict[str, Any] = {}
    for measure, by_name in samples.items():
        medians = {name: statistics.median(values) for name, values in by_name.items()}
        result[measure] = {
            **{f"{n}_ops_s": round(v, 1) for n, v in medians.items()},
            "ratio": round(medians["ironloop"] / medians["official"], 3),
        }
    return result


def ledger_cost(directory: Path, *, rounds: int, tasks: int, url: str) -> dict[str, Any]:
    """Demo tasks per second with our saver, without and with the attempt ledger, and with no checkpointer."""
    from ironloop.checkpoints import SQLAlchemySaver
    from ironloop.checkpoints.ledger import AttemptLedger

    with SQLAlchemySaver.from_url(f"sqlite:///{directory / 'ledger.db'}") as saver:
        ledger = AttemptLedger(saver.engine)
        samples: dict[str, list[float]] = {"no_checkpointer": [], "saver": [], "saver_and_ledger": []}
        with ProgressBar(rounds, "ledger rounds") as bar:
            for _ in range(rounds):
                samples["no_checkpointer"].append(measure_demo_tasks(None, tasks, url, []))
                samples["saver"].append(measure_demo_tasks(saver, tasks, url, []))
                samples["saver_and_ledger"].append(measure_demo_tasks(saver, tasks, url, [ledger]))
                bar.advance()
        ledger.close()
        rows = ledger.written
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return {
        **{f"{name}_tasks_s": round(value, 2) for name, value in medians.items()},
        "ledger_ratio": round(medians["saver_and_ledger"] / medians["saver"], 3),
        "ledger_rows_written": rows,
    }


# -- command ------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=5, help="rounds per measure; figures are medians (default 5)")
    parser.add_argument("--ops", type=int, default=300, help="operations per measure and round (default 300)")
    parser.add_argument("--tasks", type=int, default=20, help="demo tasks per round for the task measure (default 20)")
    parser.add_argument("--postgres-url", default=None, help=f"PostgreSQL to use (default: a scratch db on {POSTGRES})")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR / "checkpoint.json", help="write the figures as JSON to FILE"
    )


def run(args: argparse.Namespace) -> int:
    from ironloop.demo.services.server import start_tool_services

    started = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "checkpoint", "settings": vars(args) | {"out": str(args.out)}}
    report["machine"] = {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {
            p: metadata.version(p)
            for p in (
                "langgraph",
                "langgraph-checkpoint-sqlite",
                "langgraph-checkpoint-postgres",
                "sqlalchemy",
                "psycopg",
            )
        },
    }
    with start_tool_services(profile="none") as services, tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        settings = {"rounds": args.rounds, "ops": args.ops, "tasks": args.tasks, "url": services.url}
        pair = sqlite_pair(directory)
        try:
            report["sqlite"] = compare(pair, **settings)
        finally:
            for contender in pair:
                contender.close()
        print(format_table("SQLite: SQLAlchemySaver vs SqliteSaver", report["sqlite"]))
        if args.no_postgres:
            print("\nPostgreSQL: SKIPPED (--no-postgres)")
        else:
            with postgres_database(args.postgres_url) as url:
                pair = postgres_pair(url)
                try:
                    report["postgresql"] = compare(pair, **settings)
                finally:
                    for contender in pair:
                        contender.close()
            print("\n" + format_table("PostgreSQL: SQLAlchemySaver vs PostgresSaver", report["postgresql"]))
        report["ledger"] = ledger_cost(directory, rounds=args.rounds, tasks=args.tasks, url=services.url)
    ledger = report["ledger"]
    print(
        f"\nattempt ledger (SQLite, demo tasks/s): no checkpointer {ledger['no_checkpointer_tasks_s']}, saver "
        f"{ledger['saver_tasks_s']}, saver + ledger {ledger['saver_and_ledger_tasks_s']} "
        f"(ratio {ledger['ledger_ratio']}, {ledger['ledger_rows_written']} rows)"
    )
    report["wall_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    args.out.with_suffix(".md").write_text(format_markdown(report))
    print(f"\nwall time {report['wall_s']} s; wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


def format_table(title: str, result: dict[str, Any]) -> str:
    lines = [title, f"{'measure':<12} {'ironloop ops/s':>15} {'official ops/s':>15} {'ratio':>7}"]
    for measure in MEASURES:
        row = result[measure]
        lines.append(
            f"{measure:<12} {row['ironloop_ops_s']:>15,.1f} {row['official_ops_s']:>15,.1f} {row['ratio']:>6.2f}×"
        )
    return "\n".join(lines)


def format_markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        f"Command: `ironloop bench checkpoint --rounds {settings['rounds']} --ops {settings['ops']} "
        f"--tasks {settings['tasks']}` on {report['machine']['cores']} cores, {report['machine']['date']} "
        f"({', '.join(f'{k} {v}' for k, v in report['machine']['versions'].items())}).",
        "",
        "| database | measure | ironloop ops/s | official ops/s | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for database, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        for measure in MEASURES if database in report else ():
            row = report[database][measure]
            lines.append(
                f"| {label} | {measure} | {row['ironloop_ops_s']:,.1f} | {row['official_ops_s']:,.1f} | "
                f"{row['ratio']:.2f}× |"
            )
    ledger = report["ledger"]
    lines += [
        "",
        f"Attempt ledger cost (SQLite, demo tasks per second, sync durability): no checkpointer "
        f"{ledger['no_checkpointer_tasks_s']}, saver {ledger['saver_tasks_s']}, saver + ledger "
        f"{ledger['saver_and_ledger_tasks_s']}: ratio {ledger['ledger_ratio']}.",
    ]
    return "\n".join(lines) + "\n"
