"""Threads from the command line: checkpointed runs, threads, history, resume, fork, report, db upgrade."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ironloop.demo.scenario import population_script
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from tests.helpers import run_cli
from tests.openai_server import HTTPFault, OpenAIStub

QUESTION = "What is the combined population of Paris and Lyon?"
ANSWER = "The combined city-proper population of Paris and Lyon is 2,673,000 (2,160,000 + 513,000)."


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def thread_of(output: str) -> str:
    return output.splitlines()[0].split()[1]


def test_demo_is_checkpointed_listed_and_forkable(db: str) -> None:
    demo = run_cli(db, "demo", "--profile", "none")
    assert demo.returncode == 0, demo.stderr
    thread = thread_of(demo.stdout)

    threads = run_cli(db, "threads")
    assert threads.returncode == 0 and f"{thread} " in threads.stdout and "finished" in threads.stdout

    history = run_cli(db, "history", thread)
    assert history.returncode == 0, history.stderr
    rows = history.stdout.splitlines()[1:]
    assert len(rows) == 7
    after_model = next(r for r in rows if " 1  model " in r)
    assert after_model.count("search[") == 2  # the two searches were pending at that checkpoint
    assert any(" tools×2 " in r for r in rows)

    again = run_cli(db, "resume", thread)
    assert again.returncode == 0 and "nothing to resume" in again.stdout

    checkpoint = after_model.split()[0]
    fork = run_cli(db, "resume", thread, "--checkpoint", checkpoint)
    assert fork.returncode == 0, fork.stderr
    assert f"forking from checkpoint {checkpoint}" in fork.stdout
    assert "search(" not in fork.stdout  # the model's turn is in the checkpoint; only the tools ran again
    assert fork.stdout.strip().splitlines()[-1] == f"answer: {ANSWER}"
    assert len(run_cli(db, "history", thread).stdout.splitlines()) > len(history.stdout.splitlines())


def test_a_failed_run_is_listed_failed_and_resumes(db: str, search_service) -> None:
    service, _ = search_service
    searches = AIMessage(
        content="",
        tool_calls=[
            {"name": "search", "args": {"query": f"{city} population"}, "id": f"c_{city}"} for city in ("Paris", "Lyon")
        ],
    )
    with OpenAIStub() as stub:
        stub.queue.extend([searches, HTTPFault(503), HTTPFault(503)])  # then the scenario script answers
        args = [
            "--model",
            "m",
            "--api-key",
            "k",
            "--base-url",
            stub.base_url,
            "--search-url",
            service.url,
            "--model-attempts",
            "1",
        ]
        run = run_cli(db, "run", QUESTION, *args)
        assert run.returncode == 1
        assert "the model endpoint failed" in run.stderr and "ironloop resume" in run.stderr
        assert "Traceback" not in run.stderr
        thread = thread_of(run.stdout)
        assert "failed" in run_cli(db, "threads").stdout

        still_down = run_cli(db, "resume", thread, *args)
        assert still_down.returncode == 1
        resumed = run_cli(db, "resume", thread, *args)
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.strip().splitlines()[-1] == ANSWER
        assert "search(" not in resumed.stdout  # the searches' results were kept, not run again
        assert "finished" in run_cli(db, "threads").stdout


def test_ctrl_c_leaves_a_resumable_thread(db: str, search_service) -> None:
    """Ctrl-C lands while the stub holds the model's answer after the searches: the run cannot have finished, and
    the searches' results are already checkpointed (``run`` writes each step before the next starts). No race to
    lose: the interrupt is sent only once the run is known to be waiting."""
    service, _ = search_service
    asked_after_searches, release = threading.Event(), threading.Event()

    def held_after_searches(messages: list[BaseMessage]) -> AIMessage:
        if any(isinstance(m, ToolMessage) for m in messages) and not release.is_set():
            asked_after_searches.set()
            release.wait(60)
        return population_script(messages)

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IRONLOOP_"))}
    with OpenAIStub(held_after_searches) as stub:
        args = ["--model", "m", "--api-key", "k", "--base-url", stub.base_url, "--search-url", service.url]
        process = subprocess.Popen(
            [sys.executable, "-u", "-m", "ironloop", "run", QUESTION, *args, "--db", db],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean,
        )
        try:
            assert asked_after_searches.wait(60), "the run never asked the model again after its searches"
            process.send_signal(signal.SIGINT)
            # The run is stuck until the model answers, and Python acts on a signal before its next bytecode: the
            # interrupt lands whichever thread the kernel gave it to, long before the run could end. The model's
            # answer is let through so the call in flight can end (the command waits for it on its way out).
            release.set()
            out, err = process.communicate(timeout=60)
        finally:
            release.set()
            stop(process)
        assert process.returncode == 130, err
        thread = thread_of(out)
        assert f"ironloop resume {thread}" in err and "Traceback" not in err
        assert "interrupted" in run_cli(db, "threads").stdout
        resumed = run_cli(db, "resume", thread, *args)
        assert resumed.returncode == 0, resumed.stderr
        assert "search(" not in resumed.stdout  # the searches' results were kept, not run again
        assert resumed.stdout.strip().splitlines()[-1] == ANSWER


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL: nothing the test started outlives it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_report_shows_flaky_tools(db: str) -> None:
    done = run_cli(db, "demo", "--tasks", "20", "--concurrency", "4")
    assert done.returncode == 0, done.stderr
    report = run_cli(db, "report", "--json")
    assert report.returncode == 0, report.stderr
    rows = {r["tool"]: r for r in json.loads(report.stdout)["tools"]}
    assert rows["search"]["calls"] == 40 and rows["calc"]["calls"] == 20
    assert rows["search"]["attempts"] > 40 and rows["search"]["transient_rate"] > 0.3  # the 503s and timeouts
    assert rows["calc"]["transient_rate"] == 0 and rows["calc"]["success_rate"] == 1
    assert rows["search"]["p95_ms"] >= rows["search"]["p50_ms"] > 0
    table = run_cli(db, "report", "--since", "1h")
    assert table.stdout.startswith("report covers since ") and ", all threads" in table.stdout.splitlines()[0]
    assert table.stdout.splitlines()[3].startswith("search")  # the flakiest first
    assert "no tool calls" in run_cli(db, "report", "--since", "2999-01-01").stdout
    assert run_cli(db, "report", "--thread", "nope").stdout.strip().splitlines()[-1] == "no tool calls recorded"


def test_db_upgrade_and_bad_urls(db: str, tmp_path: Path) -> None:
    first = run_cli(f"sqlite:///{tmp_path / 'fresh.db'}", "db", "upgrade")
    assert first.returncode == 0 and "schema empty →" in first.stdout
    again = run_cli(f"sqlite:///{tmp_path / 'fresh.db'}", "db", "upgrade")
    assert again.returncode == 0 and "schema at" in again.stdout
    bad = run_cli("postgresql://me:secret@127.0.0.1:1/nowhere", "threads")
    assert bad.returncode == 1 and "secret" not in bad.stderr and "127.0.0.1:1" in bad.stderr
    assert "Traceback" not in bad.stderr
    nonsense = run_cli("oracle://x", "threads")
    assert nonsense.returncode == 2 and "unsupported database" in nonsense.stderr
    assert run_cli(db, "resume", "no-such-thread").returncode == 2
