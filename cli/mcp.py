"""``ironloop mcp list`` and ``--mcp-config``: MCP servers' tools on the command line.

``ironloop mcp list --config FILE`` starts each server of an ``mcpServers`` file, lists its tools and prints
the policy each got and why (`tools.mcp.annotations`), then stops them. ``ironloop run ... --mcp-config FILE``
(or ``[mcp] config = "FILE"`` in ``ironloop.toml``, relative to that file) adds the servers' tools to the
agent, under the same approval, credentials scrubbing and ledger as every tool. ``resume`` reuses the file the
thread was started with.

Exit codes: 2 for a configuration that cannot be used, 1 for a server that cannot be started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MCP_SPEC_KEY = "ironloop_mcp_config"
"""Checkpoint metadata naming the MCP config a thread's agent was built with (so ``resume`` rebuilds it)."""


def add_commands(commands: Any) -> None:
    """Register ``ironloop mcp ...`` on the top-level subparsers."""
    mcp = commands.add_parser("mcp", help="MCP servers: list their tools and the policy each gets")
    actions = mcp.add_subparsers(dest="mcp_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="start the servers of an mcpServers file and list their tools")
    listing.add_argument("--config", required=True, metavar="FILE", help="the mcpServers JSON file")
    listing.add_argument("--json", dest="json_out", action="store_true", help="print JSON instead of text")
    listing.set_defaults(handler=list_tools)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--mcp-config FILE`` for commands that run an agent."""
    parser.add_argument(
        "--mcp-config",
        default=None,
        metavar="FILE",
        help="add the tools of these MCP servers (default: [mcp] config in ironloop.toml, if set)",
    )


def list_tools(args: argparse.Namespace) -> int:
    with open_servers(args.config) as mcp:
        if args.json_out:
            print(json.dumps(describe(mcp), indent=2))
            return 0
        for server, connection in mcp.connections.items():
            info = connection.server_info
            served = [s for s in mcp.served if s.server == server]
            trust = "trusted" if connection.config.trust else "not trusted: conservative policies"
            version = f"; {info.name} {info.version}" if info is not None else ""
            print(f"{server}  ({connection.config.describe()}; {trust}{version}; {len(served)} tools)")
            width = max((len(s.name) for s in served), default=0)
            for tool in served:
                print(f"  {tool.name.ljust(width)}  {summary(tool.policy)}")
                print(f"  {''.ljust(width)}  why: {'; '.join(tool.choice.reasons)}")
    return 0


def summary(policy: Any) -> str:
    """A policy in one line: what kind of call, how it is retried and timed, what is asked of a human."""
    if policy.side_effect:
        after_unknown = "retried with its key" if policy.honours_idempotency_key else "never repeated blindly"
        kind = f"side effect, exactly once, {after_unknown} after an unknown outcome"
    else:
        kind = "read, retried"
    timing = f"{policy.max_attempts} attempt(s), timeout {policy.timeout_s:g} s" if policy.timeout_s else ""
    parts = [kind, timing, f"approval {policy.approval_mode}"]
    if policy.untrusted_output:
        parts.append("untrusted output")
    if policy.hedge_after_s is not None:
        parts.append(f"hedged after {policy.hedge_after_s:g} s")
    return "; ".join(p for p in parts if p)


def describe(mcp: Any) -> dict[str, Any]:
    return {
        server: {
            "server": connection.config.describe(),
            "trusted": connection.config.trust,
            "tools": [
                {
                    "name": s.name,
                    "mcp_name": s.mcp_name,
                    "annotations": s.hints,
                    "side_effect": s.policy.side_effect,
                    "honours_idempotency_key": s.policy.honours_idempotency_key,
                    "untrusted_output": s.policy.untrusted_output,
                    "approval": s.policy.approval_mode,
                    "max_attempts": s.policy.max_attempts,
                    "timeout_s": s.policy.timeout_s,
                    "why": list(s.choice.reasons),
                }
                for s in mcp.served
                if s.server == server
            ],
        }
        for server, connection in mcp.connections.items()
    }


@contextlib.contextmanager
def open_servers(config: str | os.PathLike[str]) -> Iterator[Any]:
    """`MCPServers` for the command line: config problems and servers that do not start are one-line errors."""
    from ironloop.commands import EXIT_FAILED, EXIT_USAGE, CommandError

    try:
        from ironloop.tools.mcp import MCPConfigError, MCPServers, MCPServerUnavailable
    except ImportError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    try:
        servers = MCPServers.from_config(config)
    except MCPConfigError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    try:
        with servers:
            yield servers
    except MCPConfigError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    except MCPServerUnavailable as exc:
        raise CommandError(str(exc), EXIT_FAILED) from None


@contextlib.contextmanager
def agent_servers(args: argparse.Namespace, spec: dict[str, Any]) -> Iterator[Any]:
    """The MCP servers an agent command should have (``--mcp-config``, the thread's, or ``ironloop.toml``'s),
    open for the command's duration; ``None`` when there are none. Records the file in ``spec``."""
    path = getattr(args, "mcp_config", None) or spec.get(MCP_SPEC_KEY) or configured_file()
    if not path:
        yield None
        return
    spec[MCP_SPEC_KEY] = str(Path(path).resolve())
    with open_servers(spec[MCP_SPEC_KEY]) as servers:
        yield servers


def configured_file(environ: Any = None) -> str | None:
    """``[mcp] config`` of ``ironloop.toml`` (``$IRONLOOP_CONFIG``, else ``./ironloop.toml``: `ironloop.settings`),
    resolved against that file's folder; ``None`` if there is no such setting."""
    from ironloop.commands import EXIT_USAGE, CommandError
    from ironloop.settings import SettingsError, config_file, load

    try:
        path = config_file(environ)
        value = load(environ=environ, path=path).mcp.config if path is not None else None
    except SettingsError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    if value is not None and not Path(value).name:
        raise CommandError(f'{path}: [mcp] config must be a file name, e.g. config = "mcp.json"', EXIT_USAGE)
    return value
