"""Arguments a checkpoint can hold and any JSON client can read: checked before a call runs or is stored.

A tool call's arguments go into the checkpoint (the model's message, the task that runs it, an edit's resume
value) and, for a side effect, into the idempotency ledger. Python takes any value; the checkpoint's msgpack
does not (an integer of 2^64 or more, nesting deeper than its recursion limit of about 255), and JSON readers
other than Python round integers beyond 2^53 - 1 to the nearest double. A call carrying such a value is refused
before anything runs, so it is never done with one amount and recorded (or shown) with another, and never leaves
a thread unable to checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer every JSON reader holds exactly (JavaScript's ``Number.MAX_SAFE_INTEGER``); arguments
stay within ``±MAX_SAFE_INTEGER``."""

MAX_NESTING = 100
"""Deepest nesting of lists and objects in arguments: far below the checkpoint serializer's limit, which also
counts the levels of the message and task around them, and far beyond what any tool's schema asks for."""


def storable_problem(value: Any, *, limit: int = MAX_NESTING) -> str | None:
    """Why ``value`` (a call's arguments) cannot be run and stored as it is, in one short phrase, or ``None``.

    Iterative, so a value nested far beyond Python's recursion limit is measured, not crashed on.
    """
    stack: list[tuple[str, Any, int]] = [("", value, 0)]
    while stack:
        where, item, depth = stack.pop()
        if isinstance(item, bool) or item is None or isinstance(item, (str, float)):
            continue
        if isinstance(item, int):
            if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            return f"{_label(where)}: {_digits(item)} is beyond JSON's safe integers (±(2^53 - 1))"
        if isinstance(item, (Mapping, list, tuple)):
            if depth >= limit:
                return f"{_label(where)}: nested deeper than {limit} levels"
            if isinstance(item, Mapping):
                for key, child in item.items():
                    if not isinstance(key, str):
                        return f"{_label(where)}: the key {key!r:.40} is not a string"
                    stack.append((f"{where}.{key}" if where else key, child, depth + 1))
            else:
                stack.extend((f"{where}[{i}]", child, depth + 1) for i, child in enumerate(item))
            continue
        return f"{_label(where)}: a {type(item).__name__} is not a JSON value"
    return None


def _label(where: str) -> str:
    return repr(where[:80]) if where else "the arguments"


def _digits(number: int) -> str:
    """The integer, abridged when long (printing a huge integer is slow, and Python refuses past 4300 digits)."""
    if number.bit_length() > 200:
        return f"an integer of about {int(number.bit_length() * 0.30103)} digits"
    return str(number)
