"""Printing a run as a person can follow it: each turn, each call, each attempt, the answer.

Feed it the items of ``graph.stream(..., stream_mode=["updates", "custom"])`` (or the async twin).
"""

from __future__ import annotations

import re
import shutil
import sys
from typing import Any, TextIO

from ironloop.cli.text import printable
from ironloop.terminal import is_terminal
from ironloop.tools.untrusted import unwrap_untrusted
from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage


class TrajectoryPrinter:
    """Prints stream items as lines; with ``tokens``, also the model's text as it is generated."""

    def __init__(self, out: TextIO | None = None, *, width: int | None = None, tokens: bool = False):
        self.out = out or sys.stdout
        self.width = width or _width(self.out)
        self.tokens = tokens
        self.turn = 0
        self.answer: str | None = None
        self.rejected = 0
        """Calls answered without being run (invalid, unknown, repeated): the model's repairs."""
        self.answer_shown = False
        """The answer's text was already printed, token by token (``finish`` then does not repeat it)."""
        self._mid_line = False
        self._streamed_turn = False

    def feed(self, mode: str, chunk: Any) -> None:
        if mode == "messages":
            self._token(chunk[0] if isinstance(chunk, tuple) else chunk)
            return
        self._end_line()
        if mode == "custom" and isinstance(chunk, dict):
            self._event(chunk)
        elif mode == "updates" and isinstance(chunk, dict):
            for update in chunk.values():
                for message in (update or {}).get("messages", []) if isinstance(update, dict) else []:
                    self._message(message)

    def _token(self, message: Any) -> None:
        if isinstance(message, AIMessageChunk) and isinstance(message.content, str) and message.content:
            if not self._mid_line:
                self.out.write(f"turn {self.turn + 1}  model ▸ ")
                self._mid_line = True
            self._streamed_turn = True
            self.out.write(printable(message.content, newlines=True))
            self.out.flush()

    def finish_line(self) -> None:
        """End a line of streamed tokens (before something else writes to the terminal)."""
        self._end_line()

    def _end_line(self) -> None:
        if self._mid_line:
            self.out.write("\n")
            self._mid_line = False

    def _print(self, text: str) -> None:
        text = printable(text)  # tool output, model text and errors are untrusted: nothing reaches the terminal raw
        print(text if len(text) <= self.width else text[: self.width - 1] + "…", file=self.out, flush=True)

    def _message(self, message: Any) -> None:
        if isinstance(message, AIMessage):
            self.turn += 1
            streamed, self._streamed_turn = self._streamed_turn, False
            calls = [f"{c['name']}({_args(c['args'])})" for c in message.tool_calls]
            calls += [f"{c.get('name')}(<invalid: {c.get('error') or 'not JSON'}>)" for c in message.invalid_tool_calls]
            if calls:
                self._print(f"turn {self.turn}  model → " + "  ".join(calls))
            else:
                self.answer = str(message.content)
                self.answer_shown = streamed and bool(self.answer.strip())
                if not self.answer_shown:
                    self._print(f"turn {self.turn}  model → answer")
        elif isinstance(message, ToolMessage):
            text = " ".join(_shown(message.content).split())
            self._print(f"        {message.name} ⇒ {text}")

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        call = f"{event.get('tool')} [{str(event.get('tool_call_id', ''))[-6:]}]"
        if kind == "tool_attempt":
            line = f"        {call}  attempt {event['number']}: {event['outcome']} after {event['ms']:.0f} ms"
            line += _limit(event)
            if event.get("retry_in_s") is not None:
                line += f", retry in {event['retry_in_s'] * 1000:.0f} ms"
            line += "".join(f" [{note}]" for note in _decisions(event))
            if event.get("error"):
                line += f"  {event['error']}"
            self._print(line)
        elif kind == "model_attempt":
            self._print(
                f"        model {event['model']}  attempt {event['number']} failed: {event.get('error')}, "
                f"retry in {event['retry_in_s'] * 1000:.0f} ms"
            )
        elif kind == "model_failed":
            self._print(
                f"        model {event['model']} gave up after {event['attempts']} attempt(s): {event['error']}"
            )
        elif kind == "tool_approval":
            verb = {"approve": "APPROVED", "reject": "REJECTED", "edit": "EDITED"}.get(str(event.get("action")), "?")
            line = f"        {call}  {verb} by {event.get('by') or 'a human'}"
            if event.get("args") is not None:
                line += f": args {_args(event['args'])}"
            if event.get("reason"):
                line += f": {event['reason']}"
            self._print(line)
        elif kind == "tool_progress":
            total = f"/{event['total']:g}" if event.get("total") is not None else ""
            message = f"  {event['message']}" if event.get("message") else ""
            self._print(f"        {call}  progress {event['progress']:g}{total}{message}")
        elif kind == "tool_call":
            outcome = event["outcome"]
            line = f"        {call}  {outcome.upper()} after {event['attempts']} attempt(s), {event['ms']:.0f} ms"
            if outcome != "ok" and event.get("reason"):
                line += f": {event['reason']}"
            self.rejected += outcome == "rejected"
            self._print(line)

    def finish(self) -> None:
        self._end_line()
        if self.rejected:
            print(f"repairs: {self.rejected} call(s) rejected before dispatch, answered with the reason", file=self.out)
        if self.answer is not None and not self.answer_shown:
            print(f"answer: {printable(self.answer, newlines=True)}", file=self.out, flush=True)


_TIMEOUT = re.compile(r"attempt timeout of ([0-9.e+-]+) s")


def _limit(event: dict[str, Any]) -> str:
    """For a timeout, the limit it had (and why the attempt ran past it), where the line is not cut."""
    match = _TIMEOUT.search(str(event.get("error") or "")) if event.get("outcome") == "timeout" else None
    if match is None:
        return ""
    late = "; the event loop was busy" if "event loop was busy" in str(event.get("error")) else ""
    return f" (limit {float(match.group(1)) * 1000:.0f} ms{late})"


def _width(out: TextIO) -> int:
    """Lines are cut to the terminal's width; to 110 characters elsewhere (a log stays readable)."""
    return shutil.get_terminal_size().columns if is_terminal(out) else 110


def _shown(content: Any) -> str:
    """An observation as a person reads it: untrusted data without its preamble, one line per content block
    (text as text, an image or file as its kind and type)."""
    if not isinstance(content, list):
        return _unwrapped(str(content))
    parts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(_unwrapped(str(block.get("text", ""))))
        elif isinstance(block, dict):
            parts.append(f"[{block.get('type')} {block.get('mime_type') or ''}]".replace(" ]", "]"))
        else:
            parts.append(_unwrapped(str(block)))
    return "\n".join(parts)


def _unwrapped(text: str) -> str:
    untrusted = unwrap_untrusted(text)
    return text if untrusted is None else f"[untrusted {untrusted[0]} output] {untrusted[1]}"


def _decisions(event: dict[str, Any]) -> list[str]:
    """The runtime's decisions for an attempt, as short notes."""
    notes = []
    if event.get("rate_limited_ms"):
        notes.append(f"waited {event['rate_limited_ms']:.0f} ms for a rate-limit slot")
    if event.get("circuit") == "half_open":
        notes.append("circuit probe")
    if event.get("hedge"):
        notes.append(f"hedged: {event['hedge']} try won")
    if event.get("abandoned_thread"):
        notes.append("thread abandoned")
    if event.get("replayed"):
        notes.append("replayed from the idempotency ledger")
    return notes


def _args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())
