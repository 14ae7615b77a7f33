"""Helpers for building agents around scripted models in tests."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ironloop.demo.scripted_model import Replay, ScriptedChatModel
from ironloop.tools.records import metadata_of
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

_ids = itertools.count(1)


def call(name: str, **args: Any) -> dict[str, Any]:
    """A tool call as a model would emit it."""
    return {"name": name, "args": args, "id": f"call_{next(_ids)}"}


def turn(*calls: dict[str, Any], content: str = "") -> AIMessage:
    return AIMessage(content=content, tool_calls=list(calls))


def replay_model(*messages: AIMessage) -> ScriptedChatModel:
    """A model that answers with these messages in order, then "done" forever."""
    return ScriptedChatModel(script=Replay([*messages, AIMessage(content="done")]))


def observations(messages: Sequence[BaseMessage]) -> dict[str, ToolMessage]:
    return {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}


def record(message: ToolMessage) -> dict[str, Any]:
    meta = metadata_of(message)
    assert meta is not None, f"no ironloop metadata on {message!r}"
    return meta


def run_cli(
    db: str, *args: str, stdin: int = subprocess.DEVNULL, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``ironloop ARGS --db DB`` in a subprocess, without the caller's ``OPENAI_*``/``IRONLOOP_*`` variables (plus
    ``env``); stdin is not a terminal unless a test hands it one."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IRONLOOP_"))}
    clean["PYTHONPATH"] = str(Path(__file__).parent.parent)
    return subprocess.run(
        [sys.executable, "-m", "ironloop", *args, "--db", db],
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **(env or {})},
        check=False,
    )


def make_thread(url: str, thread: str) -> None:
    """A finished thread (one tool call, then an answer) in the checkpoint database at ``url``."""
    from ironloop.checkpoints import SQLAlchemySaver
    from ironloop.graph.agent import build_agent

    def echo(text: str) -> str:
        """Echo."""
        return text

    with SQLAlchemySaver.from_url(url) as saver:
        agent = build_agent(replay_model(turn(call("echo", text="a"))), [echo], checkpointer=saver)
        agent.invoke({"messages": [("user", "go")]}, {"configurable": {"thread_id": thread}})
