"""Human approval of tool calls: when a call must wait for a person, what they are asked, what they may answer.

A call whose `ToolPolicy` asks for approval pauses inside its own ``tools`` task with LangGraph's ``interrupt()``,
before the exactly-once ledger, the rate limiter and the retries see it, so a rejected or unanswered side effect
can never run. Its sibling calls are separate tasks: they finish and are kept as pending writes, and are not
run again when the paused call is resumed.

When approval is needed is a small strategy (`ApprovalMode`): ``"never"``, ``"always"``, or ``"on_untrusted"``
(only once untrusted tool output has entered the thread: the model may be following instructions injected into
it). The answer is a decision: `Approve`, `Reject` (with a reason the model is shown), `Edit` (new arguments,
validated against the tool's schema like any model call) or `Respond` (the human answers in the tool's place).
Those are plain dicts, so LangGraph Studio users type the same thing as JSON (``{"action": "approve"}``) and the
checkpoint stores nothing but JSON; `parse_decision` accepts both, a few shorthands (``"approve"``, ``"a"``,
``True``), and LangChain's ``HumanInTheLoopMiddleware`` decisions (``{"type": "approve"}``, ``{"type": "edit",
"edited_action": {...}}``, ``{"type": "reject", "message": ...}``, ``{"type": "respond", "message": ...}``,
alone or as ``{"decisions": [one]}``), so its clients (Agent Chat UI) can answer. With
``request_format="langchain"`` the request also carries LangChain's ``action_requests``/``review_configs``. An
answer that cannot be used (an unknown action, edited arguments the schema refuses) is asked again, with the
problem in the new request.
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

Action = Literal["approve", "reject", "edit", "respond"]

RequestFormat = Literal["ironloop", "langchain"]
"""How an approval request is shaped: ironloop's keys alone, or with LangChain's HITL keys as well."""
REQUEST_FORMATS: tuple[RequestFormat, ...] = ("ironloop", "langchain")

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


class Respond(dict[str, Any]):
    """Do not run the call; ``message`` is the tool's answer the model gets (LangChain's ``respond``)."""

    def __init__(self, message: str, *, by: str | None = None):
        super().__init__(_present(action="respond", reason=message, by=by))


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class Decision:
    """A human's answer to one approval request, parsed and checked."""

    action: Action
    by: str | None = None
    reason: str | None = None
    """Why (a rejection's is shown to the model); with ``respond``, the answer the model gets as the tool's."""
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
    "respond": "respond",
    "response": "respond",
}


def parse_decision(value: Any, tool: str | None = None) -> Decision:
    """The decision in a resume value: a dict (`Approve`, `Reject`, `Edit`, `Respond`, typed JSON, or a LangChain
    HITL decision, alone or as a one-decision batch), a word, or a bool. ``tool``: the call's tool, which a
    LangChain edit's ``edited_action`` must name.

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
        elif text.lower() in _SHORTHANDS and _SHORTHANDS[text.lower()] not in ("edit", "respond"):
            return Decision(_SHORTHANDS[text.lower()])
    if not isinstance(value, Mapping):
        raise ValueError(f"expected {DECISION_HELP}; got {value!r:.100}")
    if "decisions" in value:
        return parse_decision(_only_decision(value["decisions"]), tool)
    raw = value.get("action", value.get("decision", value.get("type")))
    action = _SHORTHANDS.get(str(raw).strip().lower()) if raw is not None else None
    if action is None:
        raise ValueError(f"unknown action {raw!r}; expected {DECISION_HELP}")
    by = _text(value.get("by"), "by")
    reason = _text(value.get("reason", value.get("message")), "reason")
    if action == "respond" and reason is None:
        raise ValueError('a respond decision needs "message": the answer the model gets in the tool\'s place')
    if action == "edit":
        args = _edited_args(value, tool)
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                raise ValueError(f"the edited arguments are not valid JSON: {args[:100]!r}") from None
        if not isinstance(args, Mapping):
            raise ValueError('an edit needs "args": a JSON object with the new arguments')
        return Decision("edit", by, reason, dict(args))
    return Decision(action, by, reason)


def _only_decision(decisions: Any) -> Any:
    """The one decision of a LangChain ``{"decisions": [...]}`` answer (ironloop asks about one call at a time)."""
    if not isinstance(decisions, Sequence) or isinstance(decisions, str) or len(decisions) != 1:
        count = len(decisions) if isinstance(decisions, Sequence) and not isinstance(decisions, str) else "no list"
        raise ValueError(f'"decisions" must hold exactly one decision (each call is asked about alone), got {count}')
    return decisions[0]


def _edited_args(value: Mapping[str, Any], tool: str | None) -> Any:
    """An edit's new arguments: ironloop's ``args``, or LangChain's ``edited_action.args`` (same tool only)."""
    action = value.get("edited_action")
    if action is None:
        return value.get("args", value.get("arguments"))
    if not isinstance(action, Mapping):
        raise ValueError('"edited_action" must be an object: {"name": ..., "args": {...}}')
    name = action.get("name")
    if tool is not None and name is not None and name != tool:
        raise ValueError(f"an edit cannot switch tools: the call is {tool!r}, the edit names {name!r}")
    return action.get("args")


DECISION_HELP = (
    '{"action": "approve"}, {"action": "reject", "reason": "..."}, {"action": "edit", "args": {...}}, '
    '{"action": "respond", "message": "..."}, or LangChain\'s {"type": "approve" | "edit" | "reject" | "respond"}'
)

ALLOWED_DECISIONS = ["approve", "edit", "reject", "respond"]
"""What LangChain's ``review_configs`` say a reviewer may answer (ironloop accepts all four)."""


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
    call: Mapping[str, Any],
    reason: str,
    *,
    schema: Mapping[str, Any] | None = None,
    problem: str | None = None,
    request_format: RequestFormat = "ironloop",
) -> dict[str, Any]:
    """The interrupt payload: JSON, so Studio shows it and any client can answer it. With ``"langchain"`` it also
    carries LangChain's HITL request (``action_requests``, ``review_configs``) for that one call."""
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
    if request_format == "langchain":
        description = reason if problem is None else f"{reason}\nThe previous answer was refused: {problem}"
        payload["action_requests"] = [{"name": call["name"], "args": dict(call["args"]), "description": description}]
        review: dict[str, Any] = {"action_name": call["name"], "allowed_decisions": list(ALLOWED_DECISIONS)}
        if schema is not None:
            review["args_schema"] = dict(schema)
        payload["review_configs"] = [review]
    return payload


def is_approval_request(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("kind") == INTERRUPT_KIND


def ask(
    call: Mapping[str, Any],
    reason: str,
    *,
    check: ArgsCheck | None = None,
    schema: Mapping[str, Any] | None = None,
    request_format: RequestFormat = "ironloop",
) -> Decision:
    """Pause the task until a usable decision arrives (LangGraph ``interrupt``), asking again after a bad one.

    On resume the task runs again from its start: each earlier ``interrupt`` returns its recorded answer in
    order, so the same bad answers lead to the same re-asks and the loop ends where it paused.
    """
    problem: str | None = None
    while True:
        answer = interrupt(
            approval_request(call, reason, schema=schema, problem=problem, request_format=request_format)
        )
        try:
            decision = parse_decision(answer, call["name"])
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
