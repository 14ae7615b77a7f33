"""Arguments a checkpoint can hold and any JSON client can read: checked before a call runs or is stored.

A tool call's arguments go into the checkpoint (the model's message, the task that runs it, an edit's resume
value) and, for a side effect, into the idempotency ledger. Python takes any value; the checkpoint's msgpack
does not (an integer of 2^64 or more, nesting deeper than its recursion limit of about 255, a key with a lone
surrogate), and JSON readers other than Python round integers beyond 2^53 - 1 to the nearest double. A call
carrying such a value is refused before anything runs, so it is never done with one amount and recorded (or
shown) with another, and never leaves a thread unable to checkpoint.

A model's message is checked as soon as it arrives (`storable_turn`), before the checkpoint of its turn: a call
whose arguments fail moves to the message's ``invalid_tool_calls``, its arguments kept as abridged text, and is
answered with an observation like any invalid call (`tools.validation.ToolCatalog.split`); the run goes on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import AIMessage, InvalidToolCall

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer every JSON reader holds exactly (JavaScript's ``Number.MAX_SAFE_INTEGER``); arguments
stay within ``±MAX_SAFE_INTEGER``."""

MAX_NESTING = 100
"""Deepest nesting of lists and objects in arguments: far below the checkpoint serializer's limit, which also
counts the levels of the message and task around them, and far beyond what any tool's schema asks for."""

UNSTORABLE = "unstorable arguments: "
"""How the ``error`` of an invalid tool call made by `storable_turn` begins."""


def storable_problem(value: Any, *, limit: int = MAX_NESTING) -> str | None:
    """Why ``value`` (a call's arguments) cannot be run and stored as it is, in one short phrase, or ``None``.

    Iterative, so a value nested far beyond Python's recursion limit is measured, not crashed on.
    """
    stack: list[tuple[str, str, Any, int]] = [("", "", value, 0)]  # path, top-level argument, value, depth
    while stack:
        where, top, item, depth = stack.pop()
        if isinstance(item, bool) or item is None or isinstance(item, (str, float)):
            continue
        if isinstance(item, int):
            if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            return f"{_label(where)}: {_digits(item)} is beyond JSON's safe integers (±(2^53 - 1))"
        if isinstance(item, (Mapping, list, tuple)):
            if depth >= limit:  # named by its argument: the path itself is as long as the nesting
                return f"{_label(top)}: nested deeper than {limit} levels"
            if isinstance(item, Mapping):
                for key, child in item.items():
                    if not isinstance(key, str):
                        return f"{_label(where)}: the key {key!r:.40} is not a string"
                    if not _unicode(key):  # the serializer cannot write it (a value is written with "?")
                        return f"{_label(where)}: the key {key!r:.40} is not valid Unicode (a lone surrogate)"
                    stack.append((f"{where}.{key}" if where else key, top or key, child, depth + 1))
            else:
                stack.extend((f"{where}[{i}]", top, child, depth + 1) for i, child in enumerate(item))
            continue
        return f"{_label(where)}: a {type(item).__name__} is not a JSON value"
    return None


def storable_turn(message: AIMessage) -> AIMessage:
    """``message`` with each tool call a checkpoint cannot hold moved to ``invalid_tool_calls`` (a copy; the same
    message when every call is fine)."""
    kept, moved = [], []
    for call in message.tool_calls:
        args: Any = call["args"]  # a provider integration may hand over anything
        problem = storable_problem(args) if isinstance(args, dict) else "the arguments are not a JSON object"
        if problem is None:
            kept.append(call)
        else:
            moved.append(
                InvalidToolCall(
                    type="invalid_tool_call",
                    name=call["name"],
                    args=abridged(args),
                    id=call["id"],
                    error=UNSTORABLE + problem,
                )
            )
    if not moved:
        return message
    return message.model_copy(update={"tool_calls": kept, "invalid_tool_calls": [*message.invalid_tool_calls, *moved]})


def abridged(value: Any, limit: int = 200) -> str:
    """``value`` as JSON text cut to about ``limit`` characters, whatever its size or depth."""
    out: list[str] = []
    size = 0
    stack: list[Any] = [value]
    while stack and size < limit:
        item = stack.pop()
        if isinstance(item, _Text):
            piece = item.text
        elif isinstance(item, Mapping):
            piece = "{"
            stack.append(_Text("}"))
            for index, (key, child) in reversed(list(enumerate(item.items()))):
                stack += [child, _Text((", " if index else "") + json.dumps(str(key)) + ": ")]
        elif isinstance(item, (list, tuple)):
            piece = "["
            stack.append(_Text("]"))
            for index, child in reversed(list(enumerate(item))):
                stack += [child, _Text(", " if index else "")]
        elif isinstance(item, int) and not isinstance(item, bool) and item.bit_length() > 200:
            piece = f"<{_digits(item)}>"
        else:
            piece = json.dumps(item, default=str)
        out.append(piece)
        size += len(piece)
    text = "".join(out)
    return text if not stack and len(text) <= limit else text[:limit] + "…"


class _Text:
    """Literal text in `abridged`'s work list."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _label(where: str) -> str:
    return repr(where[:80]) if where else "the arguments"


def _digits(number: int) -> str:
    """The integer, abridged when long (printing a huge integer is slow, and Python refuses past 4300 digits)."""
    if number.bit_length() > 200:
        return f"an integer of about {int(number.bit_length() * 0.30103)} digits"
    return str(number)
