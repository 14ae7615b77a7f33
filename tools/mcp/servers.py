"""`MCPServers`: the tools of several MCP servers, with the policy each should run under.

    with MCPServers.from_config("mcp.json") as mcp:            # or: async with ...
        agent = build_agent(model, [*mcp.tools, calc], policies={**mcp.policies, "calc": CALC_POLICY})

Entering starts every server (one long-lived session each, `tools.mcp.session`) and lists its tools; leaving
stops them. Under ``async with`` the sessions live on the caller's event loop (drive the agent with ``ainvoke``
or ``astream``); under ``with`` they live on a thread of their own, so ``invoke``, ``ainvoke`` and any other
event loop can call the tools. Calls from another loop or thread are handed to the sessions' loop.

Tool names: each tool keeps the server's name for it (characters other than letters, digits, ``_`` and ``-``
become ``_``), unless the server has a ``prefix`` (``<prefix>_<tool>``) or the same name is offered by more than
one server: then each of those tools is named ``<server>_<tool>``. Names that still collide are a config error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TextIO

import mcp.types as types
from anyio.from_thread import BlockingPortal, start_blocking_portal
from ironloop.tools.mcp.annotations import PolicyChoice, hints_of, server_policy
from ironloop.tools.mcp.config import MCPConfigError, ServerConfig, load_config
from ironloop.tools.mcp.session import DEFAULT_PING_TIMEOUT_S, ServerConnection
from ironloop.tools.mcp.tools import make_tool
from ironloop.tools.policy import ToolPolicy
from langchain_core.tools import BaseTool
from mcp.shared.session import ProgressFnT

MAX_TOOL_NAME = 64
"""The longest tool name chat-model APIs accept."""


@dataclass(frozen=True)
class ServedTool:
    """One tool of one server: its names, the LangChain tool, its policy and why."""

    server: str
    mcp_name: str
    name: str
    tool: BaseTool
    choice: PolicyChoice
    hints: dict[str, bool]

    @property
    def policy(self) -> ToolPolicy:
        return self.choice.policy


class MCPServers:
    """Several MCP servers' tools under ironloop's policies; a context manager (``with`` or ``async with``)."""

    def __init__(
        self,
        servers: Sequence[ServerConfig],
        *,
        ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S,
        errlog: TextIO | None = None,
    ):
        names = [s.name for s in servers]
        if duplicates := sorted(n for n, count in Counter(names).items() if count > 1):
            raise MCPConfigError(f"two MCP servers are named {', '.join(duplicates)}")
        self.connections = {s.name: ServerConnection(s, ping_timeout_s=ping_timeout_s, errlog=errlog) for s in servers}
        self.served: list[ServedTool] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._portal: BlockingPortal | None = None
        self._exit = contextlib.ExitStack()

    @classmethod
    def from_config(cls, config: str | os.PathLike[str] | Mapping[str, Any], **kwargs: Any) -> MCPServers:
        """From an ``mcpServers`` JSON file (its path) or dict (`tools.mcp.config`)."""
        return cls(load_config(config), **kwargs)

    @property
    def tools(self) -> list[BaseTool]:
        """The LangChain tools of every server, for ``build_agent(model, [*mcp.tools, ...])``."""
        self._require_started()
        return [s.tool for s in self.served]

    @property
    def policies(self) -> dict[str, ToolPolicy]:
        """Tool name → policy, for ``build_agent(..., policies={**mcp.policies, ...})``."""
        self._require_started()
        return {s.name: s.policy for s in self.served}

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        self._portal = self._exit.enter_context(start_blocking_portal())
        try:
            self._portal.call(self.start)
        except BaseException:
            self._close_portal()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close_portal()

    def _close_portal(self) -> None:
        try:
            if self._portal is not None:
                self._portal.call(self.aclose)
        finally:
            self._portal = None
            self._exit.close()

    async def start(self) -> None:
        """Start every server at once and build their tools; if one fails, stop the others and raise."""
        self._loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(c.start() for c in self.connections.values()), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self.aclose()
            raise failures[0]
        try:
            self.served = self._serve({name: c.tools for name, c in self.connections.items()})
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.connections.values()), return_exceptions=True)

    def _require_started(self) -> None:
        if self._loop is None:
            raise RuntimeError("enter MCPServers first: `with MCPServers.from_config(...) as mcp:` (or async with)")

    # -- tools -----------------------------------------------------------------------------------------------

    def _serve(self, listed: Mapping[str, list[types.Tool]]) -> list[ServedTool]:
        names = tool_names(
            {server: [t.name for t in tools] for server, tools in listed.items()},
            {server: c.config.prefix for server, c in self.connections.items()},
        )
        served = []
        for server, tools in listed.items():
            config = self.connections[server].config
            if unknown := sorted(set(config.policies) - {t.name for t in tools}):
                raise MCPConfigError(f"MCP server {server!r} has no tool(s) {', '.join(unknown)} (given policies)")
            for tool in tools:
                name = names[server, tool.name]
                try:
                    choice = server_policy(tool.annotations, config, tool.name)
                except (TypeError, ValueError) as exc:
                    raise MCPConfigError(f"MCP server {server!r}, tool {tool.name!r}: {exc}") from None
                backstop = choice.policy.deadline_s
                lc_tool = make_tool(self._caller(server), tool, name=name, server=server, timeout_s=backstop)
                served.append(ServedTool(server, tool.name, name, lc_tool, choice, hints_of(tool.annotations)))
        return served

    def _caller(self, server: str) -> Any:
        connection = self.connections[server]

        async def call_tool(
            name: str,
            arguments: dict[str, Any],
            *,
            meta: dict[str, Any] | None,
            progress: ProgressFnT | None,
            timeout_s: float | None,
        ) -> types.CallToolResult:
            call = connection.call_tool(name, arguments, meta=meta, progress=progress, timeout_s=timeout_s)
            home = self._loop
            if home is None or home is asyncio.get_running_loop():
                return await call
            # The session lives on another loop (a `with` block's thread, or the loop of an `async with`):
            # run the call there; cancelling here cancels it there, which tells the server.
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, home))

        return call_tool


def tool_names(offered: Mapping[str, Sequence[str]], prefixes: Mapping[str, str | None]) -> dict[tuple[str, str], str]:
    """(server, tool) → the LangChain name, by the rule in the module docstring."""
    plain = {(server, tool): _clean(tool) for server, tools in offered.items() for tool in tools}
    counts = Counter(name for (server, _), name in plain.items() if not prefixes.get(server))
    names: dict[tuple[str, str], str] = {}
    for (server, tool), name in plain.items():
        prefix = prefixes.get(server) or (server if counts[name] > 1 else None)
        names[server, tool] = _clean(f"{prefix}_{name}") if prefix else name
    clashes = Counter(names.values())
    if doubled := sorted(name for name, count in clashes.items() if count > 1):
        owners = "; ".join(
            f"{name}: " + ", ".join(f"{s}.{t}" for (s, t), n in names.items() if n == name) for name in doubled
        )
        raise MCPConfigError(f"MCP tool names collide after prefixing ({owners}); set a 'prefix' on a server")
    return names


def _clean(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:MAX_TOOL_NAME] or "tool"
