"""Human approval of tool calls: when a call must wait for a person, what they are asked, what they may answer.

A call whose `ToolPolicy` asks for approval pauses inside its own ``tools`` task with LangGraph's ``interrupt()``,
before the exactly-once ledger, the rate limiter and the retries see it, so a rejected or unanswered side effect
can never run. Its sibling calls are separate tasks: they finish and are kept as pending writes, and are not
run again when the paused call is resumed.

When approval is needed is a small strategy (`ApprovalMode`): ``"never"``, ``"always"``, or ``"on_untrusted"``
(only once untrusted tool output has entered the thread: the model may be following instructions injected into
it). The answer is a decision: `Approve`, `Reject` (with a reason the model is shown) or `Edit` (new arguments,
validated against the tool's schema like any model call). Those are plain dicts, so LangGraph Studio users type
the same thing as JSON (``{"action": "approve"}``) and the checkpoint stores nothing but JSON; `parse_decision`
accepts both, and a few shorthands (``"approve"``, ``"a"``, ``True``). An answer that cannot be used (an
unknown action, edited arguments the schema refuses) is asked again, with the problem in the new request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from langgraph.types import interrupt

ApprovalMode = Literal["never", "always", "on_untrusted"]
APPROVAL_MODES: tuple[ApprovalMode, ...] = ("never", "always", "on_untrusted")

INTERRUPT_KIND = "tool_approval"
"""``payload["kind"]`` of an approval request, so a client can tell it from other interrupts."""

Action = Literal["approve", "reject", "edit"]

ArgsCheck = Callable[[str, Any], "str | None"]
"""``check(tool, args)``: why the arguments must not run (the same check as a model's call), or ``None``."""


class Approve(dict[str, Any]):
    """Run the call as asked. ``Command(resume=Approve(by="ops"))`` == ``Command(resume={"action": "approve"})``."""

    def __init__(self, *, by: str | None = None, reason: str | None = None):
        super().__init__(_present(action="approve", by=by, reason=reason))


class Reject(dict[str, Any]):
    """Do not run the call; ``reason`` becomes the observation the model sees."""

    def __init__(self, reason: str = "", *, by: str | None = None):
        super().__init__(_present(action="reject", reason=reason, by=by))


class Edit(dict[str, Any]):
    """Run the call with these arguments instead (checked against the tool's schema first)."""

    def __init__(self, args: Mapping[str, Any], *, by: str | None = None, reason: str | None = None):
        super().__init__(_present(action="edit", args=dict(args), by=by, reason=reason))


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class Decision:
    """A human's answer to one approval request, parsed and checked."""

    action: Action
    by: str | None = None
    reason: str | None = None
    args: dict[str, Any] | None = None
    """With ``edit``: the arguments the call runs with."""

    def as_dict(self) -> dict[str, Any]:
        return _present(action=self.action, by=self.by, reason=self.reason, args=self.args)


_SHORTHANDS: dict[str, Action] = {
    "a": "approve",
    "approve": "approve",
    "approved": "approve",
    "yes": "approve",
    "y": "approve",
    "r": "reject",
    "reject": "reject",
    "rejected": "reject",
    "deny": "reject",
    "no": "reject",
    "n": "reject",
    "e": "edit",
    "edit": "edit",
}


def parse_decision(value: Any) -> Decision:
    """The decision in a resume value: a dict (`Approve`, `Reject`, `Edit`, or typed JSON), a word, or a bool.

    Raises `ValueError` saying what is accepted, for anything else.
    """
    if isinstance(value, Decision):
        return value
    if isinstance(value, bool):
        return Decision("approve" if value else "reject")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError(f"the answer is not valid JSON: {text[:100]!r}") from None
        elif text.lower() in _SHORTHANDS and _SHORTHANDS[text.lower()] != "edit":
            return Decision(_SHORTHANDS[text.lower()])
    if not isinstance(value, Mapping):
        raise ValueError(f"expected {DECISION_HELP}; got {value!r:.100}")
    raw = value.get("action", value.get("decision"))
    action = _SHORTHANDS.get(str(raw).strip().lower()) if raw is not None else None
    if action is None:
        raise ValueError(f"unknown action {raw!r}; expected {DECISION_HELP}")
    by = _text(value.get("by"), "by")
    reason = _text(value.get("reason", value.get("message")), "reason")
    if action == "edit":
        args = value.get("args", value.get("arguments"))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                raise ValueError(f"the edited arguments are not valid JSON: {args[:100]!r}") from None
        if not isinstance(args, Mapping):
            raise ValueError('an edit needs "args": a JSON object with the new arguments')
        return Decision("edit", by, reason, dict(args))
    return Decision(action, by, reason)


DECISION_HELP = '{"action": "approve"}, {"action": "reject", "reason": "..."} or {"action": "edit", "args": {...}}'


def _text(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise ValueError(f'"{name}" must be a string, got {value!r:.60}')


def approval_reason(tool: str, mode: ApprovalMode, untrusted_sources: Sequence[str]) -> str | None:
    """Why a call of ``tool`` needs approval under ``mode`` in a thread that has read ``untrusted_sources``."""
    if mode == "always":
        return f"{tool} requires a human's approval for every call (its policy says approval='always')."
    if mode == "on_untrusted" and untrusted_sources:
        return (
            f"{tool} has side effects, and this thread has read untrusted tool output "
            f"({', '.join(untrusted_sources)}) that may carry injected instructions; check that the call is "
            "what the user asked for."
        )
    return None


def approval_request(
    call: Mapping[str, Any], reason: str, *, schema: Mapping[str, Any] | None = None, problem: str | None = None
) -> dict[str, Any]:
    """The interrupt payload: JSON, so Studio shows it and any client can answer it."""
    payload: dict[str, Any] = {
        "kind": INTERRUPT_KIND,
        "tool": call["name"],
        "args": dict(call["args"]),
        "tool_call_id": call["id"],
        "reason": reason,
        "answer_with": DECISION_HELP,
    }
    if schema is not None:
        payload["args_schema"] = dict(schema)
    if problem is not None:
        payload["problem"] = problem
    return payload


def is_approval_request(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("kind") == INTERRUPT_KIND


def ask(
    call: Mapping[str, Any],
    reason: str,
    *,
    check: ArgsCheck | None = None,
    schema: Mapping[str, Any] | None = None,
) -> Decision:
    """Pause the task until a usable decision arrives (LangGraph ``interrupt``), asking again after a bad one.

    On resume the task runs again from its start: each earlier ``interrupt`` returns its recorded answer in
    order, so the same bad answers lead to the same re-asks and the loop ends where it paused.
    """
    problem: str | None = None
    while True:
        answer = interrupt(approval_request(call, reason, schema=schema, problem=problem))
        try:
            decision = parse_decision(answer)
        except ValueError as exc:
            problem = f"the answer was not understood: {exc}"
            continue
        if decision.action == "edit" and check is not None:
            refused = check(call["name"], decision.args)
            if refused is not None:
                problem = f"the edited arguments {decision.args!r:.200} were refused: {refused}"
                continue
        return decision


@dataclass
class ApprovalRecord:
    """One decision as the ledger keeps it."""

    tool: str
    tool_call_id: str
    thread_id: str | None
    checkpoint_ns: str
    decision: Decision
    reason_asked: str
    """Why approval was needed (the request's ``reason``)."""
    mode: ApprovalMode
    args: dict[str, Any] = field(default_factory=dict)
    """The arguments the model asked for (``decision.args`` holds an edit's)."""

    def as_metadata(self) -> dict[str, Any]:
        """What the call's ToolMessage carries (``response_metadata["ironloop"]["approval"]``)."""
        return {**self.decision.as_dict(), "mode": self.mode, "asked_because": self.reason_asked}


@runtime_checkable
class ApprovalListener(Protocol):
    """A `tools.records.CallListener` that also wants each approval decision (the attempt ledger does)."""

    def on_approval(self, approval: ApprovalRecord) -> None: ...
