"""``ironloop report --html``: one self-contained page, checked in a real headless Chromium against ``report
--json`` (the same document), over a ledger whose search tool became flaky at 14:00."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ironloop.checkpoints.schema import tool_approvals, tool_attempts, tool_calls
from sqlalchemy import create_engine, insert

from tests.browser import chromium_path, headless_page

FLAKY_FROM = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
START = FLAKY_FROM - timedelta(hours=1)


def cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IRONLOOP_", "COLUMNS"))}
    return subprocess.run(
        [sys.executable, "-m", "ironloop", *args, "--db", db], capture_output=True, text=True, timeout=120, env=clean
    )


def seed_history(db: str, thread: str | None = None) -> None:
    """Two hours of calls: search healthy until 14:00, then two 503s before each success and every fifth call
    a fallback after four timeouts; calc healthy throughout; two approval decisions on charge_card. All in
    ``thread`` if given (a shared server database), else spread over eight threads."""
    assert cli(db, "db", "upgrade").returncode == 0
    calls: list[dict[str, Any]] = []
    attempts: list[dict[str, Any]] = []

    def call(tool: str, n: int, at: datetime, outcomes: list[tuple[str, float]], end: str) -> None:
        call_id = f"{tool}-{n}"
        started = at
        for number, (outcome, ms) in enumerate(outcomes, 1):
            error = {"transient_error": "HTTP 503", "timeout": "no answer"}.get(outcome)
            attempts.append(
                dict(
                    thread_id=thread or f"t{n % 7}",
                    tool_call_id=call_id,
                    tool=tool,
                    attempt=number,
                    started_at=started,
                    duration_ms=ms,
                    outcome=outcome,
                    error_class="TransientToolError" if error else None,
                    error_text=error,
                )
            )
            started += timedelta(milliseconds=ms + 100)
        total = (started - at).total_seconds() * 1000
        calls.append(
            dict(
                thread_id=thread or f"t{n % 7}",
                tool_call_id=call_id,
                tool=tool,
                outcome=end,
                attempts=len(outcomes),
                duration_ms=total,
                finished_at=started,
            )
        )

    for minute in range(120):
        at = START + timedelta(minutes=minute)
        if at < FLAKY_FROM:
            call("search", minute, at, [("ok", 40.0 + minute % 5)], "ok")
        elif minute % 5 == 0:
            call("search", minute, at, [("timeout", 500.0)] * 4, "fallback")
        else:
            call("search", minute, at, [("transient_error", 20.0), ("transient_error", 25.0), ("ok", 45.0)], "ok")
        if minute % 2 == 0:
            call("calc", minute, at + timedelta(seconds=20), [("ok", 3.0 + minute % 3)], "ok")
    call("charge_card", 1, START + timedelta(minutes=30), [("ok", 80.0)], "ok")
    calls.append(
        dict(
            thread_id=thread or "t9",
            tool_call_id="charge_card-2",
            tool="charge_card",
            outcome="rejected",
            attempts=0,
            duration_ms=0.0,
            finished_at=START + timedelta(minutes=90),
        )
    )
    decisions = [
        dict(
            thread_id=thread or "t1",
            tool="charge_card",
            tool_call_id="charge_card-1",
            decision="approve",
            decided_by="ada",
            reason=None,
            mode="ask",
            asked_because="side effect",
            args={"amount_cents": 1250},
            edited_args=None,
            decided_at=START + timedelta(minutes=29),
        ),
        dict(
            thread_id=thread or "t9",
            tool="charge_card",
            tool_call_id="charge_card-2",
            decision="reject",
            decided_by="bob",
            reason="too much",
            mode="ask",
            asked_because="side effect",
            args={"amount_cents": 99999},
            edited_args=None,
            decided_at=START + timedelta(minutes=90),
        ),
    ]
    engine = create_engine(db)
    try:
        with engine.begin() as connection:
            connection.execute(insert(tool_attempts), attempts)
            connection.execute(insert(tool_calls), calls)
            connection.execute(insert(tool_approvals), decisions)
    finally:
        engine.dispose()


@pytest.fixture
def history(tmp_path: Path) -> str:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    seed_history(db)
    return db


def shown(value: Any, kind: str) -> str:
    """How a figure should read on the page (written here, not imported, so the page is checked)."""
    if value is None:
        return "-"
    if kind == "pct":
        return f"{value * 100:.1f}%"
    return f"{value:.1f}" if kind == "ms" else str(value)


KINDS = {"success_rate": "pct", "transient_rate": "pct", "p50_ms": "ms", "p95_ms": "ms"}


def test_report_json_shows_the_tool_that_became_flaky_at_14_00(checkpoint_db_url: str) -> None:
    thread = f"history-{uuid.uuid4().hex[:8]}"  # server databases are shared by the session's tests
    seed_history(checkpoint_db_url, thread)
    done = cli(checkpoint_db_url, "report", "--json", "--thread", thread)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["window"]["since"] is None and document["window"]["thread"] == thread
    search = next(row for row in document["tools"] if row["tool"] == "search")
    assert search["calls"] == 120 and search["fallbacks"] == 12 and search["timeouts"] == 48
    assert document["over_time"]["bucket_s"] == 300
    buckets = document["over_time"]["tools"]["search"]
    before = [b for b in buckets if datetime.fromisoformat(b["start"]) < FLAKY_FROM]
    after = [b for b in buckets if datetime.fromisoformat(b["start"]) >= FLAKY_FROM]
    assert len(before) == 12 and len(after) == 12
    assert all(b["transient_rate"] == 0 and b["success_rate"] == 1 for b in before)
    assert all(b["transient_rate"] > 0.6 and b["success_rate"] == 0.8 for b in after)
    slowest = document["slowest_calls"]
    assert [c["outcome"] for c in slowest] == ["fallback"] * 10
    assert [a["outcome"] for a in slowest[0]["attempt_list"]] == ["timeout"] * 4
    assert [a["decision"] for a in document["approvals"]] == ["approve", "reject"]
    since = json.loads(
        cli(checkpoint_db_url, "report", "--json", "--thread", thread, "--since", "2026-11-30T14:00Z").stdout
    )
    assert since["window"]["since"] == FLAKY_FROM.isoformat()
    assert next(row for row in since["tools"] if row["tool"] == "search")["calls"] == 60


def test_html_report_in_a_real_browser_shows_the_json_figures(history: str, tmp_path: Path) -> None:
    page_path = tmp_path / "report.html"
    alone = cli(history, "report", "--html", str(page_path))
    assert alone.returncode == 0 and alone.stdout == "" and f"wrote {page_path}" in alone.stderr, alone.stderr
    done = cli(history, "report", "--html", str(page_path), "--json")  # the page and the JSON of one document
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    html = page_path.read_text(encoding="utf-8")
    assert "<script" not in html and "http://" not in html and "https://" not in html  # self-contained

    assert chromium_path(), "the HTML report is checked in Chromium: apt-get install -y chromium"
    with headless_page(tmp_path / "profile") as page:
        page.load(page_path.as_uri())
        shot = page.screenshot(Path(os.environ.get("IRONLOOP_SCREENSHOT_DIR", tmp_path)) / "report.png")
        cells = page.evaluate(
            "Array.from(document.querySelectorAll('#tool-table td')).map("
            "td => [td.dataset.tool, td.dataset.field, td.innerText.trim()])"
        )
        charts = page.evaluate(
            "Array.from(document.querySelectorAll('.chart')).map(c => [c.dataset.tool, c.querySelectorAll('circle')"
            ".length, c.getBoundingClientRect().width])"
        )
        slowest = page.evaluate(
            "Array.from(document.querySelectorAll('#slowest-table tbody tr')).map(tr => "
            "[tr.querySelector('[data-field=duration_ms]').innerText, tr.querySelector('.attempts').innerText])"
        )
        approvals = page.evaluate("document.querySelectorAll('#approval-table tbody tr').length")
        window_text = page.evaluate("document.getElementById('window').innerText")
        fetched = page.evaluate("performance.getEntriesByType('resource').length")
        overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")

    on_page = {(tool, field): text for tool, field, text in cells}
    for row in document["tools"]:
        for field, value in row.items():
            assert on_page[(row["tool"], field)] == shown(value, KINDS.get(field, "count")), (row["tool"], field)
    assert len(on_page) == len(document["tools"]) * 12

    series = document["over_time"]["tools"]
    assert sorted(tool for tool, _, _ in charts) == sorted(series)
    for tool, circles, width in charts:
        points = sum(b[k] is not None for b in series[tool] for k in ("success_rate", "transient_rate", "p95_ms"))
        assert circles == points and width > 0, tool
    assert [duration for duration, _ in slowest] == [shown(c["duration_ms"], "ms") for c in document["slowest_calls"]]
    assert [len(text.splitlines()) for _, text in slowest] == [
        len(c["attempt_list"]) for c in document["slowest_calls"]
    ]
    assert approvals == len(document["approvals"]) == 2
    until = datetime.fromisoformat(document["window"]["until"]).strftime("%Y-%m-%d %H:%M")
    assert "all records" in window_text and until in window_text and "all threads" in window_text
    assert fetched == 0 and not overflow

    signature, (width, height) = shot.read_bytes()[:8], struct.unpack(">II", shot.read_bytes()[16:24])
    assert signature == b"\x89PNG\r\n\x1a\n" and 1000 < width <= 1400 and height > 1000
