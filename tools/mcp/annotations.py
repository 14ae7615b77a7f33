"""MCP tool annotations → `ToolPolicy`, for servers trusted to describe their own tools.

From a server marked ``trust: true`` (the specification's defaults fill hints a server leaves unset):

=====================  ===========================================================================
annotation             policy
=====================  ===========================================================================
``readOnlyHint``       read-only: retried freely, hedging allowed (``side_effect=False``)
not read-only          ``side_effect=True``: the exactly-once ledger, the call's idempotency key in
                       the request's ``_meta`` (``io.ironloop/idempotency-key``), human approval once
                       untrusted data has entered the thread
``idempotentHint``     (not read-only) a retry after an unknown outcome is safe
                       (``honours_idempotency_key=True``); without it such a call is not repeated
``destructiveHint``    (not read-only) shown, no further change: side effects are already guarded
``openWorldHint``      its output comes from outside: ``untrusted_output=True`` (delimited as data)
=====================  ===========================================================================

The specification tells clients to treat annotations from untrusted servers as untrusted, so a server without
``trust`` gets the conservative policy whatever it claims: every tool a side effect (never repeated after an
unknown outcome, approval once untrusted data is in the thread) with untrusted output. Explicit ``policies``
always win: a `ToolPolicy` replaces the derived one, a dict of fields changes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ironloop.tools.mcp.config import PolicySpec, ServerConfig
from ironloop.tools.policy import DEFAULT_POLICY, ToolPolicy

SPEC_DEFAULTS = {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False, "openWorldHint": True}
"""The hints' defaults in the MCP specification (the SDK leaves unset hints ``None``)."""


@dataclass(frozen=True)
class PolicyChoice:
    """The policy a tool got, and why (one short phrase per decision), for ``ironloop mcp list``."""

    policy: ToolPolicy
    reasons: tuple[str, ...]


def hints_of(annotations: Any) -> dict[str, bool]:
    """The four hints, unset ones at the specification's defaults; from the SDK's ``ToolAnnotations`` or a
    dict (a LangChain tool's ``metadata`` as langchain-mcp-adapters fills it)."""
    if annotations is None:
        given: Mapping[str, Any] = {}
    elif isinstance(annotations, Mapping):
        given = annotations
    else:
        given = annotations.model_dump()
    return {hint: default if given.get(hint) is None else bool(given[hint]) for hint, default in SPEC_DEFAULTS.items()}


def choose_policy(annotations: Any, *, trusted: bool, base: ToolPolicy = DEFAULT_POLICY) -> PolicyChoice:
    """The policy annotations give a tool (from ``base``), or the conservative one for an untrusted server."""
    if not trusted:
        return PolicyChoice(
            base.but(side_effect=True, untrusted_output=True),
            (
                "server not trusted: annotations ignored (MCP specification)",
                "conservative: side effect, exactly once, never repeated after an unknown outcome",
                "untrusted output",
            ),
        )
    hints = hints_of(annotations)
    reasons: list[str] = []
    changes: dict[str, Any] = {"untrusted_output": hints["openWorldHint"]}
    if hints["readOnlyHint"]:
        changes["side_effect"] = False
        reasons.append("readOnlyHint: retried freely, hedging allowed")
    else:
        changes["side_effect"] = True
        reasons.append("not read-only: side effect, exactly once, idempotency key in _meta")
        if hints["idempotentHint"]:
            changes["honours_idempotency_key"] = True
            reasons.append("idempotentHint: retried after an unknown outcome")
        else:
            reasons.append("not idempotent: not repeated after an unknown outcome")
        reasons.append("destructive" if hints["destructiveHint"] else "not destructive (additive)")
    reasons.append("openWorldHint: untrusted output" if hints["openWorldHint"] else "closed world: trusted output")
    return PolicyChoice(base.but(**changes), tuple(reasons))


def apply_explicit(choice: PolicyChoice, explicit: PolicySpec | None) -> PolicyChoice:
    """Explicit settings win: a whole `ToolPolicy` replaces the choice, a dict changes some of its fields."""
    if explicit is None:
        return choice
    if isinstance(explicit, ToolPolicy):
        return PolicyChoice(explicit, ("explicit policy",))
    changes = dict(explicit)
    if changes.get("side_effect") is False:  # a read after all: the side-effect settings go with it
        changes.setdefault("honours_idempotency_key", False)
        changes.setdefault("reconcile", None)
    fields = ", ".join(f"{k}={v!r}" for k, v in explicit.items())
    return PolicyChoice(choice.policy.but(**changes), (*choice.reasons, f"explicit: {fields}"))


def server_policy(annotations: Any, server: ServerConfig, tool_name: str) -> PolicyChoice:
    """A tool's policy: its server's base (``timeout_s``), its annotations if the server is trusted, then the
    server's explicit settings for it."""
    base = DEFAULT_POLICY if server.timeout_s is None else DEFAULT_POLICY.but(timeout_s=server.timeout_s)
    choice = choose_policy(annotations, trusted=server.trust, base=base)
    return apply_explicit(choice, server.policies.get(tool_name))


def policies_for(tools: Any, *, trusted: bool) -> dict[str, ToolPolicy]:
    """Policies for tools loaded with langchain-mcp-adapters (annotations in each tool's ``metadata``)."""
    return {tool.name: choose_policy(tool.metadata, trusted=trusted).policy for tool in tools}
