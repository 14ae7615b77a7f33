"""What keeps the runtime cheap and graceful: the cap on calls per turn, Sends that carry only their call, the
sync-tool pool under hung tools, admission control under overload."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

from ironloop.demo.agent import build_demo_agent
from ironloop.demo.tasks import run_demo_tasks
from ironloop.graph.agent import build_agent
from ironloop.tools.policy import ToolPolicy
from ironloop.tools.threads import ToolThreads
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from tests.helpers import call, observations, record, replay_model, turn

FAST = ToolPolicy(timeout_s=5.0, max_attempts=1)


def echo(text: str) -> str:
    """Echo a text."""
    return text


def test_calls_past_the_cap_are_answered_not_run() -> None:
    ran: list[str] = []

    def note(text: str) -> str:
        """Note a text."""
        ran.append(text)
        return text

    calls = [call("note", text=str(i)) for i in range(7)]
    agent = build_agent(replay_model(turn(*calls)), [note], default_policy=FAST, max_calls_per_turn=3)
    messages = agent.invoke({"messages": [("user", "go")]})["messages"]
    seen = observations(messages)
    assert sorted(ran) == ["0", "1", "2"]
    assert [seen[c["id"]].content for c in calls[:3]] == ["0", "1", "2"]
    for late in calls[3:]:
        assert seen[late["id"]].status == "error"
        assert "not run: too many calls in one turn (7 asked; at most 3" in str(seen[late["id"]].content).lower()
    assert messages[-1].content == "done"


def test_the_cap_can_be_lifted_and_must_be_positive() -> None:
    calls = [call("echo", text=str(i)) for i in range(200)]
    agent = build_agent(replay_model(turn(*calls)), [echo], default_policy=FAST, max_calls_per_turn=None)
    messages = agent.invoke({"messages": [("user", "go")]})["messages"]
    assert sum(isinstance(m, ToolMessage) and m.status != "error" for m in messages) == 200
    try:
        build_agent(replay_model(), [echo], max_calls_per_turn=0)
    except ValueError as exc:
        assert "max_calls_per_turn must be at least 1" in str(exc)
    else:
        raise AssertionError("max_calls_per_turn=0 was accepted")


class CountingSaver(InMemorySaver):
    """Counts the bytes of the tasks (``Send``s) written as pending writes."""

    def __init__(self) -> None:
        super().__init__()
        self.task_bytes = 0

    def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        for channel, value in writes:
            if channel == "__pregel_tasks":
                self.task_bytes += len(self.serde.dumps_typed(value)[1])
        super().put_writes(config, writes, task_id, task_path)


def task_bytes_per_call(calls: int) -> float:
    saver = CountingSaver()
    padding = "x" * 2000  # a long conversation: each Send that carried the state would carry this too
    agent = build_agent(
        replay_model(turn(*[call("echo", text=str(i)) for i in range(calls)])),
        [echo],
        default_policy=FAST,
        checkpointer=saver,
        max_calls_per_turn=None,
    )
    agent.invoke({"messages": [("user", padding)]}, {"configurable": {"thread_id": f"t{calls}"}})
    return saver.task_bytes / calls


def test_what_is_checkpointed_per_call_does_not_grow_with_the_turn() -> None:
    small, large = task_bytes_per_call(10), task_bytes_per_call(200)
    assert 0 < small < 1000  # the call alone, not the 2,000-character conversation
    assert large < small * 1.2


def test_hung_sync_calls_are_cut_and_do_not_starve_the_pool() -> None:
    release = threading.Event()
    hung: list[int] = []

    @tool
    def stuck(x: int) -> str:
        """Hangs until released."""
        hung.append(x)
        release.wait(30)
        return "late"

    threads = ToolThreads(max_threads=2)
    calls = [call("stuck", x=i) for i in range(4)]
    agent = build_agent(
        replay_model(turn(*calls), turn(call("echo", text="after"))),
        [stuck, echo],
        default_policy=FAST,
        policies={"stuck": FAST.but(timeout_s=0.2)},
        max_concurrency=2,
    )
    try:
        messages = agent.invoke({"messages": [("user", "go")]})["messages"]
        seen = observations(messages)
        assert sorted(hung) == [0, 1, 2, 3]  # all four ran, two at a time, each cut by its timeout
        assert all(record(seen[c["id"]])["attempts"][0]["outcome"] == "timeout" for c in calls)
        assert [m.content for m in messages if isinstance(m, ToolMessage) and m.name == "echo"] == ["after"]
    finally:
        release.set()
    # the same on a pool of its own: the hung calls' threads are counted as abandoned, not as the pool's
    release.clear()

    async def cut_two_then_run_one() -> str:
        for _ in range(2):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(threads.run(release.wait, 30), 0.1)
        assert threads.abandoned == 2
        return await asyncio.wait_for(threads.run(lambda: "ran"), 10)

    try:
        assert asyncio.run(cut_two_then_run_one()) == "ran"
    finally:
        release.set()


def test_an_abandoned_thread_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    script = tmp_path / "hang.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            from ironloop.graph.agent import build_agent
            from ironloop.tools.policy import ToolPolicy
            from tests.helpers import call, replay_model, turn

            def hang(x: int) -> str:
                \"\"\"Never answers.\"\"\"
                time.sleep(3600)
                return "late"

            agent = build_agent(replay_model(turn(call("hang", x=1))), [hang],
                                default_policy=ToolPolicy(timeout_s=0.2, max_attempts=1))
            print(agent.invoke({"messages": [("user", "go")]})["messages"][-1].content, flush=True)
            """
        )
    )
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    try:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0 and out.strip() == "done", err[-2000:]
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()


def test_two_hundred_tasks_submitted_at_once_all_answer_correctly(search_service) -> None:
    service, _ = search_service
    stats = asyncio.run(run_demo_tasks(build_demo_agent(service.url), 200, concurrency=200))
    summary = stats.summary()
    assert summary["tasks"] == 200
    assert sum(r.success for r in stats.results) == 200, summary
    assert summary["call_outcomes"] == {"ok": 600}
