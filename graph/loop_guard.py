"""Loop detection: a call identical to several earlier ones in the same task is refused, not run again.

Models sometimes repeat a call with the same arguments, hoping for a different answer. After ``limit``
identical calls (same tool, same arguments) in one task, the next is answered with a note saying so and the
last result, so the model moves on; the turn budget still ends a run that never does. `build_agent` checks each
turn's calls before dispatch; `LoopGuard` does the same for one call at a time in any ``ToolNode`` (and in
`graph.middleware.IronloopToolMiddleware`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence

from ironloop.graph.state import current_run
from ironloop.tools.records import was_rejected
from ironloop.tools.runner import SyncExecute, ToolCallRunner
from ironloop.tools.steps import Execute, Result
from ironloop.tools.untrusted import unwrap_untrusted, wrap_untrusted
from ironloop.tools.validation import Rejection
from langchain_core.messages import AIMessage, AnyMessage, ToolCall, ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest

DEFAULT_LOOP_LIMIT = 3


def call_key(call: ToolCall) -> tuple[str, str]:
    try:
        return call["name"], json.dumps(call["args"], sort_keys=True, default=str)
    except (RecursionError, ValueError):  # arguments too deep to compare: never count them as a repeat
        return call["name"], f"<unique {call['id']}>"


def refuse_repeats(
    messages: Sequence[AnyMessage], calls: list[ToolCall], limit: int
) -> tuple[list[ToolCall], list[Rejection]]:
    """Split this turn's calls into those to run and those refused as repeats (``limit`` earlier twins)."""
    earlier = list(current_run(list(messages)))[:-1]
    seen = Counter(call_key(c) for m in earlier if isinstance(m, AIMessage) for c in m.tool_calls)
    last_result = _last_results(earlier)
    allowed: list[ToolCall] = []
    refused: list[Rejection] = []
    for call in calls:
        key = call_key(call)
        if seen[key] >= limit:
            previous = last_result.get(key)
            note = (
                f"Not run: {call['name']} was already called {seen[key]} times with these same arguments in this "
                "task. Repeating it will not change the result: use what you have, change the arguments, or answer."
            )
            if previous:
                note += f" Last result: {quote_result(previous)}"
            refused.append(Rejection(call["id"] or "", call["name"], note))
        else:
            allowed.append(call)
        seen[key] += 1
    return allowed, refused


def quote_result(result: str, limit: int = 500) -> str:
    """The start of an earlier result, to quote it back. Untrusted output stays inside its delimiters even when
    cut: cutting the wrapped text could drop the closing tag and leave the data speaking as the runtime."""
    untrusted = unwrap_untrusted(result)
    if untrusted is None:
        return result[:limit]
    source, body = untrusted
    return wrap_untrusted(source, body[:limit])


def _last_results(messages: Sequence[AnyMessage]) -> dict[tuple[str, str], str]:
    by_id = {m.tool_call_id: str(m.content) for m in messages if isinstance(m, ToolMessage) and not was_rejected(m)}
    results: dict[tuple[str, str], str] = {}
    for message in messages:
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                if call["id"] in by_id:
                    results[call_key(call)] = by_id[call["id"]]
    return results


class LoopGuard:
    """The loop guard for any ``ToolNode``: ``runner``'s hooks with a check in front, so a call identical to
    ``limit`` earlier ones in the task is answered with the refusal (and the last result) instead of being run.

        guard = LoopGuard(runner)
        ToolNode(tools, wrap_tool_call=guard.wrap_tool_call, awrap_tool_call=guard.awrap_tool_call)
    """

    def __init__(self, runner: ToolCallRunner, limit: int = DEFAULT_LOOP_LIMIT):
        if limit < 1:
            raise ValueError(f"loop_limit must be at least 1, got {limit}")
        self.runner = runner
        self.limit = limit

    def refusal(self, request: ToolCallRequest) -> ToolMessage | None:
        """The answer to a repeated call, or ``None`` to run it (the state's last message is the call's turn)."""
        state = request.state
        messages = state.get("messages", []) if isinstance(state, Mapping) else state if isinstance(state, list) else []
        _, refused = refuse_repeats(messages, [request.tool_call], self.limit)
        if not refused:
            return None
        return self.runner.reject(refused[0], request.runtime.config, request.runtime.stream_writer)

    def wrap_tool_call(self, request: ToolCallRequest, execute: SyncExecute) -> Result:
        return self.refusal(request) or self.runner.wrap_tool_call(request, execute)

    async def awrap_tool_call(self, request: ToolCallRequest, execute: Execute) -> Result:
        return self.refusal(request) or await self.runner.awrap_tool_call(request, execute)
