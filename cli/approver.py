"""Answering approval requests from the command line: at the terminal, by a flag, or not at all (the run pauses).

A run that reaches calls waiting for approval (`tools.approval`) stops with one LangGraph interrupt per call.
An `Approver` turns the pending requests into the resume map ``{interrupt_id: decision}`` that continues the
run, or returns ``None``: the thread stays paused in the checkpoint store, and any process can answer later
(``ironloop resume THREAD --approve``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from ironloop.cli.text import printable
from ironloop.commands import EXIT_USAGE, CommandError
from ironloop.tools.approval import Approve, Edit, Reject
from ironloop.tools.storable import storable_problem
from langgraph.types import Interrupt


class Approver(Protocol):
    def decide(self, requests: Sequence[Interrupt]) -> dict[str, Any] | None:
        """The decision for each request by interrupt id, or ``None`` to leave the thread paused."""
        ...


def who(how: str) -> str:
    """Who decided, for the ledger: the OS user and how they answered."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name (some containers): the channel is still worth recording
        user = "unknown user"
    return f"{user} ({how})"


def describe_request(request: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in request.get("args", {}).items())
    return printable(f"{request.get('tool')}({args}) [{request.get('tool_call_id')}]")


@dataclass
class FixedApprover:
    """Gives every request the same answer (``--approve-all``, ``--deny-all``, ``resume --approve``/``--reject``)."""

    decision: dict[str, Any]
    out: TextIO | None = None
    answered: set[str] = field(default_factory=set)
    """Tool calls this approver has answered. One asked again refused our answer: repeating it would loop, so the
    thread is left to a person. A call refused in an earlier process (its request carries a ``problem``) is not
    ours to give up on."""

    def decide(self, requests: Sequence[Interrupt]) -> dict[str, Any] | None:
        if any(request.value.get("tool_call_id") in self.answered for request in requests):
            return None
        out = self.out or sys.stdout
        verb = {"approve": "approved", "reject": "rejected", "edit": "edited"}[self.decision["action"]]
        for request in requests:
            print(f"approval: {describe_request(request.value)} {verb} by {self.decision.get('by')}", file=out)
        self.answered.update(str(request.value.get("tool_call_id")) for request in requests)
        return {request.id: dict(self.decision) for request in requests}


class PauseApprover:
    """Answers nothing: the run stops and the thread waits for a decision from any process."""

    def decide(self, requests: Sequence[Interrupt]) -> None:
        return None


@dataclass
class TerminalApprover:
    """Asks at the terminal, one request at a time: approve, reject (with a reason) or edit (new JSON arguments)."""

    stdin: TextIO | None = None
    out: TextIO | None = None

    def decide(self, requests: Sequence[Interrupt]) -> dict[str, Any] | None:
        answers: dict[str, Any] = {}
        for request in requests:
            answer = self._ask(request.value)
            if answer is None:
                return None
            answers[request.id] = answer
        return answers

    def _ask(self, request: dict[str, Any]) -> dict[str, Any] | None:
        out = self.out or sys.stdout
        print(f"approval needed: {describe_request(request)}", file=out)
        print(f"  why: {printable(request.get('reason'))}", file=out)
        if request.get("problem"):
            print(f"  previous answer refused: {printable(request['problem'])}", file=out)
        by = who("terminal")
        while True:
            choice = self._line("  [a]pprove, [r]eject or [e]dit? ")
            if choice is None:  # end of input: leave the decision to a later `ironloop resume`
                return None
            choice = choice.strip().lower()
            if choice in ("a", "approve", "y", "yes"):
                return Approve(by=by)
            if choice in ("r", "reject", "n", "no"):
                reason = self._line("  reason (the model is told): ")
                return Reject((reason or "").strip() or "rejected at the terminal", by=by)
            if choice in ("e", "edit"):
                text = self._line(f"  new arguments as JSON (now {json.dumps(request.get('args', {}))}): ")
                try:
                    args = json.loads(text or "")
                except ValueError:
                    print("  not valid JSON; try again", file=out)
                    continue
                if not isinstance(args, dict):
                    print("  the arguments must be a JSON object; try again", file=out)
                    continue
                if (problem := storable_problem(args)) is not None:
                    print(f"  {printable(problem)}; try again", file=out)
                    continue
                return Edit(args, by=by)
            print("  answer a, r or e", file=out)

    def _line(self, prompt: str) -> str | None:
        out = self.out or sys.stdout
        print(prompt, end="", file=out, flush=True)
        line = (self.stdin or sys.stdin).readline()
        return line.rstrip("\n") if line else None


def approver_for(args: argparse.Namespace) -> Approver:
    """Who answers approval requests: the flags given, else the terminal, else nobody (the run pauses)."""
    if getattr(args, "approve_all", False):
        return FixedApprover(Approve(by=who("--approve-all")))
    if getattr(args, "deny_all", False):
        return FixedApprover(Reject("denied by --deny-all (non-interactive run)", by=who("--deny-all")))
    if getattr(args, "approve", False):
        return FixedApprover(Approve(by=who("ironloop resume --approve")))
    if getattr(args, "reject", None) is not None:
        return FixedApprover(Reject(args.reject, by=who("ironloop resume --reject")))
    if getattr(args, "edit", None) is not None:
        try:
            edited = json.loads(args.edit)
        except ValueError:
            edited = None
        if not isinstance(edited, dict):
            raise CommandError(f"--edit takes the new arguments as a JSON object, got {args.edit!r}", EXIT_USAGE)
        if (problem := storable_problem(edited)) is not None:
            raise CommandError(f"--edit refused, nothing was decided: {problem}", EXIT_USAGE)
        return FixedApprover(Edit(edited, by=who("ironloop resume --edit")))
    if sys.stdin is not None and sys.stdin.isatty():
        return TerminalApprover()
    return PauseApprover()
