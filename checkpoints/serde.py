"""The checkpoint serializer: LangGraph's ``JsonPlusSerializer`` that rebuilds only allowed types, and refuses
a stored value naming any other.

A msgpack checkpoint names the classes to rebuild (module, name, arguments), and LangGraph's default serializer
imports and calls whatever it names, so a row rewritten as ``("os", "system", cmd)`` runs ``cmd`` when the
thread is read (``ironloop history``). `AllowListSerializer` passes an explicit ``allowed_msgpack_modules``:
LangGraph's own safe types (``SAFE_MSGPACK_TYPES``: LangChain messages, ``Interrupt``/``Command``/``Send``,
datetimes, UUIDs, decimals, sets, paths, ...) plus those given. LangGraph then skips the call for any other type;
this serializer goes one step further and raises `DisallowedTypeError`, so the saver reports the checkpoint as
corrupt (`CorruptCheckpointError`) instead of handing back a value silently changed. It reads only the type
tags a saver of this package writes (``msgpack``, ``null``, ``bytes``): no pickle, no legacy JSON constructors.

Of ironloop's own types only `IRONLOOP_TYPES` is ever stored (a rejected call's `Rejection`, sent to the
``reject`` node); everything else it stores is in LangGraph's safe set. A graph whose state holds types of its
own (a pydantic model, a dataclass, an enum) lists them: ``SQLAlchemySaver(engine, allowed_types=[MyModel])``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from ironloop.tools.errors import IronloopError
from ironloop.tools.validation import Rejection
from langgraph.checkpoint.serde.event_hooks import SerdeEvent, register_serde_event_listener
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

READABLE_TYPE_TAGS = frozenset({"msgpack", "null", "bytes", "bytearray"})
"""The type tags `JsonPlusSerializer.dumps_typed` writes (without a pickle fallback): all a saver ever stores."""

AllowedType = type | tuple[str, str]
"""A class, or its ``(module, qualified name)``."""

IRONLOOP_TYPES: tuple[type, ...] = (Rejection,)
"""ironloop's own types that checkpoints hold, beyond LangGraph's safe set."""

_refused: ContextVar[list[str] | None] = ContextVar("ironloop_serde_refused", default=None)


class DisallowedTypeError(IronloopError, ValueError):
    """A stored value names a type (or a method) outside the allow-list, or a type tag no saver writes."""


class AllowListSerializer(JsonPlusSerializer):
    """``JsonPlusSerializer`` with an explicit msgpack allow-list, raising `DisallowedTypeError` on anything else.

    ``allowed_types`` adds to LangGraph's safe types and `IRONLOOP_TYPES`. `with_msgpack_allowlist` (what
    LangGraph calls in its strict mode to add a graph's state types) keeps the refusal.
    """

    def __init__(self, allowed_types: Iterable[AllowedType] = ()):
        allowed = {(t.__module__, t.__qualname__) if isinstance(t, type) else tuple(t) for t in allowed_types}
        allowed |= {(t.__module__, t.__qualname__) for t in IRONLOOP_TYPES}
        # LangGraph's safe types are always allowed on top of these.
        super().__init__(pickle_fallback=False, allowed_json_modules=None, allowed_msgpack_modules=tuple(allowed))

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        type_, _ = data
        if type_ not in READABLE_TYPE_TAGS:
            raise DisallowedTypeError(f"refusing to read a value of type tag {type_!r}: no saver here writes one")
        with _collect_refusals() as refused:
            value = super().loads_typed(data)
        if refused:
            raise DisallowedTypeError(
                f"refusing to rebuild {', '.join(sorted(set(refused)))}: not in the serializer's allow-list (a type "
                "of your own state goes in SQLAlchemySaver(allowed_types=[...]))"
            )
        return value


@contextlib.contextmanager
def _collect_refusals() -> Iterator[list[str]]:
    """The types LangGraph refuses to rebuild while the block runs (in this thread or task)."""
    refused: list[str] = []
    token = _refused.set(refused)
    try:
        yield refused
    finally:
        _refused.reset(token)


def _on_serde_event(event: SerdeEvent) -> None:
    refused = _refused.get()
    if refused is not None and event["kind"] in ("msgpack_blocked", "msgpack_method_blocked"):
        method = event.get("method")
        refused.append(f"{event['module']}.{event['name']}" + (f".{method}" if method else ""))


def _not_refused_by_us(record: logging.LogRecord) -> bool:
    """Drop LangGraph's "Blocked deserialization" warning where `DisallowedTypeError` reports the same thing."""
    return _refused.get() is None or not str(record.msg).startswith("Blocked deserialization")


register_serde_event_listener(_on_serde_event)
logging.getLogger(JsonPlusSerializer.__module__).addFilter(_not_refused_by_us)
