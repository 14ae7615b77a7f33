"""One thread, one runner: the lease per thread on SQLite, PostgreSQL and MariaDB (`checkpoints.leases`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from ironloop.checkpoints import make_engine
from ironloop.checkpoints.leases import (
    WRITER_KEY,
    LeasedSaver,
    LeaseLostError,
    Runner,
    ThreadBusyError,
    ThreadLeases,
    writer_record,
)
from ironloop.checkpoints.migrate import upgrade
from ironloop.checkpoints.schema import thread_leases
from ironloop.demo.agent import build_demo_agent


@pytest.fixture
def engine(checkpoint_db_url: str):
    engine = make_engine(checkpoint_db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def new_thread() -> str:
    return f"lease-{uuid.uuid4().hex[:12]}"


def test_one_holder_at_a_time_and_tokens_only_grow(engine) -> None:
    thread = new_thread()
    ann, bob = (
        ThreadLeases(engine, runner=Runner.this_process("ann")),
        ThreadLeases(engine, runner=Runner.this_process("bob")),
    )
    first = ann.try_acquire(thread)
    assert first is not None and first.token == 1
    assert bob.try_acquire(thread) is None  # ann's process lives and her lease has not expired
    with pytest.raises(ThreadBusyError, match="is being run by ann since"):
        bob.acquire(thread, wait_s=0.2)
    held = bob.holders([thread, new_thread()])
    assert list(held) == [thread] and held[thread].runner.name == "ann"
    first.release()
    assert bob.holders([thread]) == {}
    second = bob.acquire(thread, wait_s=1)
    assert second.token == 2 and bob.holder(thread).runner.name == "bob"
    second.release()
    second.release()  # twice is harmless


def test_a_dead_holder_on_this_host_is_taken_over_at_once(engine, checkpoint_db_url: str) -> None:
    """A process that took the lease and died (never released it, lease far from expiry) is replaced at once."""
    thread = new_thread()
    script = textwrap.dedent(
        f"""
        import os
        from ironloop.checkpoints import CheckpointStoreError, make_engine
        from ironloop.checkpoints.leases import ThreadLeases, Runner
        lease = ThreadLeases(make_engine({checkpoint_db_url!r}), ttl_s=600, runner=Runner.this_process("doomed"))
        lease.try_acquire({thread!r})
        os._exit(0)  # no release: as if SIGKILLed
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    leases = ThreadLeases(engine, runner=Runner.this_process("heir"))
    holder = leases.holder(thread)
    assert holder is not None and holder.runner.name == "doomed" and holder.is_gone()
    assert holder.expires_at > datetime.now(UTC) + timedelta(seconds=500)  # not expired: taken because it died
    taken = leases.try_acquire(thread)
    assert taken is not None and taken.token == 2
    taken.release()


def test_a_holder_on_another_host_is_waited_for_until_its_lease_expires(engine) -> None:
    thread = new_thread()
    now = datetime.now(UTC)
    with engine.begin() as connection:  # a worker on another host took it a moment ago (and then went silent)
        connection.execute(
            thread_leases.insert().values(
                thread_id=thread, token=1, holder="worker on another host", host="another-host", pid=os.getpid(),
                pid_started="boot:1", acquired_at=now, expires_at=now + timedelta(seconds=1),
            )
        )  # fmt: skip
    here = ThreadLeases(engine, runner=Runner.this_process("here"))
    assert here.try_acquire(thread) is None  # alive as far as anyone here can tell: its lease has not expired
    started = time.monotonic()
    lease = here.acquire(thread, wait_s=30)
    assert time.monotonic() - started > 0.3 and lease.token == 2
    lease.release()


def test_a_lease_is_renewed_while_held(engine) -> None:
    thread = new_thread()
    leases = ThreadLeases(engine, ttl_s=0.6, runner=Runner.this_process("steady"))
    with leases.acquire(thread) as lease:
        time.sleep(1.5)  # more than two lease lifetimes: the heartbeat renewed it
        lease.check()
        assert ThreadLeases(engine).try_acquire(thread) is None


def test_a_lease_taken_over_stops_its_old_holder_writing(engine, checkpoint_db_url: str) -> None:
    """A holder that stalled past its lease (here: its renewals cannot reach the database) stops vouching for it;
    one whose lease was taken over learns it at the next renewal. Either way the saver refuses its writes."""
    thread = new_thread()
    leases = ThreadLeases(engine, ttl_s=0.5, runner=Runner.this_process("stalled"))
    lease = leases.acquire(thread)
    leases._renew = lambda _lease: (_ for _ in ()).throw(
        __import__("ironloop").checkpoints.CheckpointStoreError("away")
    )  # type: ignore[method-assign]
    with LeasedSaver(engine) as saver:
        agent = build_demo_agent("http://127.0.0.1:9", checkpointer=saver)
        time.sleep(0.6)
        with pytest.raises(LeaseLostError, match="not renewed within"):
            agent.update_state({"configurable": {"thread_id": thread}}, {"messages": [("user", "hi")]})
    lease.release()

    other = new_thread()
    mine = ThreadLeases(engine, ttl_s=0.6).acquire(other)
    with engine.begin() as connection:  # someone else took it over (as after an expiry)
        connection.execute(thread_leases.update().where(thread_leases.c.thread_id == other).values(token=99))
    time.sleep(0.5)
    with pytest.raises(LeaseLostError, match="took it over"):
        mine.check()
    mine.release()


def test_checkpoints_carry_the_writer_and_a_crossing_is_detected(engine) -> None:
    thread = new_thread()
    config = {"configurable": {"thread_id": thread}}
    with LeasedSaver(engine) as saver:
        agent = build_demo_agent("http://127.0.0.1:9", checkpointer=saver)
        leases = ThreadLeases(engine, runner=Runner.this_process("first"))
        with leases.acquire(thread):
            agent.update_state(config, {"messages": [("user", "one")]})
        with ThreadLeases(engine, runner=Runner.this_process("second")).acquire(thread):
            agent.update_state(config, {"messages": [("user", "two")]})
        record = writer_record(engine, thread)
        assert record.tokens == [1, 2] and record.problems == [] and record.runs == 2
        assert record.holders == {1: "first", 2: "second"}
        assert saver.get_tuple(config).metadata[WRITER_KEY] == {"holder": "second", "token": 2}
        # A write by the first runner after its successor's: exactly what two runners at once would leave behind.
        stale = saver.get_tuple(config)
        metadata = {**stale.metadata, WRITER_KEY: {"holder": "first", "token": 1}}
        checkpoint = {**stale.checkpoint, "id": str(uuid.uuid7()) if hasattr(uuid, "uuid7") else _later(stale)}
        super(LeasedSaver, saver).put(stale.config, checkpoint, metadata, {})
    crossed = writer_record(engine, thread)
    assert crossed.problems and "two runners overlapped" in crossed.problems[0]


def _later(stale) -> str:
    from langgraph.checkpoint.base.id import uuid6

    return str(uuid6(clock_seq=-2))


def test_threads_lists_the_holder(engine, checkpoint_db_url: str) -> None:
    thread = new_thread()
    with LeasedSaver(engine) as saver:
        build_demo_agent("http://127.0.0.1:9", checkpointer=saver).update_state(
            {"configurable": {"thread_id": thread}}, {"messages": [("user", "hi")]}
        )
    with ThreadLeases(engine, runner=Runner.this_process("ann's worker")).acquire(thread):
        listed = subprocess.run(
            [sys.executable, "-m", "ironloop", "threads", "--db", checkpoint_db_url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    line = next(line for line in listed.stdout.splitlines() if line.startswith(thread))
    assert "  running: ann's worker since " in line  # the detail column
