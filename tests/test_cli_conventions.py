"""The command line as a new user meets it: refusals before side effects, an answer shown once on a terminal,
numbers that say what they are, a demo whose question, corpus and answer agree, progress only on a terminal,
``--json`` on standard output."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
from ironloop.cli.trajectory import TrajectoryPrinter
from ironloop.demo.agent import build_demo_agent
from ironloop.demo.scenario import DEMO_QUESTION
from ironloop.demo.services.search import bundled_corpus
from ironloop.tools.attempts import _timeout_text

from tests.openai_server import OpenAIStub

ANSWER = "The combined city-proper population of Paris and Lyon is 2,673,000 (2,160,000 + 513,000)."


def environment(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IRONLOOP_", "NO_COLOR", "COLUMNS"))}
    return {**clean, **extra}


def in_terminal(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``ironloop ARGS`` with standard output and standard error on a pseudo-terminal each."""
    out_master, out_slave = pty.openpty()
    err_master, err_slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "ironloop", *args],
        stdout=out_slave,
        stderr=err_slave,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=env or environment(),
    )
    os.close(out_slave)
    os.close(err_slave)
    chunks: dict[int, list[bytes]] = {out_master: [], err_master: []}
    try:
        open_fds = [out_master, err_master]
        while open_fds:
            ready, _, _ = select.select(open_fds, [], [], 120)
            if not ready:
                raise TimeoutError("no output for 120 s")
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the other end is closed
                    data = b""
                if data:
                    chunks[fd].append(data)
                else:
                    open_fds.remove(fd)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        os.close(out_master)
        os.close(err_master)
    text = {fd: b"".join(parts).decode().replace("\r\n", "\n") for fd, parts in chunks.items()}
    return code, text[out_master], text[err_master]


def test_run_without_a_key_or_model_refuses_before_creating_anything(tmp_path: Path) -> None:
    for args, problem in ((["--model", "m"], "no API key"), (["--api-key", "k"], "no model")):
        done = subprocess.run(
            [sys.executable, "-m", "ironloop", "run", "hi", *args],
            cwd=tmp_path,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and problem in done.stderr and done.stderr.count("\n") == 1, done.stderr
        assert list(tmp_path.iterdir()) == []  # no ./ironloop.db


@pytest.fixture
def stub():
    with OpenAIStub() as server:
        yield server


def test_run_stream_shows_the_answer_once_on_a_terminal(stub: OpenAIStub, search_service, tmp_path: Path) -> None:
    service, _ = search_service
    args = ["run", DEMO_QUESTION, "--model", "m", "--api-key", "k", "--base-url", stub.base_url]
    args += ["--search-url", service.url, "--stream", "--db", f"sqlite:///{tmp_path / 'x.db'}"]
    code, out, err = in_terminal(args, tmp_path)
    assert code == 0, err
    assert out.count(ANSWER) == 1 and f"turn 3  model ▸ {ANSWER}" in out, out
    piped = subprocess.run(
        [sys.executable, "-m", "ironloop", *args], capture_output=True, text=True, timeout=120, env=environment()
    )
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.strip().splitlines()
    assert lines[-1] == ANSWER and piped.stdout.count(ANSWER) == 2  # streamed, and the bare line for scripts
    assert "answer: " not in piped.stdout


def test_a_timeout_line_says_what_its_numbers_are() -> None:
    assert _timeout_text(0.1, 0.05) == "no answer within the attempt timeout of 0.1 s"
    slow = _timeout_text(0.1, 0.43)
    assert slow == "no answer within the attempt timeout of 0.1 s (stopped after 0.43 s: the event loop was busy)"
    lines: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            lines.append(text)

        def flush(self) -> None:
            pass

    printer = TrajectoryPrinter(Sink())  # type: ignore[arg-type]
    printer.feed(
        "custom",
        {"event": "tool_attempt", "tool": "search", "tool_call_id": "c_123456", "number": 1, "outcome": "timeout",
         "ms": 430.2, "retry_in_s": 0.05, "error": slow},
    )  # fmt: skip
    assert "search [123456]  attempt 1: timeout after 430 ms (limit 100 ms; the event loop was busy), retry" in lines[0]


def test_the_demo_asks_for_the_figures_its_corpus_states(search_service) -> None:
    assert "city-proper" in DEMO_QUESTION
    assert all("(city proper" in doc["snippet"] for doc in bundled_corpus() if "population" in doc["title"])
    service, _ = search_service
    agent = build_demo_agent(service.url)
    assert agent.invoke({"messages": [("user", DEMO_QUESTION)]})["messages"][-1].content == ANSWER
    metro = agent.invoke({"messages": [("user", "What is the combined metro population of Paris and Lyon?")]})
    answer = metro["messages"][-1].content
    assert answer == "The search gives city-proper figures only, not metro ones: Paris 2,160,000; Lyon 513,000."


def test_demo_tasks_progress_only_on_a_terminal_and_json_on_stdout(tmp_path: Path) -> None:
    args = ["demo", "--tasks", "6", "--profile", "none", "--db", f"sqlite:///{tmp_path / 'p.db'}"]
    code, out, err = in_terminal(args, tmp_path)
    assert code == 0, err
    assert "tasks [" in err and " 6/6 100%" in err  # the bar, drawn on standard error
    assert "success" in out and "tasks [" not in out
    piped = subprocess.run(
        [sys.executable, "-m", "ironloop", *args, "--json", "--out", str(tmp_path / "f.json")],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(),
    )
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stderr and "tasks [" not in piped.stderr  # no bar in a pipe
    figures = json.loads(piped.stdout)  # standard output is the JSON document and nothing else
    assert figures["tasks"] == 6 and figures["success_rate"] == 1.0
    assert json.loads((tmp_path / "f.json").read_text()) == figures
    single = subprocess.run(
        [sys.executable, "-m", "ironloop", *args[:1], *args[3:], "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(),
    )
    assert single.returncode == 0, single.stderr
    run = json.loads(single.stdout)
    assert run["answer"] == ANSWER and run["thread"].startswith("demo-") and "turn 1" in single.stderr


def test_tables_fit_the_terminal_colour_only_there_and_times_carry_their_zone(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    made = subprocess.run(
        [sys.executable, "-m", "ironloop", "demo", "--tasks", "2", "--profile", "none", "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(),
    )
    assert made.returncode == 0, made.stderr
    paris = environment(COLUMNS="70", TZ="Europe/Paris")
    code, out, err = in_terminal(["threads", "--db", db], tmp_path, paris)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 and all(len(strip_colour(line)) <= 70 for line in lines), out
    assert "created" not in lines[0] and "last active" in lines[0]  # too narrow for both times: one goes
    assert "\x1b[32mfinished\x1b[0m" in out and " CET " in out  # green status; Paris time, named
    code, plain, err = in_terminal(["threads", "--db", db], tmp_path, {**paris, "NO_COLOR": "1"})
    assert code == 0 and "\x1b[" not in plain and plain.splitlines()[1].count(" CET ") == 1, plain
    piped = subprocess.run(
        [sys.executable, "-m", "ironloop", "threads", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(TZ="Europe/Paris"),
    )
    assert "\x1b[" not in piped.stdout and piped.stdout.splitlines()[1].count(" CET ") == 2  # whole rows
    listed = json.loads(
        subprocess.run(
            [sys.executable, "-m", "ironloop", "threads", "--db", db, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=environment(),
        ).stdout
    )
    assert [t["status"] for t in listed["threads"]] == ["finished", "finished"]
    assert all(t["created_at"].endswith("+00:00") for t in listed["threads"])


def strip_colour(line: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", line)


def test_bench_json_prints_the_results_on_stdout(tmp_path: Path) -> None:
    args = ["bench", "chaos", "--tasks", "3", "--contenders", "ironloop", "--no-plot", "--concurrency", "3"]
    done = subprocess.run(
        [sys.executable, "-m", "ironloop", *args, "--profile", "none", "--out-dir", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment(),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["benchmark"] == "chaos" and results["contenders"]["ironloop"]["tasks"] == 3
    assert results == json.loads((tmp_path / "chaos-none.json").read_text())
    assert "chaos: 3 tasks per contender" in done.stderr and "wrote " in done.stderr
