"""Reading a checkpoint never runs what a row names (issue 12, item 10).

Whoever can write the checkpoint database can rewrite a blob as a msgpack extension naming ``("os", "system",
cmd)``: LangGraph's default serializer imports and calls it when the thread is read. The saver's serializer
(`checkpoints.serde.AllowListSerializer`) rebuilds only allowed types, and refuses anything else as corrupt. Each
hostile blob here would create a marker file if it ran; the default serializer is shown to run it, then the saver
(on every backend) and ``ironloop history`` / ``threads`` must refuse it without running it.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
from ironloop.checkpoints import CorruptCheckpointError, SQLAlchemySaver
from ironloop.checkpoints.schema import checkpoint_blobs, checkpoints
from ironloop.checkpoints.serde import AllowListSerializer, DisallowedTypeError
from ironloop.tools.validation import Rejection
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Command, Interrupt, Send
from sqlalchemy import update

from tests.helpers import make_thread, run_cli


def packed(code: int, payload: Any) -> ormsgpack.Ext:
    return ormsgpack.Ext(code, ormsgpack.packb(payload))


def hostile_blobs(marker: Path) -> dict[str, tuple[str, bytes]]:
    """Serialized values that create ``marker`` when rebuilt: every extension kind LangGraph rebuilds, one nested
    inside an allowed message, and a pickle."""
    touch = ["touch", str(marker)]
    message = {"content": "hi", "additional_kwargs": {"p": packed(0, ("os", "system", f"touch {marker}"))}}
    return {
        "os.system": ("msgpack", ormsgpack.packb(packed(0, ("os", "system", f"touch {marker}")))),
        "positional": ("msgpack", ormsgpack.packb(packed(1, ("subprocess", "check_call", [touch])))),
        "keywords": ("msgpack", ormsgpack.packb(packed(2, ("subprocess", "Popen", {"args": touch})))),
        "method": ("msgpack", ormsgpack.packb(packed(3, ("os", "system", f"touch {marker}", "__call__")))),
        "pydantic": ("msgpack", ormsgpack.packb(packed(5, ("subprocess", "run", {"args": touch}, "x")))),
        "nested": (
            "msgpack",
            ormsgpack.packb([packed(5, ("langchain_core.messages.human", "HumanMessage", message, "x"))]),
        ),
        "pickle": ("pickle", pickle.dumps(_Touch(str(marker)))),
    }


class _Touch:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.path}",))


def wait_for(marker: Path) -> bool:
    """Whether ``marker`` appears (a Popen runs ``touch`` in the background)."""
    for _ in range(100):
        if marker.exists():
            return True
        subprocess.run(["sleep", "0.02"], check=True)
    return False


@pytest.mark.parametrize("kind", ["os.system", "positional", "keywords", "pydantic", "nested"])
def test_the_default_serializer_runs_a_hostile_blob(tmp_path: Path, kind: str) -> None:
    """The attack is real: LangGraph's default (permissive) serializer runs what the blob names."""
    marker = tmp_path / "ran"
    JsonPlusSerializer(allowed_msgpack_modules=True).loads_typed(hostile_blobs(marker)[kind])
    assert wait_for(marker)


@pytest.mark.parametrize("kind", ["os.system", "positional", "keywords", "method", "pydantic", "nested", "pickle"])
def test_the_allow_list_refuses_a_hostile_blob(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(DisallowedTypeError, match="refusing to"):
        AllowListSerializer().loads_typed(hostile_blobs(marker)[kind])
    assert not marker.exists()


class Colour(Enum):
    RED = "red"


def test_what_ironloop_and_langchain_store_round_trips() -> None:
    now = datetime.now(UTC)
    value = {
        "messages": [
            SystemMessage("be brief"),
            HumanMessage("hi", id="h1"),
            AIMessage(
                "",
                tool_calls=[{"name": "search", "args": {"q": "x", "n": [1, 2.5, None]}, "id": "c1"}],
                usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
                response_metadata={"model_name": "m", "ironloop": {"outcome": "ok"}},
            ),
            ToolMessage("result", tool_call_id="c1", name="search", artifact={"raw": [1, 2]}, status="error"),
            AIMessageChunk("partial"),
            RemoveMessage(id="h1"),
        ],
        "interrupt": Interrupt(value={"tool": "charge_card", "args": {"amount_cents": 5}}, id="i1"),
        "command": Command(resume={"i1": {"action": "approve"}}, goto=[]),  # goto: a tuple comes back a list
        "send": Send("tools", {"x": 1}),
        "rejected": Send("reject", Rejection("c9", "nosuch", "no tool named nosuch")),  # what ironloop sends
        "when": [now, now.date(), timedelta(seconds=3), uuid.UUID(int=7), Decimal("1.10")],
        "collections": [{1, 2}, frozenset({3}), deque([4]), Path("/tmp/x")],
        "untrusted_sources": ["search"],
    }
    serde = AllowListSerializer()
    assert serde.loads_typed(serde.dumps_typed(value)) == value
    with pytest.raises(DisallowedTypeError, match=r"tests\.test_checkpoint_serde\.Colour"):
        serde.loads_typed(serde.dumps_typed({"colour": Colour.RED}))
    mine = AllowListSerializer(allowed_types=[Colour])  # a type of one's own state, allowed explicitly
    assert mine.loads_typed(mine.dumps_typed({"colour": Colour.RED})) == {"colour": Colour.RED}
    # LangGraph's strict mode adds a graph's state types the same way, and the refusal stays.
    extended = serde.with_msgpack_allowlist([("tests.test_checkpoint_serde", "Colour")])
    assert isinstance(extended, AllowListSerializer)
    assert extended.loads_typed(extended.dumps_typed(Colour.RED)) is Colour.RED
    with pytest.raises(DisallowedTypeError):
        extended.loads_typed(hostile_blobs(Path("/nonexistent/x"))["os.system"])


def plant(url: str, thread: str, blob: tuple[str, bytes], where: str) -> None:
    """Rewrite the thread's ``messages`` blobs (or its checkpoints' payloads) as ``blob``."""
    if where == "blob":
        statement = (
            update(checkpoint_blobs)
            .where(checkpoint_blobs.c.thread_id == thread, checkpoint_blobs.c.channel == "messages")
            .values(type=blob[0], blob=blob[1])
        )
    else:
        statement = (
            update(checkpoints).where(checkpoints.c.thread_id == thread).values(type=blob[0], checkpoint=blob[1])
        )
    with SQLAlchemySaver.from_url(url) as saver, saver.engine.begin() as connection:
        assert connection.execute(statement).rowcount > 0


@pytest.mark.parametrize("where", ["blob", "payload"])
def test_a_hostile_row_is_refused_as_corrupt_by_the_saver_and_the_cli(
    checkpoint_db_url: str, tmp_path: Path, where: str
) -> None:
    thread = f"hostile-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "ran"
    make_thread(checkpoint_db_url, thread)
    plant(checkpoint_db_url, thread, hostile_blobs(marker)["os.system"], where)

    with SQLAlchemySaver.from_url(checkpoint_db_url) as saver:
        with pytest.raises(CorruptCheckpointError, match=r"refusing to rebuild os\.system") as raised:
            saver.get_tuple({"configurable": {"thread_id": thread}})
        assert raised.value.thread_id == thread
        with pytest.raises(CorruptCheckpointError):
            list(saver.list({"configurable": {"thread_id": thread}}))
    assert not marker.exists()

    history = run_cli(checkpoint_db_url, "history", thread)
    assert history.returncode == 1, history.stderr
    assert history.stderr.startswith("ironloop: error: ") and "cannot be read" in history.stderr
    assert "CORRUPT: cannot decode" in history.stdout  # each unreadable checkpoint marked in place
    assert "refusing to rebuild os.system" in history.stderr, history.stderr
    assert len(history.stderr.strip().splitlines()) == 1 and "Traceback" not in history.stderr
    assert not marker.exists()
