"""The approval gate: the outermost layer of a call whose policy asks for a human's decision.

It stands before everything else, so a rejected or unanswered call never reaches the credentials, the
exactly-once ledger, the rate limiter or the tool. It asks through LangGraph's ``interrupt()`` (`tools.approval`):
the first time, the call's task pauses there; on resume the task runs again and the gate gets the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ironloop.tools import observations
from ironloop.tools.approval import ApprovalRecord, ArgsCheck, Decision, approval_reason, ask
from ironloop.tools.steps import CallContext, Result, Step
from ironloop.tools.storable import storable_problem
from langchain_core.messages import ToolMessage
from langgraph.errors import GraphInterrupt

LedgerAnswer = Callable[[CallContext], Awaitable[ToolMessage | None]]
"""What the idempotency ledger knows of a side-effect call, as its observation (``None``: nothing, it never began)."""


class ApprovalGate:
    """Asks a human when the call's policy says so: approve runs it, reject answers it, edit runs new arguments.

    ``check_args`` checks edited arguments like a model's (`tools.validation.ToolCatalog.check`); an edit a
    checkpoint cannot hold (`tools.storable`) is refused in any case. ``args_schemas`` are shown in the request, so
    an edit can follow them. ``ledger`` is asked before a side effect is answered "Not run": a call that ran already
    (a process died after the ledger recorded it, before the checkpoint did) is answered with what it did.
    """

    def __init__(
        self,
        check_args: ArgsCheck | None = None,
        args_schemas: Mapping[str, dict[str, Any]] | None = None,
        ledger: LedgerAnswer | None = None,
    ):
        self.check_args = check_args
        self.args_schemas = dict(args_schemas or {})
        self.ledger = ledger

    async def __call__(self, call: CallContext, proceed: Step) -> Result:
        decision = self.decide(call)
        if decision is None or decision.action == "approve":
            return await proceed(call)
        if decision.action == "reject":
            recorded = await self.ledger(call) if self.ledger is not None and call.policy.side_effect else None
            if recorded is not None:
                return recorded
            return observations.denied(call.tool_call, call.record, decision)
        assert decision.args is not None
        edited = call.request.override(tool_call={**call.tool_call, "args": decision.args})
        message = await proceed(call.but(request=edited))
        if isinstance(message, ToolMessage) and isinstance(message.content, str):
            message.content = f"{message.content}\n{observations.edited_note(decision.args)}"
        return message

    def decide(self, call: CallContext) -> Decision | None:
        """A human's decision on this call if its policy asks for one now (``None`` if not), recorded.

        Raises LangGraph's ``GraphInterrupt`` until the human answers; the task's deadline does not run meanwhile.
        """
        tool_call, record = call.tool_call, call.record
        state = call.request.state if isinstance(call.request.state, dict) else {}
        mode = call.policy.approval_mode
        reason = approval_reason(call.name, mode, state.get("untrusted_sources") or ())
        if reason is None:
            return None
        try:
            decision = ask(tool_call, reason, check=self._check, schema=self.args_schemas.get(call.name))
        except GraphInterrupt:
            if call.budget is not None:
                call.budget.pause()
            raise
        if call.budget is not None:
            call.budget.unpause()
        approval = ApprovalRecord(
            tool=record.tool,
            tool_call_id=record.tool_call_id,
            thread_id=record.thread_id,
            checkpoint_ns=record.checkpoint_ns,
            decision=decision,
            reason_asked=reason,
            mode=mode,
            args=dict(tool_call["args"]),
        )
        record.approval = approval.as_metadata()
        call.events.approval(approval)
        return decision

    def _check(self, tool: str, args: Any) -> str | None:
        """Why edited arguments must not run: what a checkpoint cannot hold, then what the tool's schema refuses."""
        unstorable = storable_problem(args)
        if unstorable is not None:
            return f"Error: {tool}: invalid arguments: {unstorable}"
        return self.check_args(tool, args) if self.check_args is not None else None
