"""Untrusted text never drives the terminal (issue 12, item 8).

A search service answers with ESC/CSI sequences (erase line, cursor up), an OSC 52 clipboard write, a C1 CSI,
a bidirectional override, carriage return and backspace; the model puts the same into a tool call's id, an
unknown tool's name and its answer. Everything the CLI prints about that run (the trajectory, the answer line,
``threads``, ``history``, ``report``, errors) is searched for control characters: there must be none but the
newlines that end lines, and the hostile text must still be there, shown as escapes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from ironloop.cli.text import printable
from ironloop.cli.trajectory import TrajectoryPrinter
from ironloop.demo.services.server import ServiceThread
from ironloop.graph.agent import build_agent
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.helpers import call, replay_model, run_cli, turn
from tests.openai_server import OpenAIStub

HOSTILE = "\x1b[2K\x1b[1A\x1b]52;c;cm0gLXJmIH4K\x07\x9b31m\u202eevil\rover\x08\x00\x1b]8;;http://127.0.0.1:9/\x1b\\"
"""Erase line, cursor up, OSC 52 clipboard write, C1 CSI, RTL override, CR, BS, NUL, OSC 8 link."""

TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
"""What a terminal acts on or reorders by (tab and newline excepted)."""


def assert_inert(where: str, text: str) -> None:
    found = TERMINAL_CONTROLS.findall(text)
    assert not found, f"{where} reached the terminal with control characters {found!r}: {text!r}"


def test_printable_shows_controls_as_escapes() -> None:
    assert printable(HOSTILE) == (
        "\\x1b[2K\\x1b[1A\\x1b]52;c;cm0gLXJmIH4K\\x07\\x9b31m\\u202eevil\\rover\\x08\\x00\\x1b]8;;http://127.0.0.1:9/\\x1b\\"
    )
    assert printable("two\nlines\r\nand\ttab") == "two\\nlines\\r\\nand\ttab"
    assert printable("two\nlines\r\nend", newlines=True) == "two\nlines\nend"
    assert printable("Zoë paid 5 € 👍🏽 – 東京") == "Zoë paid 5 € 👍🏽 – 東京"  # text stays text
    assert printable(ValueError("bad \x1b[31m")) == "bad \\x1b[31m"


def test_the_trajectory_and_answer_are_inert() -> None:
    @tool
    def search(query: str) -> str:
        """Search."""
        if query == "fail":
            raise ValueError(f"upstream said {HOSTILE}")
        return f"result {HOSTILE}"

    ok, failing = call("search", query="x"), call("search", query="fail")
    unknown = {"name": f"no{HOSTILE}", "args": {"a": HOSTILE}, "id": f"id{HOSTILE}"}
    agent = build_agent(
        replay_model(turn(ok, failing, unknown, content=HOSTILE), AIMessage(content=f"line one\nthe answer {HOSTILE}")),
        [search],
    )
    out = io.StringIO()
    printer = TrajectoryPrinter(out=out, width=10_000)
    for mode, chunk in agent.stream({"messages": [("user", "go")]}, stream_mode=["updates", "custom"]):
        printer.feed(mode, chunk)
    printer.finish()
    printed = out.getvalue()
    assert_inert("the trajectory", printed)
    assert "result \\x1b[2K" in printed and "upstream said \\x1b[2K" in printed and "no\\x1b[2K" in printed
    assert "answer: line one\nthe answer \\x1b[2K\\x1b[1A" in printed  # the answer keeps its line break


def test_streamed_tokens_are_inert() -> None:
    out = io.StringIO()
    printer = TrajectoryPrinter(out=out, tokens=True)
    from langchain_core.messages import AIMessageChunk

    for piece in ("\x1b", "[2K", "ok\n", "\x9b", "1A"):
        printer.feed("messages", (AIMessageChunk(content=piece), {}))
    printer.finish()
    assert_inert("streamed tokens", out.getvalue())
    assert "\\x1b[2Kok\n\\x9b1A" in out.getvalue()


class HostileSearch:
    """A search service whose results and errors carry terminal control sequences."""

    def __init__(self) -> None:
        self.service = ServiceThread(Starlette(routes=[Route("/search", self.search)]))

    async def search(self, request: Request) -> Response:
        if request.query_params.get("q") == "fail":
            return JSONResponse({"error": f"bad query {HOSTILE}"}, status_code=400)
        return JSONResponse({"results": [{"title": f"t{HOSTILE}", "snippet": f"s{HOSTILE}"}]})


@pytest.fixture
def hostile_search() -> Iterator[HostileSearch]:
    service = HostileSearch()
    service.service.start()
    try:
        yield service
    finally:
        service.service.stop()


def test_every_command_prints_untrusted_text_inert(tmp_path: Path, hostile_search: HostileSearch) -> None:
    db = f"sqlite:///{tmp_path / 'hostile.db'}"
    calls = [
        {"name": "search", "args": {"query": f"q{HOSTILE}"}, "id": f"c1{HOSTILE}"},
        {"name": "search", "args": {"query": "fail"}, "id": "c2"},
        {"name": f"nosuch{HOSTILE}", "args": {}, "id": "c3"},
    ]
    with OpenAIStub() as stub:
        stub.queue.extend([AIMessage(content="", tool_calls=calls), AIMessage(content=f"the answer {HOSTILE}")])
        run = run_cli(
            db,
            "run",
            "question",
            "--thread",
            "hostile",
            "--model",
            "m",
            "--api-key",
            "k",
            "--base-url",
            stub.base_url,
            "--search-url",
            hostile_search.service.url,
        )
    assert run.returncode == 0, run.stderr
    assert "t\\x1b[2K" in run.stdout and "bad query \\x1b[2" in run.stdout and "nosuch\\x1b[2K" in run.stdout
    assert "the answer \\x1b[2K" in run.stdout
    outputs = {"run": run}
    outputs["threads"] = run_cli(db, "threads")
    outputs["history"] = run_cli(db, "history", "hostile")
    outputs["report"] = run_cli(db, "report")
    outputs["an error"] = run_cli(db, "history", "nothing" + HOSTILE.replace("\x00", ""))
    assert "nosuch\\x1b[2K" in outputs["report"].stdout, outputs["report"].stdout
    assert "c1\\x1b[2K" in outputs["history"].stdout, outputs["history"].stdout
    assert outputs["an error"].returncode == 2 and "nothing" in outputs["an error"].stderr
    for name, done in outputs.items():
        assert done.returncode in (0, 2), f"{name}: {done.stderr}"
        assert_inert(f"`ironloop {name}` stdout", done.stdout)
        assert_inert(f"`ironloop {name}` stderr", done.stderr)
