"""The ``mcpServers`` configuration MCP clients share, read into checked `ServerConfig` values.

The same JSON that other MCP clients read, plus a few ironloop settings per server::

    {"mcpServers": {
        "git":    {"command": "python", "args": ["-m", "mcp_server_git", "--repository", "."],
                   "env": {"GIT_AUTHOR_NAME": "${USER}"}, "trust": true},
        "remote": {"url": "http://127.0.0.1:8000/mcp", "transport": "streamable_http",
                   "headers": {"Authorization": "Bearer ${REMOTE_TOKEN}"}, "timeout_s": 10,
                   "policies": {"search": {"max_attempts": 5, "retry_on_error_text": ["HTTP 503"]}}}}}

A server with ``command`` speaks stdio; one with ``url`` speaks streamable HTTP unless ``transport`` (or
``type``) says ``"sse"``. ``${VAR}`` and ``${VAR:-default}`` in any string are taken from the environment; a
variable that is not set (and has no default) is an error, never a silent empty string. Every problem is one
`MCPConfigError` line naming the file and the key.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ironloop.tools.circuit import CircuitBreaker
from ironloop.tools.errors import IronloopError, is_transient
from ironloop.tools.policy import ToolPolicy
from ironloop.tools.rate_limit import RateLimit

Transport = Literal["stdio", "streamable_http", "sse"]

TRANSPORT_NAMES: dict[str, Transport] = {
    "stdio": "stdio",
    "streamable_http": "streamable_http",
    "streamable-http": "streamable_http",
    "http": "streamable_http",
    "sse": "sse",
}
"""Spellings of the transports found in MCP client configurations, and the transport each means."""

DEFAULT_STARTUP_TIMEOUT_S = 30.0
"""Longest wait for a server to start, answer ``initialize`` and list its tools."""

SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

POLICY_FIELDS = frozenset(
    {
        "timeout_s",
        "timeout_growth",
        "max_attempts",
        "backoff_initial_s",
        "backoff_max_s",
        "jitter",
        "deadline_s",
        "fallback",
        "side_effect",
        "honours_idempotency_key",
        "hedge_after_s",
        "hedges",
        "approval",
        "untrusted_output",
        "progress_resets_timeout",
    }
)
"""`ToolPolicy` fields a JSON policy may set directly (the others take objects: see `policy_changes`)."""

SERVER_KEYS = {
    "stdio": {"command", "args", "env", "cwd"},
    "http": {"url", "headers"},
    "common": {"transport", "type", "trust", "timeout_s", "policies", "prefix", "startup_timeout_s"},
}


class MCPConfigError(IronloopError, ValueError):
    """The MCP configuration cannot be used: unreadable, not JSON, or a key of the wrong shape."""


PolicySpec = ToolPolicy | Mapping[str, Any]
"""An explicit policy for one tool: a whole `ToolPolicy`, or changes to the policy its annotations give."""


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """One MCP server: how to reach it, and how far ironloop trusts it."""

    name: str
    transport: Transport
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    """Variables for a stdio server, added to the few the SDK passes on (``HOME``, ``PATH``...): a server
    never inherits the rest of ironloop's environment, its tools' credentials included."""
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    trust: bool = False
    """Whether the server's tool annotations may set policy (`tools.mcp.annotations`). The MCP specification
    tells clients to treat annotations from untrusted servers as untrusted: without ``trust`` every tool gets
    the conservative defaults."""
    timeout_s: float | None = None
    """Timeout of one attempt of this server's tools (their policies' ``timeout_s``); ``None``: the default."""
    policies: Mapping[str, PolicySpec] = field(default_factory=dict)
    """Tool name (as the server names it) → explicit policy; always wins over annotations."""
    prefix: str | None = None
    """Name the server's tools ``<prefix>_<tool>``; by default only tools whose names collide are prefixed,
    with the server's name."""
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S

    def describe(self) -> str:
        """Where the server is, for messages (never its headers or environment: they may hold secrets)."""
        if self.transport == "stdio":
            return " ".join([self.command or "", *self.args]).strip()
        return f"{self.url} ({self.transport})"


def load_config(config: str | os.PathLike[str] | Mapping[str, Any]) -> list[ServerConfig]:
    """The servers of an ``mcpServers`` document: a path to the JSON file, or the parsed dict."""
    if isinstance(config, Mapping):
        return parse_config(config, source="mcp config")
    path = Path(config)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MCPConfigError(f"cannot read the MCP config file {path}: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise MCPConfigError(f"{path} is not valid JSON: {exc}") from None
    return parse_config(document, source=str(path))


def parse_config(document: Any, *, source: str) -> list[ServerConfig]:
    if not isinstance(document, Mapping) or not isinstance(document.get("mcpServers"), Mapping):
        raise MCPConfigError(f'{source}: expected an object with an "mcpServers" object of servers')
    servers = document["mcpServers"]
    if not servers:
        raise MCPConfigError(f"{source}: mcpServers lists no server")
    return [_server(name, entry, f"{source}: mcpServers.{name}") for name, entry in servers.items()]


def _server(name: Any, entry: Any, where: str) -> ServerConfig:
    if not isinstance(name, str) or not SERVER_NAME.match(name):
        raise MCPConfigError(f"{where}: a server name is letters, digits, '_' and '-' (at most 48), got {name!r}")
    if not isinstance(entry, Mapping):
        raise MCPConfigError(f"{where} must be an object")
    entry = _expand(entry, where)
    transport = _transport(entry, where)
    allowed = SERVER_KEYS["common"] | SERVER_KEYS["stdio" if transport == "stdio" else "http"]
    if unknown := sorted(set(entry) - allowed):
        raise MCPConfigError(f"{where}: unknown key(s) {', '.join(unknown)} for a {transport} server")
    common: dict[str, Any] = {
        "name": name,
        "transport": transport,
        "trust": _typed(entry, "trust", bool, where, False),
        "timeout_s": _seconds(entry, "timeout_s", where),
        "startup_timeout_s": _seconds(entry, "startup_timeout_s", where) or DEFAULT_STARTUP_TIMEOUT_S,
        "policies": _policies(entry.get("policies", {}), f"{where}.policies"),
        "prefix": _prefix(entry.get("prefix"), where),
    }
    if transport == "stdio":
        command = entry.get("command")
        if not isinstance(command, str) or not command.strip():
            raise MCPConfigError(f"{where}: a stdio server needs a non-empty string 'command'")
        return ServerConfig(
            command=command,
            args=tuple(_strings(entry.get("args", []), f"{where}.args")),
            env=_string_map(entry["env"], f"{where}.env") if "env" in entry else None,
            cwd=_typed(entry, "cwd", str, where, None),
            **common,
        )
    url = entry.get("url")
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
        raise MCPConfigError(f"{where}: a {transport} server needs an http:// or https:// 'url', got {url!r}")
    return ServerConfig(url=url, headers=_string_map(entry.get("headers", {}), f"{where}.headers"), **common)


def _transport(entry: Mapping[str, Any], where: str) -> Transport:
    named = entry.get("transport", entry.get("type"))
    if "transport" in entry and "type" in entry and entry["transport"] != entry["type"]:
        raise MCPConfigError(f"{where}: 'transport' and 'type' disagree ({entry['transport']!r}, {entry['type']!r})")
    if named is None:
        if "command" in entry and "url" in entry:
            raise MCPConfigError(f"{where}: give either 'command' (stdio) or 'url' (HTTP), not both")
        if "command" in entry:
            return "stdio"
        if "url" in entry:
            return "streamable_http"
        raise MCPConfigError(f"{where}: needs 'command' (a stdio server) or 'url' (an HTTP server)")
    if not isinstance(named, str) or named not in TRANSPORT_NAMES:
        known = ", ".join(sorted(TRANSPORT_NAMES))
        raise MCPConfigError(f"{where}: unknown transport {named!r}; one of {known} (websocket is not supported)")
    return TRANSPORT_NAMES[named]


def _expand(value: Any, where: str) -> Any:
    """``${VAR}`` / ``${VAR:-default}`` replaced from the environment, in every string of the entry."""
    if isinstance(value, str):

        def variable(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = os.environ.get(name)
            if found is None:
                if default is None:
                    raise MCPConfigError(f"{where}: ${{{name}}} is not set (use ${{{name}:-default}} for a default)")
                return default
            return found

        return _VARIABLE.sub(variable, value)
    if isinstance(value, Mapping):
        return {key: value[key] if key == "policies" else _expand(value[key], where) for key in value}
    if isinstance(value, list):
        return [_expand(item, where) for item in value]
    return value


def _typed(entry: Mapping[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    value = entry.get(key, default)
    if value is not default and not isinstance(value, kind):
        raise MCPConfigError(f"{where}.{key} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _seconds(entry: Mapping[str, Any], key: str, where: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise MCPConfigError(f"{where}.{key} must be a positive number of seconds, got {value!r}")
    return float(value)


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MCPConfigError(f"{where} must be a list of strings")
    return list(value)


def _string_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise MCPConfigError(f"{where} must be an object of string values")
    return dict(value)


def _prefix(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$", value):
        raise MCPConfigError(f"{where}.prefix must be letters, digits, '_' and '-' (at most 32), got {value!r}")
    return value


def _policies(value: Any, where: str) -> dict[str, PolicySpec]:
    if not isinstance(value, Mapping):
        raise MCPConfigError(f"{where} must be an object of tool name → policy")
    policies: dict[str, PolicySpec] = {}
    for tool, spec in value.items():
        if isinstance(spec, ToolPolicy):
            policies[tool] = spec
        elif isinstance(spec, Mapping):
            policies[tool] = policy_changes(spec, f"{where}.{tool}")
        else:
            raise MCPConfigError(f"{where}.{tool} must be an object of ToolPolicy fields (or a ToolPolicy)")
    return policies


def policy_changes(spec: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A JSON policy as `ToolPolicy` field changes, checked now (by building a policy with them).

    Besides the plain fields (`POLICY_FIELDS`): ``rate_limit`` and ``circuit_breaker`` take the objects'
    fields, and ``retry_on_error_text`` (a list of phrases) also retries error results and errors whose text
    contains one of them, case-insensitively: ``["HTTP 503", "rate limit"]`` for a server that reports its
    upstream's outages as ``isError`` results. A Python ``retry_on`` may be given in a dict too.
    """
    changes: dict[str, Any] = {}
    for key, value in spec.items():
        if key in POLICY_FIELDS or key == "retry_on":
            changes[key] = value
        elif key == "rate_limit":
            changes[key] = _object(RateLimit, value, f"{where}.rate_limit")
        elif key == "circuit_breaker":
            changes[key] = _object(CircuitBreaker, value, f"{where}.circuit_breaker")
        elif key == "retry_on_error_text":
            changes["retry_on"] = retry_on_error_text(_strings(value, f"{where}.retry_on_error_text"))
        else:
            known = ", ".join(sorted({*POLICY_FIELDS, "rate_limit", "circuit_breaker", "retry_on_error_text"}))
            raise MCPConfigError(f"{where}: unknown policy field {key!r}; known: {known}")
    try:
        ToolPolicy(**changes)
    except (TypeError, ValueError) as exc:
        raise MCPConfigError(f"{where}: {exc}") from None
    return changes


def _object(kind: type, value: Any, where: str) -> Any:
    if isinstance(value, kind):
        return value
    if not isinstance(value, Mapping):
        raise MCPConfigError(f"{where} must be an object")
    try:
        return kind(**value)
    except (TypeError, ValueError) as exc:
        raise MCPConfigError(f"{where}: {exc}") from None


class retry_on_error_text:
    """``retry_on`` that retries what `is_transient` retries, and any error whose text contains a phrase.

    Sees the text of an MCP ``isError`` result (the runtime raises it as an error for ``retry_on`` to judge),
    so a server that reports an upstream 503 as a tool error is retried like an HTTP 503.
    """

    def __init__(self, phrases: list[str]):
        self.phrases = tuple(p.lower() for p in phrases if p)

    def __call__(self, error: BaseException) -> bool:
        if is_transient(error):
            return True
        text = str(error).lower()
        return any(phrase in text for phrase in self.phrases)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, retry_on_error_text) and other.phrases == self.phrases

    def __hash__(self) -> int:
        return hash(self.phrases)

    def __repr__(self) -> str:
        return f"retry_on_error_text({list(self.phrases)!r})"
