"""Bad state and bad arguments give one clear line and the right exit code (issue 12, item 13).

One corrupt thread made ``ironloop threads`` fail for every thread, and ``history`` of that thread showed nothing;
``report --since 99999999999d`` ended in an ``OverflowError`` traceback; ``threads`` on a SQLite path that does not
exist created its directories (and an empty database) for a command that only reads.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest
from ironloop.checkpoints import SQLAlchemySaver
from ironloop.checkpoints.schema import checkpoints
from sqlalchemy import select, update

from tests.helpers import make_thread, run_cli

GARBAGE = b"\xc1 not msgpack"


def checkpoint_ids(url: str, thread: str) -> list[str]:
    """The thread's checkpoint ids, oldest first."""
    with SQLAlchemySaver.from_url(url) as saver, saver.engine.connect() as connection:
        query = select(checkpoints.c.checkpoint_id).where(checkpoints.c.thread_id == thread)
        return sorted(row[0] for row in connection.execute(query))


def corrupt(url: str, thread: str, checkpoint_id: str) -> None:
    with SQLAlchemySaver.from_url(url) as saver, saver.engine.begin() as connection:
        statement = (
            update(checkpoints)
            .where(checkpoints.c.thread_id == thread, checkpoints.c.checkpoint_id == checkpoint_id)
            .values(checkpoint=GARBAGE)
        )
        assert connection.execute(statement).rowcount == 1


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ironloop: error: "), done.stderr
    return lines[0]


def test_a_corrupt_thread_is_marked_and_the_others_listed(checkpoint_db_url: str) -> None:
    tag = uuid.uuid4().hex[:6]
    threads = [f"{name}-{tag}" for name in ("good1", "broken", "good2")]
    for thread in threads:
        make_thread(checkpoint_db_url, thread)
    corrupt(checkpoint_db_url, threads[1], checkpoint_ids(checkpoint_db_url, threads[1])[-1])

    listed = run_cli(checkpoint_db_url, "threads", "--limit", "1000")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "finished" in rows[threads[0]] and "finished" in rows[threads[2]]
    assert re.search(r" corrupt +cannot decode the checkpoint", rows[threads[1]]), rows[threads[1]]


def test_history_shows_every_readable_checkpoint_and_says_what_is_wrong(checkpoint_db_url: str) -> None:
    thread = f"hist-{uuid.uuid4().hex[:6]}"
    make_thread(checkpoint_db_url, thread)
    ids = checkpoint_ids(checkpoint_db_url, thread)
    bad = ids[len(ids) // 2]
    corrupt(checkpoint_db_url, thread, bad)

    shown = run_cli(checkpoint_db_url, "history", thread)
    assert shown.returncode == 1
    rows = shown.stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ids  # every checkpoint, oldest first, the corrupt one in its place
    marked = [row for row in rows if "CORRUPT: cannot decode the checkpoint" in row]
    assert len(marked) == 1 and marked[0].startswith(bad)
    assert " finished" not in shown.stdout and rows[-1].split()[2] == "model"  # the others read normally
    line = one_line(shown)
    assert f"1 of the {len(ids)} checkpoints of thread '{thread}' cannot be read" in line


@pytest.mark.parametrize("since", ["99999999999d", "999999d", "9999999999999999999999h"])
def test_report_since_too_far_back_is_one_line(tmp_path: Path, since: str) -> None:
    done = run_cli(f"sqlite:///{tmp_path / 'r.db'}", "report", "--since", since)
    assert done.returncode == 2
    assert "reaches back before the year 1" in one_line(done)


@pytest.mark.parametrize("command", [["threads"], ["history", "t"], ["report"], ["resume", "t"]])
def test_reading_a_missing_sqlite_database_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "missing" / "dir" / "x.db"
    done = run_cli(f"sqlite:///{missing}", *command)
    assert done.returncode == 2
    assert f"no checkpoint database at {missing}" in one_line(done)
    assert not (tmp_path / "missing").exists()


def test_the_issue_url_with_extra_slashes_is_refused_too(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    done = run_cli(f"sqlite:////{missing}", "threads")  # sqlite://///... as in the report: an absolute path
    assert done.returncode == 2 and "does not exist" in one_line(done)
    assert not (tmp_path / "nonexistent").exists()
