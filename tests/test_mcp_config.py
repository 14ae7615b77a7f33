"""The pieces of `ironloop.tools.mcp` that need no server: config, names, annotations → policy, classification."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ironloop.tools import ToolPolicy
from ironloop.tools.errors import NotSentError, is_transient, surely_not_applied
from ironloop.tools.mcp import MCPConfigError, load_config, policies_for, retry_on_error_text
from ironloop.tools.mcp.annotations import SPEC_DEFAULTS, choose_policy, hints_of
from ironloop.tools.mcp.errors import (
    MCPConnectionLost,
    MCPProtocolError,
    MCPServerUnavailable,
    MCPSessionExpired,
    MCPTimeoutError,
    MCPTransientError,
    classify,
)
from ironloop.tools.mcp.servers import tool_names
from ironloop.tools.mcp.tools import MCPToolError, content_blocks
from mcp import types
from mcp.shared.exceptions import McpError


def servers(**entries: dict) -> dict:
    return {"mcpServers": entries}


def test_the_shared_mcp_servers_format() -> None:
    git, remote, legacy = load_config(
        servers(
            git={"command": "uvx", "args": ["mcp-server-git"], "env": {"A": "1"}, "trust": True},
            remote={"url": "http://127.0.0.1:9/mcp", "headers": {"X": "y"}, "timeout_s": 2, "prefix": "r"},
            legacy={"type": "sse", "url": "http://127.0.0.1:9/sse"},
        )
    )
    assert (git.transport, git.command, git.args, dict(git.env or {}), git.trust) == (
        "stdio",
        "uvx",
        ("mcp-server-git",),
        {"A": "1"},
        True,
    )
    assert (remote.transport, remote.timeout_s, remote.prefix, remote.trust) == ("streamable_http", 2.0, "r", False)
    assert legacy.transport == "sse"
    assert git.describe() == "uvx mcp-server-git" and "X" not in remote.describe()


def test_variables_are_expanded_and_a_missing_one_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", "s3cret")
    monkeypatch.delenv("NOT_SET", raising=False)
    (remote,) = load_config(
        servers(r={"url": "http://127.0.0.1:${PORT:-8000}/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}})
    )
    assert remote.url == "http://127.0.0.1:8000/mcp" and remote.headers["Authorization"] == "Bearer s3cret"
    with pytest.raises(MCPConfigError, match=r"mcpServers\.r: \$\{NOT_SET\} is not set"):
        load_config(servers(r={"command": "x", "env": {"K": "${NOT_SET}"}}))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, '"mcpServers" object'),
        ({"mcpServers": {}}, "lists no server"),
        (servers(x=[]), "mcpServers.x must be an object"),
        (servers(**{"bad name": {"command": "x"}}), "a server name is"),
        (servers(x={}), "needs 'command'"),
        (servers(x={"command": "a", "url": "http://127.0.0.1"}), "either 'command'"),
        (servers(x={"command": "a", "args": "b"}), "x.args must be a list of strings"),
        (servers(x={"command": "a", "headers": {}}), "unknown key(s) headers for a stdio server"),
        (servers(x={"url": "ftp://h"}), "http:// or https://"),
        (servers(x={"url": "http://h", "transport": "websocket"}), "unknown transport 'websocket'"),
        (servers(x={"command": "a", "trust": "yes"}), "x.trust must be a bool"),
        (servers(x={"command": "a", "timeout_s": -1}), "positive number of seconds"),
        (servers(x={"command": "a", "policies": {"t": {"retries": 3}}}), "unknown policy field 'retries'"),
        (servers(x={"command": "a", "policies": {"t": {"max_attempts": 0}}}), "max_attempts must be at least 1"),
        (servers(x={"command": "a", "policies": {"t": 5}}), "must be an object of ToolPolicy fields"),
    ],
)
def test_bad_configs_are_one_clear_line(document: dict, message: str) -> None:
    with pytest.raises(MCPConfigError) as raised:
        load_config(document)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_files_unreadable_or_not_json(tmp_path: Path) -> None:
    with pytest.raises(MCPConfigError, match="cannot read the MCP config file"):
        load_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(MCPConfigError, match=r"bad\.json is not valid JSON"):
        load_config(tmp_path / "bad.json")
    (tmp_path / "ok.json").write_text(json.dumps(servers(x={"command": "a"})))
    assert load_config(tmp_path / "ok.json")[0].name == "x"


def test_json_policies_become_policy_changes() -> None:
    (server,) = load_config(
        servers(
            x={
                "command": "a",
                "policies": {
                    "search": {"max_attempts": 5, "retry_on_error_text": ["HTTP 503"], "rate_limit": {"calls": 2}},
                    "pay": ToolPolicy(side_effect=True),
                },
            }
        )
    )
    search = server.policies["search"]
    assert isinstance(search, dict) and search["max_attempts"] == 5 and search["rate_limit"].calls == 2
    assert search["retry_on"] == retry_on_error_text(["HTTP 503"])
    assert server.policies["pay"] == ToolPolicy(side_effect=True)


def test_retry_on_error_text_sees_the_error_text() -> None:
    retry = retry_on_error_text(["HTTP 503", "Rate Limit"])
    assert retry(MCPToolError([{"type": "text", "text": "upstream: HTTP 503 Service Unavailable"}]))
    assert retry(MCPToolError([{"type": "text", "text": "rate limit exceeded"}]))
    assert not retry(MCPToolError([{"type": "text", "text": "no such file"}]))
    assert retry(TimeoutError())  # what is transient stays retried


def test_tool_names_are_prefixed_only_where_they_collide() -> None:
    names = tool_names({"a": ["read", "only_a"], "b": ["read", "x.y/z"], "c": ["write"]}, {"c": "web"})
    assert names == {
        ("a", "read"): "a_read",
        ("a", "only_a"): "only_a",
        ("b", "read"): "b_read",
        ("b", "x.y/z"): "x_y_z",
        ("c", "write"): "web_write",
    }
    with pytest.raises(MCPConfigError, match="collide after prefixing"):
        tool_names({"a": ["read", "b_read"], "b": ["read"]}, {})


@pytest.mark.parametrize(
    ("hints", "side_effect", "honours_key", "untrusted"),
    [
        ({"readOnlyHint": True, "openWorldHint": False}, False, False, False),
        ({"readOnlyHint": True}, False, False, True),  # open world by default
        ({"readOnlyHint": False, "idempotentHint": True, "openWorldHint": False}, True, True, False),
        ({"destructiveHint": True, "idempotentHint": False}, True, False, True),
        ({"destructiveHint": False}, True, False, True),
        ({}, True, False, True),  # unannotated: the specification's defaults
        (None, True, False, True),
    ],
)
def test_annotations_from_a_trusted_server(hints, side_effect, honours_key, untrusted) -> None:
    annotations = types.ToolAnnotations(**hints) if hints is not None else None
    policy = choose_policy(annotations, trusted=True).policy
    assert (policy.side_effect, policy.honours_idempotency_key, policy.untrusted_output) == (
        side_effect,
        honours_key,
        untrusted,
    )
    assert policy.approval_mode == ("on_untrusted" if side_effect else "never")


def test_annotations_from_an_untrusted_server_are_ignored() -> None:
    claims = types.ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False)
    choice = choose_policy(claims, trusted=False)
    assert choice.policy.side_effect and choice.policy.untrusted_output and not choice.policy.honours_idempotency_key
    assert "annotations ignored" in choice.reasons[0]


def test_unset_hints_take_the_specification_defaults() -> None:
    assert hints_of(types.ToolAnnotations()) == SPEC_DEFAULTS
    assert hints_of({"readOnlyHint": True, "title": None}) == {**SPEC_DEFAULTS, "readOnlyHint": True}


def test_policies_for_tools_loaded_by_langchain_mcp_adapters() -> None:
    from langchain_mcp_adapters.tools import convert_mcp_tool_to_langchain_tool

    read = types.Tool(name="r", inputSchema={"type": "object"}, annotations=types.ToolAnnotations(readOnlyHint=True))
    write = types.Tool(name="w", inputSchema={"type": "object"}, annotations=types.ToolAnnotations(idempotentHint=True))
    tools = [convert_mcp_tool_to_langchain_tool(None, t, connection={"transport": "stdio"}) for t in (read, write)]  # type: ignore[typeddict-item]
    policies = policies_for(tools, trusted=True)
    assert not policies["r"].side_effect and policies["w"].side_effect and policies["w"].honours_idempotency_key
    assert all(p.side_effect for p in policies_for(tools, trusted=False).values())


def jsonrpc(code: int, message: str = "m") -> McpError:
    return McpError(types.ErrorData(code=code, message=message))


@pytest.mark.parametrize(
    ("error", "sent", "kind", "transient", "not_applied"),
    [
        (jsonrpc(types.INTERNAL_ERROR), True, MCPTransientError, True, False),
        (jsonrpc(503), True, MCPTransientError, True, True),
        (jsonrpc(429), True, MCPTransientError, True, True),
        (jsonrpc(types.INVALID_PARAMS), True, MCPProtocolError, False, True),
        (jsonrpc(types.METHOD_NOT_FOUND), True, MCPProtocolError, False, True),
        (jsonrpc(-32099, "server specific"), True, MCPProtocolError, False, True),
        (jsonrpc(types.CONNECTION_CLOSED, "Connection closed"), True, MCPConnectionLost, True, False),
        (jsonrpc(408, "Timed out while waiting for response"), True, MCPTimeoutError, True, False),
        (jsonrpc(32600, "Session terminated"), True, MCPSessionExpired, True, True),
        (BrokenPipeError(), False, MCPServerUnavailable, True, True),
        (BrokenPipeError(), True, MCPConnectionLost, True, False),
        (FileNotFoundError("no such command"), False, MCPServerUnavailable, True, True),
        (RuntimeError("Invalid structured content returned by tool t"), True, MCPProtocolError, False, True),
    ],
)
def test_classification(error, sent, kind, transient, not_applied) -> None:
    classified = classify(error, server="s", sent=sent)
    assert type(classified) is kind
    assert is_transient(classified) is transient
    assert surely_not_applied(classified) is not_applied
    assert isinstance(classified, NotSentError) is (kind in (MCPServerUnavailable, MCPSessionExpired))


def test_content_blocks() -> None:
    blocks = content_blocks(
        [
            types.TextContent(type="text", text="t"),
            types.ImageContent(type="image", data="AAAA", mimeType="image/png"),
            types.AudioContent(type="audio", data="BBBB", mimeType="audio/wav"),
            types.ResourceLink(type="resource_link", uri="file:///x.png", name="x", mimeType="image/png"),
            types.EmbeddedResource(
                type="resource", resource=types.TextResourceContents(uri="file:///r.txt", text="inside")
            ),
            types.EmbeddedResource(
                type="resource",
                resource=types.BlobResourceContents(uri="file:///r.pdf", blob="CCCC", mimeType="application/pdf"),
            ),
        ]
    )
    assert blocks == [
        {"type": "text", "text": "t"},
        {"type": "image", "base64": "AAAA", "mime_type": "image/png"},
        {"type": "file", "base64": "BBBB", "mime_type": "audio/wav"},
        {"type": "image", "url": "file:///x.png", "mime_type": "image/png"},
        {"type": "text", "text": "inside"},
        {"type": "file", "base64": "CCCC", "mime_type": "application/pdf"},
    ]
