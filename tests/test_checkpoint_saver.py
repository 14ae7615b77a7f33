"""`SQLAlchemySaver` beyond the conformance suite: URLs, migrations, errors, real graphs, concurrency.

Every test that takes ``checkpoint_db_url`` runs on SQLite, PostgreSQL and MariaDB (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from ironloop.checkpoints import (
    CorruptCheckpointError,
    DatabaseUnavailableError,
    InvalidDatabaseURLError,
    InvalidKeyError,
    SchemaTooNewError,
    SQLAlchemySaver,
    default_db_url,
    make_engine,
    migrate,
    schema,
)
from ironloop.checkpoints.database import DEFAULT_DB_URL, parse_url
from ironloop.demo.agent import build_demo_agent
from ironloop.demo.scenario import DEMO_QUESTION
from langgraph.checkpoint.base import Checkpoint, empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.serde.types import ERROR
from sqlalchemy import Engine, func, inspect, select, text, update

pytestmark = pytest.mark.timeout(60)

ANSWER = "The combined city-proper population of Paris and Lyon is 2,673,000 (2,160,000 + 513,000)."
SERVERS = ("postgresql", "mariadb")


def thread_config(prefix: str = "t") -> dict[str, Any]:
    return {"configurable": {"thread_id": f"{prefix}-{uuid.uuid4().hex}", "checkpoint_ns": ""}}


def make_checkpoint(saver: SQLAlchemySaver, messages: list[str], previous: Checkpoint | None = None) -> Checkpoint:
    checkpoint = empty_checkpoint()
    versions = dict(previous["channel_versions"]) if previous else {}
    versions["messages"] = saver.get_next_version(versions.get("messages"), None)
    checkpoint["channel_values"] = {"messages": messages, "count": len(messages)}
    checkpoint["channel_versions"] = versions
    return checkpoint


def put_chain(saver: SQLAlchemySaver, config: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """``count`` checkpoints in a row on one thread, each adding a message; returns their configs."""
    stored = []
    previous = None
    for step in range(count):
        checkpoint = make_checkpoint(saver, [f"message {i}" for i in range(step + 1)], previous)
        config = saver.put(
            config,
            checkpoint,
            {"source": "loop", "step": step, "parents": {}},
            {"messages": checkpoint["channel_versions"]["messages"]},
        )
        stored.append(config)
        previous = checkpoint
    return stored


@pytest.fixture
def saver(checkpoint_db_url: str) -> Iterator[SQLAlchemySaver]:
    with SQLAlchemySaver.from_url(checkpoint_db_url) as instance:
        yield instance


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- URLs and engines ---------------------------------------------------------------------------------------------


def test_default_db_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IRONLOOP_DB_URL", raising=False)
    assert default_db_url() == DEFAULT_DB_URL == "sqlite:///./ironloop.db"
    monkeypatch.setenv("IRONLOOP_DB_URL", "postgresql://someone@db.example:5433/agents")
    assert default_db_url() == "postgresql://someone@db.example:5433/agents"


def test_urls_get_their_drivers() -> None:
    assert parse_url("postgresql://u@h:5432/db").drivername == "postgresql+psycopg"
    assert parse_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert parse_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert parse_url("mysql://root@h:3306/test").drivername == "mysql+pymysql"
    assert parse_url("mariadb://root@h/test").drivername == "mariadb+pymysql"
    assert parse_url("mysql+pymysql://root@h/test").drivername == "mysql+pymysql"
    assert parse_url("sqlite:///x.db").drivername == "sqlite"


def test_sqlite_url_creates_the_directory(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = thread_config()
    with SQLAlchemySaver.from_url("sqlite:///nested/deeper/agent.db") as saver:
        put_chain(saver, config, 2)
        assert saver.get_tuple(config) is not None
        engine = saver.engine
    assert (tmp_path / "nested" / "deeper" / "agent.db").is_file()
    assert engine.pool.checkedout() == 0  # leaving the block disposed of the engine it made


@pytest.mark.parametrize("backend", SERVERS)
def test_server_urls_with_and_without_driver(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_url" if backend == "postgresql" else "mariadb_url")
    bare = url.replace("+psycopg", "") if backend == "postgresql" else url.replace("mariadb+pymysql", "mysql")
    for variant in {url, bare, url.replace("mariadb+pymysql", "mysql+pymysql")}:
        config = thread_config()
        with SQLAlchemySaver.from_url(variant) as saver:
            assert saver.engine.dialect.driver in ("psycopg", "pymysql")
            put_chain(saver, config, 1)
            assert saver.get_tuple(config) is not None


def test_saver_on_an_engine_it_does_not_own(checkpoint_db_url: str) -> None:
    engine = make_engine(checkpoint_db_url)
    try:
        config = thread_config()
        with SQLAlchemySaver(engine) as saver:
            put_chain(saver, config, 1)
        with engine.connect() as connection:  # still usable: the saver leaves an engine it was given alone
            found = connection.execute(
                select(func.count()).where(schema.checkpoints.c.thread_id == config["configurable"]["thread_id"])
            ).scalar()
        assert found == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("this is not a url", "not a database URL"),
        ("oracle://scott:tiger-secret@db.example:1521/orcl", "unsupported database 'oracle'"),
        ("postgresql+psycopg2://app:tiger-secret@db.example/agents", "driver 'postgresql+psycopg2' is not available"),
        ("mysql+mysqldb://app:tiger-secret@db.example/agents", "driver 'mysql+mysqldb' is not available"),
    ],
)
def test_unusable_urls_are_clear_errors(url: str, expected: str) -> None:
    with pytest.raises(InvalidDatabaseURLError) as caught:
        SQLAlchemySaver.from_url(url)
    assert expected in str(caught.value)
    assert "tiger-secret" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


# -- migrations ---------------------------------------------------------------------------------------------------


@pytest.fixture(params=("sqlite", *SERVERS))
def fresh_engine(request: pytest.FixtureRequest, scratch_databases: Any) -> Iterator[Engine]:
    """An engine on a database nobody has used yet."""
    engine = make_engine(scratch_databases.new(request.param))
    yield engine
    engine.dispose()


def test_first_use_migrates_and_migrating_again_changes_nothing(fresh_engine: Engine) -> None:
    assert migrate.current_revision(fresh_engine) is None
    config = thread_config()
    with SQLAlchemySaver(fresh_engine) as saver:
        assert saver.get_tuple(config) is None  # first use: migrates
    head = migrate.head_revision()
    assert migrate.current_revision(fresh_engine) == head == migrate.known_revisions()[-1]
    assert migrate.known_revisions()[0] == "0001"
    assert migrate.upgrade(fresh_engine) == head
    assert migrate.upgrade(fresh_engine) == head
    tables = set(inspect(fresh_engine).get_table_names())
    assert {t.name for t in schema.metadata_obj.sorted_tables} | {migrate.VERSION_TABLE} <= tables
    assert "alembic_version" not in tables
    columns = {c["name"] for c in inspect(fresh_engine).get_columns("tool_attempts")}
    assert columns == {
        "id", "thread_id", "checkpoint_ns", "tool_call_id", "tool", "attempt", "started_at", "duration_ms",
        "outcome", "error_class", "error_text", "details",
    }  # fmt: skip
    with fresh_engine.connect() as connection:
        versions = connection.execute(text(f"SELECT version_num FROM {migrate.VERSION_TABLE}")).scalars().all()
    assert versions == [head]


def test_processes_starting_together_migrate_once(fresh_engine: Engine) -> None:
    """Several savers (each with its own engine and connections, as separate processes would have) start on a
    fresh database at the same moment: all succeed and the schema is migrated once."""
    url = fresh_engine.url
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            with SQLAlchemySaver(make_engine(url), owns_engine=True) as saver:
                barrier.wait(10)
                saver.setup()
                put_chain(saver, thread_config(), 1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert migrate.current_revision(fresh_engine) == migrate.head_revision()


def test_migrations_build_exactly_the_schema(fresh_engine: Engine) -> None:
    """The migration scripts and `checkpoints.schema` describe the same tables, columns, types and indexes."""
    migrate.upgrade(fresh_engine)
    with fresh_engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": migrate.VERSION_TABLE}
        )
        differences = compare_metadata(context, schema.metadata_obj)
    assert differences == []


def test_a_database_from_a_newer_ironloop_is_refused(fresh_engine: Engine) -> None:
    migrate.upgrade(fresh_engine)
    with fresh_engine.begin() as connection:
        connection.execute(text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '9999'"))
    with SQLAlchemySaver(fresh_engine) as saver, pytest.raises(SchemaTooNewError) as caught:
        saver.get_tuple(thread_config())
    message = str(caught.value)
    assert "'9999'" in message and repr(migrate.head_revision()) in message
    assert caught.value.database_revision == "9999"
    with pytest.raises(SchemaTooNewError):
        migrate.upgrade(fresh_engine)
    assert migrate.current_revision(fresh_engine) == "9999"  # refused without touching anything


# -- errors -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://agent:s3cr3t-Pa55word@127.0.0.1:{port}/agents_db",
        "mysql+pymysql://agent:s3cr3t-Pa55word@127.0.0.1:{port}/agents_db",
        "mariadb+pymysql://agent:s3cr3t-Pa55word@127.0.0.1:{port}/agents_db",
    ],
)
def test_an_unreachable_database_is_named_without_its_password(url: str) -> None:
    port = closed_port()
    saver = SQLAlchemySaver.from_url(url.format(port=port))
    started = time.monotonic()
    with saver, pytest.raises(DatabaseUnavailableError) as caught:
        saver.get_tuple(thread_config())
    assert time.monotonic() - started < 5
    error = caught.value
    message = str(error)
    backend = url.split("+")[0].split(":")[0]
    assert f"{backend} database 'agents_db' at 127.0.0.1:{port}" in message
    for text_ in (message, repr(error), str(error.__cause__), repr(saver)):
        assert "s3cr3t-Pa55word" not in text_
    with pytest.raises(DatabaseUnavailableError) as again:
        migrate.upgrade(saver.engine)
    assert "s3cr3t-Pa55word" not in str(again.value)


def test_keys_that_do_not_fit_are_refused_before_writing(saver: SQLAlchemySaver) -> None:
    config = {"configurable": {"thread_id": "x" * 300, "checkpoint_ns": ""}}
    saver.setup()
    with pytest.raises(InvalidKeyError, match="thread_id is 300 characters long"):
        put_chain(saver, config, 1)
    with saver.engine.connect() as connection:
        rows = connection.execute(select(func.count()).where(schema.checkpoints.c.thread_id.like("xxxx%"))).scalar()
    assert rows == 0


def test_a_corrupt_checkpoint_names_itself_and_spares_the_others(saver: SQLAlchemySaver) -> None:
    config = thread_config("corrupt")
    thread_id = config["configurable"]["thread_id"]
    first, second, third = put_chain(saver, config, 3)
    saver.put_writes(third, [("messages", ["pending"])], "task-1")
    ids = [c["configurable"]["checkpoint_id"] for c in (first, second, third)]

    with saver.engine.begin() as connection:
        connection.execute(
            update(schema.checkpoints)
            .where(schema.checkpoints.c.thread_id == thread_id, schema.checkpoints.c.checkpoint_id == ids[1])
            .values(checkpoint=b"\xc1 not msgpack at all")
        )
    with pytest.raises(CorruptCheckpointError) as caught:
        saver.get_tuple(second)
    assert thread_id in str(caught.value) and ids[1] in str(caught.value)
    assert caught.value.thread_id == thread_id and caught.value.checkpoint_id == ids[1]
    assert saver.get_tuple(first).checkpoint["channel_values"]["messages"] == ["message 0"]
    latest = saver.get_tuple(config)
    assert latest.checkpoint["id"] == ids[2] and latest.pending_writes == [("task-1", "messages", ["pending"])]
    listed = saver.list(config)
    assert next(listed).checkpoint["id"] == ids[2]  # newer checkpoints come out before the corrupt one
    with pytest.raises(CorruptCheckpointError):
        next(listed)
    assert [t.checkpoint["id"] for t in saver.list(config, before=second)] == [ids[0]]

    # A damaged channel blob: only the checkpoints that read that version are affected.
    version = latest.checkpoint["channel_versions"]["messages"]
    with saver.engine.begin() as connection:
        connection.execute(
            update(schema.checkpoint_blobs)
            .where(schema.checkpoint_blobs.c.thread_id == thread_id, schema.checkpoint_blobs.c.version == version)
            .values(type="msgpack", blob=b"\xc1")
        )
    with pytest.raises(CorruptCheckpointError, match="channel 'messages'"):
        saver.get_tuple(config)
    assert saver.get_tuple(first) is not None

    async def read_async() -> None:
        with pytest.raises(CorruptCheckpointError):
            await saver.aget_tuple(config)
        assert (await saver.aget_tuple(first)) is not None

    asyncio.run(read_async())


# -- storage ------------------------------------------------------------------------------------------------------


def test_unchanged_channels_are_not_written_again(saver: SQLAlchemySaver) -> None:
    config = thread_config()
    thread_id = config["configurable"]["thread_id"]
    first = make_checkpoint(saver, ["a long conversation"] * 50)
    config = saver.put(config, first, {"step": 0}, dict(first["channel_versions"]))
    for step in range(1, 4):  # steps that did not touch the messages
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"messages": first["channel_values"]["messages"], "count": step}
        checkpoint["channel_versions"] = dict(first["channel_versions"])
        config = saver.put(config, checkpoint, {"step": step}, {})
    with saver.engine.connect() as connection:
        blobs = connection.execute(
            select(func.count()).where(schema.checkpoint_blobs.c.thread_id == thread_id)
        ).scalar()
    assert blobs == 1
    latest = saver.get_tuple(config)
    assert latest.checkpoint["channel_values"] == {"messages": ["a long conversation"] * 50, "count": 3}
    assert latest.metadata["step"] == 3


def test_first_write_wins_and_special_writes_replace(saver: SQLAlchemySaver) -> None:
    (config,) = put_chain(saver, thread_config(), 1)
    saver.put_writes(config, [("messages", "first"), ("count", 1)], "task")
    saver.put_writes(config, [("messages", "second"), ("count", 2)], "task")  # a task run again after a resume
    saver.put_writes(config, [(ERROR, "boom")], "task")
    saver.put_writes(config, [(ERROR, "boom again")], "task")
    assert saver.get_tuple(config).pending_writes == [
        ("task", ERROR, "boom again"),
        ("task", "messages", "first"),
        ("task", "count", 1),
    ]


def test_list_filters_limits_and_pages(saver: SQLAlchemySaver) -> None:
    config = thread_config()
    stored = put_chain(saver, config, 12)
    ids = [c["configurable"]["checkpoint_id"] for c in stored]
    assert [t.metadata["step"] for t in saver.list(config, limit=3)] == [11, 10, 9]
    assert [t.metadata["step"] for t in saver.list(config, before=stored[5], limit=2)] == [4, 3]
    assert [t.checkpoint["id"] for t in saver.list(config, filter={"step": 7})] == [ids[7]]
    assert [t.metadata["step"] for t in saver.list(config, filter={"source": "loop"}, before=stored[4], limit=3)] == [
        3,
        2,
        1,
    ]
    assert list(saver.list(config, filter={"source": "input"})) == []
    assert [t.checkpoint["channel_values"]["count"] for t in saver.list(config, limit=2)] == [12, 11]
    everywhere = [
        t for t in saver.list(None, filter={"step": 11}) if t.config["configurable"] == stored[-1]["configurable"]
    ]
    assert len(everywhere) == 1


# -- real graphs --------------------------------------------------------------------------------------------------


def test_the_demo_agent_runs_sync_and_async_on_one_saver(saver: SQLAlchemySaver, search_service: Any) -> None:
    service, _ = search_service
    agent = build_demo_agent(service.url, checkpointer=saver)
    question = {"messages": [("user", DEMO_QUESTION)]}

    sync_config = thread_config("sync")
    assert agent.invoke(question, sync_config)["messages"][-1].content == ANSWER
    history = list(agent.get_state_history(sync_config))
    assert [s.metadata["step"] for s in history] == list(range(len(history) - 2, -2, -1))
    assert history[-1].metadata["source"] == "input" and history[0].next == ()
    assert history[0].values["messages"][-1].content == ANSWER
    assert any(s.next == ("tools", "tools") for s in history)  # both searches checkpointed in one step

    async def run_async() -> list[Any]:
        async_config = thread_config("async")
        state = await agent.ainvoke(question, async_config)
        assert state["messages"][-1].content == ANSWER
        return [s async for s in agent.aget_state_history(async_config)]

    async_history = asyncio.run(run_async())
    assert len(async_history) == len(history)

    # Stop before the tools run, then resume from the checkpoint (sync), as after a crash.
    resumed_config = thread_config("resumed")
    agent.invoke(question, resumed_config, interrupt_before=["tools"])
    assert agent.get_state(resumed_config).next == ("tools", "tools")
    assert agent.invoke(None, resumed_config)["messages"][-1].content == ANSWER
    assert agent.get_state(resumed_config).next == ()


def test_one_saver_serves_many_threads_and_tasks(saver: SQLAlchemySaver) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            config = thread_config("threaded")
            stored = put_chain(saver, config, 8)
            for i, cfg in enumerate(stored):
                saver.put_writes(cfg, [("messages", [f"write {i}"])], f"task-{i}")
            listed = list(saver.list(config))
            assert [t.metadata["step"] for t in listed] == list(range(7, -1, -1))
            assert all(len(t.pending_writes) == 1 for t in listed)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors

    async def task(n: int) -> int:
        thread = config = thread_config("task")
        previous = None
        for step in range(5):
            checkpoint = make_checkpoint(saver, [f"m{n}.{i}" for i in range(step + 1)], previous)
            config = await saver.aput(config, checkpoint, {"step": step}, dict(checkpoint["channel_versions"]))
            await saver.aput_writes(config, [("count", step)], f"t{step}")
            previous = checkpoint
        latest = await saver.aget_tuple(config)
        assert latest.checkpoint["channel_values"]["messages"][-1] == f"m{n}.4"
        return len([t async for t in saver.alist(thread)])

    async def run_all() -> list[int]:
        return await asyncio.gather(*(task(n) for n in range(16)))

    assert asyncio.run(run_all()) == [5] * 16


def test_async_methods_run_on_the_saver_threads(checkpoint_db_url: str) -> None:
    """The event loop's thread never touches the database: async calls run on the saver's own pool."""
    seen: list[str] = []

    class Recording(JsonPlusSerializer):
        def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
            seen.append(threading.current_thread().name)
            return super().dumps_typed(obj)

    async def run(saver: SQLAlchemySaver) -> None:
        loop_thread = threading.current_thread().name
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        config = thread_config()
        for step in range(10):
            checkpoint = make_checkpoint(saver, [f"m{step}"])
            config = await saver.aput(config, checkpoint, {"step": step}, dict(checkpoint["channel_versions"]))
        ticking.cancel()
        assert loop_thread not in seen
        assert ticks >= 10  # the loop kept running while the saver worked

    with SQLAlchemySaver.from_url(checkpoint_db_url, serde=Recording()) as saver:
        asyncio.run(run(saver))
    assert seen and all(name.startswith("ironloop-checkpoints") for name in seen)


def test_large_checkpoints_and_many_writes(saver: SQLAlchemySaver) -> None:
    """More channels and writes than one statement takes are split across statements, not lost."""
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {f"channel{i}": [i, "x" * 300] for i in range(700)}
    checkpoint["channel_versions"] = {name: saver.get_next_version(None, None) for name in checkpoint["channel_values"]}
    config = saver.put(thread_config(), checkpoint, {"step": 0}, dict(checkpoint["channel_versions"]))
    saver.put_writes(config, [("channel0", n) for n in range(1200)], "task")
    loaded = saver.get_tuple(config)
    assert loaded.checkpoint["channel_values"] == checkpoint["channel_values"]
    assert [value for _, _, value in loaded.pending_writes] == list(range(1200))


def test_in_memory_sqlite_is_one_database_for_every_thread() -> None:
    with SQLAlchemySaver.from_url("sqlite://") as saver:
        config = thread_config()
        (stored,) = put_chain(saver, config, 1)
        assert asyncio.run(saver.aget_tuple(config)).config == stored  # read on another thread

        def writer(n: int) -> None:
            put_chain(saver, thread_config(f"mem{n}"), 3)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(list(saver.list(None))) == 1 + 4 * 3


def test_sqlite_connections_of_finished_threads_serve_the_next_ones(tmp_path: Any) -> None:
    """Each thread keeps its own SQLite connection; when it ends, the next new thread reuses it (LangGraph writes
    checkpoints from fresh threads each run); `close` closes them all."""
    import gc

    from sqlalchemy import event

    with SQLAlchemySaver.from_url(f"sqlite:///{tmp_path / 'threads.db'}") as saver:
        saver.setup()
        opened: list[object] = []
        event.listen(saver.engine, "connect", lambda dbapi_connection, _record: opened.append(dbapi_connection))
        config = thread_config()
        put_chain(saver, config, 1)
        for _ in range(20):  # one after the other, as a run's background threads come and go
            thread = threading.Thread(target=put_chain, args=(saver, thread_config(), 1))
            thread.start()
            thread.join(10)
            gc.collect()
        assert len(opened) <= 3  # not one per thread
        assert saver._connections.kept <= 2  # this thread's, and at most one not yet collected
        saver.get_tuple(config)
    assert saver._connections.kept == 0 and not saver._connections._idle


def test_timestamps_are_utc_to_the_microsecond(fresh_engine: Engine) -> None:
    """Ledger and checkpoint times come back as the same UTC instants, microseconds included (MySQL/MariaDB
    ``DATETIME`` would drop them), whatever time zone they were given in."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy import insert

    migrate.upgrade(fresh_engine)
    instant = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    elsewhere = instant.astimezone(timezone(timedelta(hours=-5)))
    row = {"tool_call_id": "c1", "tool": "search", "outcome": "ok", "attempts": 1, "duration_ms": 1.5}
    with fresh_engine.begin() as connection:
        connection.execute(insert(schema.tool_calls).values(**row, thread_id="a", finished_at=instant))
        connection.execute(insert(schema.tool_calls).values(**row, thread_id="b", finished_at=elsewhere))
    with fresh_engine.connect() as connection:
        found = connection.execute(
            select(schema.tool_calls.c.finished_at).where(schema.tool_calls.c.finished_at >= instant)
        ).scalars()
        assert list(found) == [instant, instant]
    with SQLAlchemySaver(fresh_engine) as saver:
        before = datetime.now(UTC)
        (stored,) = put_chain(saver, thread_config(), 1)
    with fresh_engine.connect() as connection:
        created = connection.execute(
            select(schema.checkpoints.c.created_at).where(
                schema.checkpoints.c.checkpoint_id == stored["configurable"]["checkpoint_id"]
            )
        ).scalar_one()
    assert created.tzinfo is not None and before <= created <= datetime.now(UTC)


def test_sqlite_writers_of_one_process_queue_in_turn(tmp_path: Any) -> None:
    """SQLite writes queue on an in-process lock (not SQLite's sleeping busy handler), released on every exit."""
    saver = SQLAlchemySaver.from_url(f"sqlite:///{tmp_path / 'queue.db'}")
    writer = saver._connections.sqlite_writer
    seen: list[bool] = []

    def write(db: Any) -> None:
        seen.append(writer.locked())

    saver._run("a test write", write, write=True)
    saver._run("a test read", lambda db: seen.append(writer.locked()))
    with pytest.raises(RuntimeError):
        saver._run("a failing write", lambda db: (_ for _ in ()).throw(RuntimeError("boom")), write=True)
    assert seen == [True, False] and not writer.locked()  # held while writing only, released after a failure

    configs = [thread_config("q") for _ in range(6)]
    workers = [threading.Thread(target=put_chain, args=(saver, config, 15)) for config in configs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert all(len(list(saver.list(config))) == 15 for config in configs)  # concurrent writers all landed
    saver.close()
